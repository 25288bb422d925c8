"""What health checks cost (as root; about two minutes on 2 cores):

    python bench/bench_health.py [--only tcp,runc,containerd,podman,daemon]

1. tcp and http checks: the daemon's CPU per check (they run in its event loop), against a
   local HTTP server in another process. Goal: under 2 ms.
2. An exec check on each backend against the backend's own exec of the same command
   (``/bin/true``) in the same container, in the same run, taken in turns: ``runc exec``,
   ``ctr task exec``, ``podman exec``. CPU is this process's plus its children's (runc exec
   is our child; containerd's shim and podman's service do their part outside both, so
   ctr's and podman's own processes are what the user pays), and wall time. Goal: 1.3x.
3. A daemon (runc) with 20 services whose exec check runs every 10 s: the daemon's own CPU
   over 40 s, in percent of one core (its runc children apart). Goal: under 1 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Row, write_services  # noqa: E402

from extvisor import BackendConfig  # noqa: E402
from extvisor.testing.kit import Harness  # noqa: E402

PARTS = ["tcp", "runc", "containerd", "podman", "daemon"]
RUNS = 30


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe_rows(n: int = 400) -> list[Row]:
    from extvisor.runtime.probes import http_check, tcp_check

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                              cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)

        async def many(check, target):  # type: ignore[no-untyped-def]
            for _ in range(20):  # warm-up
                await check(target, 5.0)
            t0 = time.process_time()
            for _ in range(n):
                outcome = await check(target, 5.0)
                assert outcome.ok, outcome
            return (time.process_time() - t0) / n

        tcp = asyncio.run(many(tcp_check, f"127.0.0.1:{port}"))
        http = asyncio.run(many(http_check, f"http://127.0.0.1:{port}/"))
    finally:
        server.terminate()
        server.wait()
    return [Row("health: tcp check, daemon CPU", tcp * 1000, None, "ms", 2.0, "max"),
            Row("health: http check, daemon CPU", http * 1000, None, "ms", 2.0, "max")]


Samples = tuple[list[float], list[float], list[float], list[float]]  # our CPU, wall; the tool's CPU, wall


async def _exec_pair(backend, harness: Harness, raw: list[str]) -> Samples:  # type: ignore[no-untyped-def]
    spec = harness.spec("health", "echo up; exec sleep 1000")
    handle, sink = await harness.launch(spec)
    await sink.wait_for(b"up\n")
    argv = [a.replace("{id}", handle.id) for a in raw]
    ours_cpu, ours_wall, raw_cpu, raw_wall = [], [], [], []
    for i in range(RUNS + 2):
        c0, t0 = _cpu(), time.perf_counter()
        got = await backend.exec(handle, ["/bin/true"], 10.0)
        c1, t1 = _cpu(), time.perf_counter()
        assert got.exit_code == 0, got
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL)  # fmt: skip
        assert await proc.wait() == 0, argv
        c2, t2 = _cpu(), time.perf_counter()
        if i >= 2:  # warm-up
            ours_cpu.append(c1 - c0)
            ours_wall.append(t1 - t0)
            raw_cpu.append(c2 - c1)
            raw_wall.append(t2 - t1)
    return ours_cpu, ours_wall, raw_cpu, raw_wall


def _rows(name: str, ref: str, got: Samples) -> list[Row]:
    oc, ow, rc, rw = (statistics.median(x) for x in got)
    return [Row(f"health: {name} exec check, CPU", oc, rc, "s", 1.3, reference_name=ref),
            Row(f"health: {name} exec check, wall", ow, rw, "s", 1.3, reference_name=ref)]


async def _with(backend, base: Path, raw: list[str]):  # type: ignore[no-untyped-def]
    await backend.open()
    await backend.cleanup()
    (base / "rootfs").mkdir(parents=True, exist_ok=True)
    harness = Harness(backend, base / "rootfs", base / "services")
    try:
        return await _exec_pair(backend, harness, raw)
    finally:
        await harness.close()
        await backend.close()


def runc_rows() -> list[Row]:
    from extvisor_runc import RuncBackend

    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        state = Path(tmp) / "state"
        raw = ["runc", "--root", str(state / "runc"), "--log", "/dev/null", "exec", "{id}", "/bin/true"]
        got = asyncio.run(_with(RuncBackend(BackendConfig(state_dir=state)), Path(tmp), raw))
    return _rows("runc", "runc exec", got)


def containerd_rows() -> list[Row]:
    from containerd_daemon import ContainerdDaemon

    from extvisor_containerd import ContainerdBackend

    with ContainerdDaemon() as daemon:
        base = daemon.base / "bench-health"
        options = {"containerd_address": daemon.address, "containerd_namespace": "bench-health"}
        backend = ContainerdBackend(BackendConfig(state_dir=base / "state", options=options))
        raw = ["ctr", "--address", daemon.address, "--namespace", "bench-health", "task", "exec", "--exec-id",
               "bench", "{id}", "/bin/true"]  # fmt: skip
        got = asyncio.run(_with(backend, base, raw))
    return _rows("containerd", "ctr task exec", got)


def podman_rows() -> list[Row]:
    from podman_service import PodmanService

    from extvisor_podman import PodmanBackend

    with tempfile.TemporaryDirectory(prefix="bench-health-podman-") as tmp:
        svc = PodmanService(Path(tmp) / "podman")
        svc.start()
        try:
            state = Path(tmp) / "state"
            config = BackendConfig(state_dir=state, options={"podman_url": svc.url})
            backend = PodmanBackend(config)
            raw = ["podman", "--url", svc.url, "exec", "{id}." + config.scope, "/bin/true"]
            got = asyncio.run(_with(backend, Path(tmp), raw))
        finally:
            svc.stop()
    return _rows("podman", "podman exec", got)


def _cpu_of(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def daemon_rows(n: int = 20, window: float = 40.0) -> list[Row]:
    from daemon_process import DaemonProcess

    with tempfile.TemporaryDirectory(prefix="bench-health-daemon-") as tmp:
        d = DaemonProcess(Path(tmp))
        ids = write_services(d, n, "exec sleep 100000", prefix="hc")
        for sid in ids:
            path = d.config_dir / f"{sid[4:]}.yaml"
            doc = json.loads(path.read_text())
            doc["healthcheck"] = {"test": ["CMD", "/bin/true"], "interval": "10s"}
            path.write_text(json.dumps(doc))
        d.start()
        try:
            d.wait(lambda: all(s["health"]["healthy"] for s in d.client.services()), timeout=60, what="all healthy")
            own0, kids0 = _cpu_of(d.proc.pid)  # type: ignore[union-attr]
            time.sleep(window)
            own1, kids1 = _cpu_of(d.proc.pid)  # type: ignore[union-attr]
            checks = sum(len(s["health"]["checks"]) for s in d.client.services())
        finally:
            d.stop()
    note = f"runc exec children: {(kids1 - kids0) / window * 100:.1f} %; {checks} results kept"
    return [Row(f"health: daemon CPU, {n} services with exec checks every 10 s", (own1 - own0) / window * 100, None,
                "%", 1.0, "max", note=note)]  # fmt: skip


def measure(part: str) -> list[Row]:
    return {"tcp": probe_rows, "runc": runc_rows, "containerd": containerd_rows, "podman": podman_rows,
            "daemon": daemon_rows}[part]()  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(PARTS))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from run import table

    rows: list[Row] = []
    for part in args.only.split(","):
        rows += measure(part)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
