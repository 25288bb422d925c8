"""``soak.py --tails``: huge log tails against the API's latency (issue 24 item 14).

A service writes a log of 30 MB, rotated at 10 MB (so three files), then sleeps. Then twenty
clients (curl, each its own process; ``--cli-readers``: ``extvisor logs``) read it whole with
``tail=1000000000`` again and again while ``GET /v1/services`` is timed every 50 ms over the
Unix socket. Goal: the worst call under 1 s on a 2-core machine. Printed against the same
call with no reader (the ratio), with the readers' throughput and the daemon's CPU time per
GB served.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import threading
import sys
import time
from pathlib import Path

from daemon_process import DaemonProcess

from extvisor.client.http import Client
from extvisor.testing import make_busybox_rootfs

LINE = "x" * 99
FLOOD = f"i=0; while [ $i -lt 300000 ]; do echo {LINE}; i=$((i+1)); done; exec sleep 100000"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _loop_lag(readers: int) -> str:
    """The same tails in this process, all started at once, against an event loop's lag."""
    import asyncio
    import shutil

    from extvisor.runtime.logs import ServiceLog

    d = Path(tempfile.mkdtemp(prefix="extvisor-tails-lag-"))
    log = ServiceLog(d / "ext-x.log", max_bytes=10 << 20, backups=3)
    for _ in range(300):
        log.write((LINE.encode() + b"\n") * 1000)
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            t = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - t - 0.005)

    async def reader() -> int:
        n = 0
        async for chunk in log.read(tail=10**9):
            n += len(chunk)
            await asyncio.sleep(0)  # hands the loop back, as a socket write does
        return n

    tick = asyncio.create_task(ticker())
    t0 = time.monotonic()
    sizes = await asyncio.gather(*(reader() for _ in range(readers)))
    took = time.monotonic() - t0
    done = True
    await tick
    log.close()
    shutil.rmtree(d)
    lags.sort()
    return (f"  in process, {readers} tails of {sizes[0] / 1e6:.0f} MB started at once: done in {took:.2f} s; "
            f"the event loop's lag p99 {lags[int(len(lags) * 0.99)] * 1000:.1f} ms, worst {lags[-1] * 1000:.0f} ms")


def tails_soak(readers: int, seconds: float, cli: bool = False) -> int:
    base = Path(tempfile.mkdtemp(prefix="extvisor-tails-soak-"))
    d = DaemonProcess(base, extra=["--log-max-bytes", str(10 << 20), "--log-backups", "3"])
    make_busybox_rootfs(d.rootfs_dir / "big")
    (d.config_dir / "big.yaml").write_text(json.dumps(
        {"name": "big", "restart": "always", "container": {"entrypoint": "/bin/sh", "args": ["-c", FLOOD]}}))
    d.start(timeout=60)
    c = Client(str(d.socket), timeout=30)
    deadline = time.monotonic() + 120
    while sum(p.stat().st_size for p in d.log_dir.glob("ext-big.log*")) < 30_000_000:
        assert time.monotonic() < deadline, "the service did not write 30 MB"
        time.sleep(0.2)
    size = sum(p.stat().st_size for p in d.log_dir.glob("ext-big.log*"))

    def timed() -> float:
        t = time.monotonic()
        c.services()
        return time.monotonic() - t

    quiet = [timed() for _ in range(40)]
    stop = threading.Event()
    read_bytes = [0]
    lock = threading.Lock()

    def reader() -> None:
        url = "http://x/v1/services/ext-big/logs?tail=1000000000"
        while not stop.is_set():
            if cli:
                env = {**os.environ, "EXTVISOR_SOCKET": str(d.socket)}
                out = subprocess.run([sys.executable, "-m", "extvisor", "logs", "ext-big", "--tail", "1000000000"],
                                     capture_output=True, env=env, timeout=120)  # fmt: skip
                n = len(out.stdout)
            else:
                out = subprocess.run(["curl", "-s", "--unix-socket", str(d.socket), "-o", "/dev/null",
                                      "-w", "%{size_download}", url], capture_output=True, text=True, timeout=120)  # fmt: skip
                n = int(out.stdout or 0)
            with lock:
                read_bytes[0] += n

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(readers)]
    cpu0 = cpu_seconds(d.proc.pid)  # type: ignore[union-attr]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    loaded = []
    while time.monotonic() - t0 < seconds:
        loaded.append(timed())
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(d.proc.pid) - cpu0  # type: ignore[union-attr]
    d.stop()
    q, worst, med = statistics.median(quiet), max(loaded), statistics.median(loaded)
    import asyncio

    print(f"tails soak: {readers} readers of a {size / 1e6:.0f} MB rotated log (tail=1e9) for {seconds:g} s")
    print(asyncio.run(_loop_lag(readers)))
    print(f"  GET /v1/services: quiet median {q * 1000:.1f} ms; with the readers median {med * 1000:.1f} ms "
          f"({med / q:.0f}x), p99 {sorted(loaded)[int(len(loaded) * 0.99) - 1] * 1000:.0f} ms, "
          f"worst {worst * 1000:.0f} ms (goal < 1000 ms), {len(loaded)} calls")
    print(f"  readers got {read_bytes[0] / 1e6:.0f} MB in {elapsed:.1f} s ({read_bytes[0] / 1e6 / elapsed:.0f} MB/s)")
    print(f"  the daemon used {cpu:.1f} s of CPU, {cpu / (read_bytes[0] / 1e9):.2f} s per GB served")
    print(f"  state and logs kept in {base}")
    return 0 if worst < 1 else 1
