"""Starts, restarts, memory, idle CPU and logs of the daemon on runc, against runc itself."""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from common import DaemonProcess, Row, all_running, event_ts, raw_runc_loop, raw_runc_once, write_services


def first_start_rows(runs: int = 9) -> list[Row]:
    """A service's first start (Starting -> Running, no conditions), by its own events.

    Each daemon's start is followed by one raw `runc run --detach`, so that the machine's
    drift during the figure hits both alike.
    """
    ours, raw = [], []
    with tempfile.TemporaryDirectory(prefix="bench-first-") as tmp:
        raw_runc_once(Path(tmp), -1)  # warm-up: runc's binary and the bundle in the page cache
        for i in range(runs):
            d = DaemonProcess(Path(tmp) / f"d{i}")
            (ids,) = [write_services(d, 1, "sleep 100000")]
            d.start()
            try:
                d.wait(lambda: all_running(d, ids), timeout=60, what="running")
                s = d.service(ids[0])
                ours.append(event_ts(s, "Running") - event_ts(s, "Starting"))
            finally:
                d.stop()
            raw.append(raw_runc_once(Path(tmp), i))
    return [Row("first start of a service (Starting -> Running)", statistics.median(ours), statistics.median(raw), "s", 1.5,
                reference_name="runc run --detach")]


def restart_row(delay: float = 0.2) -> Row:
    """Conditions met -> Running on a restart: after the restart delay, by the service's events."""
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        d = DaemonProcess(Path(tmp))
        ids = write_services(d, 1, "sleep 0.3; exit 1", prefix="crash")
        raws = [raw_runc_once(Path(tmp), i) for i in range(8)]  # before and after: the machine drifts
        d.start()
        try:
            d.wait(lambda: d.service(ids[0])["restarts"] >= 16, timeout=90, what="restarts")
            events = sorted(d.service(ids[0])["events"], key=lambda e: e["ts"])
        finally:
            d.stop()
        raws += [raw_runc_once(Path(tmp), i) for i in range(8, 16)]
        raw = statistics.median(raws)
    gaps = []
    for prev, nxt in zip(events, events[1:]):
        if prev["state"] == "Waiting" and "(in " in prev["msg"] and nxt["state"] == "Running":
            configured = float(prev["msg"].rsplit("(in ", 1)[1].rstrip("s)"))
            gaps.append(nxt["ts"] - prev["ts"] - configured)
    return Row("a restart's start (delay over -> Running)", statistics.median(gaps), raw, "s", 1.2,
               reference_name="runc run --detach")


def fifty_rows(n: int = 50, idle: float = 15.0) -> list[Row]:
    """50 services: time until all Running, then the daemon's RSS and CPU while they idle."""
    with tempfile.TemporaryDirectory(prefix="bench-fifty-") as tmp:
        d = DaemonProcess(Path(tmp))
        ids = write_services(d, n, "sleep 100000")
        d.start()
        try:
            d.wait(lambda: all_running(d, ids), timeout=300, what=f"{n} services running")
            started = d.client.daemon()["started_at"]
            ours = max(event_ts(s, "Running") for s in d.client.services()) - started
            assert d.proc is not None
            status = Path(f"/proc/{d.proc.pid}/status")
            stat = Path(f"/proc/{d.proc.pid}/stat")
            hz = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / hz

            time.sleep(2)
            c0, t0 = cpu(), time.perf_counter()
            time.sleep(idle)
            used = (cpu() - c0) / (time.perf_counter() - t0) * 100
            rss = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS:")) / 1024
        finally:
            d.stop()
        raw = raw_runc_loop(Path(tmp), n)
    return [
        Row(f"{n} services Running", ours, raw, "s", 0.8, reference_name="sequential runc run --detach loop"),
        Row(f"daemon RSS, {n} idle services", rss, None, "MB", 50, kind="max"),
        Row(f"daemon CPU, {n} idle services", used, None, "% of a core", 0.5, kind="max"),
    ]


def log_latency_row(lines: int = 100) -> Row:
    """A line written inside a container -> a `logs -f` client has it (median)."""
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        d = DaemonProcess(Path(tmp))
        trigger = Path(tmp) / "trigger"
        trigger.mkdir()
        os.mkfifo(trigger / "fifo")
        mount = {"source": str(trigger), "destination": "/trigger", "type": "bind", "options": ["rbind", "rw"]}
        ids = write_services(d, 1, "while :; do read l < /trigger/fifo; echo \"$l\"; done", prefix="echo",
                             extra={"mounts": [mount]})
        d.start()
        sent: dict[str, float] = {}
        got: dict[str, float] = {}
        try:
            d.wait(lambda: all_running(d, ids), timeout=60, what="running")

            def follow() -> None:
                buf = b""
                for chunk in d.client.logs(ids[0], tail=0, follow=True):
                    now = time.perf_counter()
                    buf += chunk
                    *done, buf = buf.split(b"\n")
                    for line in done:
                        got.setdefault(line.decode(), now)
                    if sum(k.startswith("line-") for k in got) >= lines:
                        return

            reader = threading.Thread(target=follow, daemon=True)
            reader.start()

            def send(key: str, wait: float) -> None:
                with open(trigger / "fifo", "w") as f:
                    sent[key] = time.perf_counter()
                    f.write(key + "\n")
                deadline = time.perf_counter() + wait
                while key not in got and time.perf_counter() < deadline:
                    time.sleep(0.0005)

            for i in range(50):  # until the follower is there: a line before it is not its to see
                send(f"hello-{i}", 0.2)
                if f"hello-{i}" in got:
                    break
            sent.clear()
            for i in range(lines):
                send(f"line-{i}", 5)
            reader.join(5)
        finally:
            d.stop()
    delays = [got[k] - t for k, t in sent.items() if k in got]
    lost = len(sent) - len(delays)
    return Row("log line -> logs -f client (median)", statistics.median(delays) * 1000, None, "ms", 5.0, kind="max",
               note=f"{lost} of {len(sent)} not received" if lost else "")


def flood_rows(writers: int = 10, count: int = 2_000_000) -> list[Row]:
    """Ten services writing as fast as they can: every line kept, in order; `services` stays quick."""
    from common import EXTVISOR, PYTHON, paired

    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        d = DaemonProcess(Path(tmp), extra=["--log-max-bytes", str(1 << 30)])
        ids = write_services(d, writers, f"seq 1 {count}; sleep 100000", prefix="flood")
        d.start()
        try:
            env = {**os.environ, "EXTVISOR_SOCKET": str(d.socket)}
            d.wait(lambda: all_running(d, ids), timeout=60, what="writers running")
            during, base = paired([EXTVISOR, "services"], [PYTHON, "-c", "pass"], 9, env)
            last = f"{count}\n".encode()
            logs = [d.log_dir / f"{i}.log" for i in ids]
            d.wait(lambda: all(p.exists() and p.read_bytes()[-16:].endswith(last) for p in logs), timeout=300,
                   what="every line written")
            bad = 0
            for p in logs:
                numbers = p.read_bytes().split()
                bad += count - sum(1 for i, n in enumerate(numbers, 1) if n == str(i).encode())
        finally:
            d.stop()
    return [
        Row(f"{writers} writers x {count:,} lines: lines lost or out of order", bad, None, "lines", 0, kind="max"),
        Row("extvisor services during that flood", during, base, "s", 5.0, reference_name="python -c pass"),
    ]
