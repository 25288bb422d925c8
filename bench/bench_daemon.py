"""Benchmarks of the whole daemon, run by hand (as root): python bench/bench_daemon.py [--backend runc]

Each figure is printed next to the raw runtime measured in the same run:
  1. time until N = 1, 10, 50 services are Running, against a shell loop of `runc run --detach`
     over the same bundles;
  2. delay from a crash to the restarted container running, minus the configured restart delay;
  3. the daemon's CPU use while 50 services sit idle for 30 s (no busy polling: near zero);
  4. log throughput of one fast writer, against `runc run` writing straight to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from daemon_process import DaemonProcess  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import all_running, raw_runc_loop, write_services  # noqa: E402

from extvisor.oci import build_oci_spec, fit_to_host  # noqa: E402
from extvisor.testing import make_busybox_rootfs, make_service  # noqa: E402


def bench_startup(n: int, backend: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp), backend=backend)
        ids = write_services(d, n, "sleep 1000")
        d.start()
        d.wait(lambda: all_running(d, ids), timeout=300, what=f"{n} services running")
        # From the supervisor's creation (services loaded) to the last first-Running event.
        started = d.client.daemon()["started_at"]
        running = [next(e["ts"] for e in s["events"] if e["state"] == "Running") for s in d.client.services()]
        ours = max(running) - started
        d.stop()
        raw = raw_runc_loop(Path(tmp), n)
    return ours, raw


def bench_restart(backend: str, delay: float = 0.2) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp), backend=backend)
        ids = write_services(d, 1, "sleep 0.5; exit 1", prefix="crash")
        d.start()
        d.wait(lambda: d.service(ids[0])["restarts"] >= 3, timeout=60, what="restarts")
        events = d.service(ids[0])["events"]
        d.stop()
    gaps = []
    for prev, nxt in zip(events, events[1:]):
        if prev["state"] == "Waiting" and "going to restart" in prev["msg"] and nxt["state"] == "Running":
            configured = float(prev["msg"].rsplit("(in ", 1)[1].rstrip("s)"))
            gaps.append(nxt["ts"] - prev["ts"] - configured)
    return sorted(gaps)[len(gaps) // 2]


def bench_idle_cpu(backend: str, n: int = 50, seconds: float = 30.0) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp), backend=backend)
        ids = write_services(d, n, "sleep 100000")
        d.start()
        d.wait(lambda: all_running(d, ids), timeout=300, what="services running")
        assert d.proc is not None
        stat = Path(f"/proc/{d.proc.pid}/stat")
        hz = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / hz

        c0, t0 = cpu(), time.perf_counter()
        time.sleep(seconds)
        used = (cpu() - c0) / (time.perf_counter() - t0)
        d.stop()
    return used * 100


def bench_logs(backend: str, lines: int = 2_000_000) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp), backend=backend, extra=["--log-max-bytes", str(1 << 30)])
        ids = write_services(d, 1, f"seq 1 {lines}; sleep 1000", restart="never", prefix="flood")
        log = d.log_dir / f"{ids[0]}.log"
        last = f"{lines}\n".encode()
        d.start()
        d.wait(lambda: d.service(ids[0])["state"] == "Running", timeout=60)
        t0 = time.perf_counter()
        d.wait(lambda: log.exists() and log.read_bytes()[-16:].endswith(last), timeout=300, what="all lines")
        ours = time.perf_counter() - t0 + 0.0
        size = log.stat().st_size
        d.stop()
        root = Path(tmp) / "raw"
        make_busybox_rootfs(root / "rootfs")
        spec = make_service("rawlog", f"seq 1 {lines}")
        (root / "b").mkdir()
        oci = build_oci_spec(spec, root / "rootfs")
        fit_to_host(oci)
        (root / "b" / "config.json").write_text(json.dumps(oci))
        t0 = time.perf_counter()
        with open(root / "out.log", "wb") as out:
            subprocess.run(["runc", "--root", str(root / "state"), "run", "--bundle", str(root / "b"), "rawlog"],
                           stdout=out, stderr=out, stdin=subprocess.DEVNULL, check=True)  # fmt: skip
        raw = time.perf_counter() - t0
    return size / ours / 1e6, size / raw / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="runc")
    ap.add_argument("--counts", default="1,10,50")
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    args = ap.parse_args()
    print(f"backend={args.backend}  (raw runtime: runc, same machine, same run)")
    print(f"{'measure':42} {'extvisor':>10} {'raw':>10} {'ratio':>7}")
    for n in (int(c) for c in args.counts.split(",")):
        ours, raw = bench_startup(n, args.backend)
        print(f"{f'time until {n} services Running (s)':42} {ours:10.2f} {raw:10.2f} {ours / raw:7.2f}")
    gap = bench_restart(args.backend)
    print(f"{'crash -> running again, minus delay (s)':42} {gap:10.3f} {'-':>10} {'-':>7}")
    cpu = bench_idle_cpu(args.backend, seconds=args.idle_seconds)
    print(f"{'daemon CPU, 50 idle services (% of a core)':42} {cpu:10.2f} {'-':>10} {'-':>7}")
    ours_mb, raw_mb = bench_logs(args.backend)
    print(f"{'log throughput, one fast writer (MB/s)':42} {ours_mb:10.1f} {raw_mb:10.1f} {ours_mb / raw_mb:7.2f}")


if __name__ == "__main__":
    main()
