"""Benchmark the containerd backend against ``ctr run`` (run by hand as root, not by the tests).

    python bench/bench_containerd.py [--counts 1,10] [--repeat 3] [--log-mb 100]

Both talk to the same private containerd (tests/containerd_daemon.py), started here, and
use the same busybox rootfs dir (``ctr run --rootfs DIR``, no image, no snapshotter).

1. Start-up: N ``sleep`` services launched through ContainerdBackend until every launch
   has returned (task running), concurrently as the supervisor starts independent
   services and one after the other, against a shell loop of ``ctr run --detach``.
2. Whole runs: N services that print a line and exit, each launched, waited for and
   deleted in turn (output through the backend's FIFO into a file), against a loop of
   ``ctr run --rm`` with its output to a file.
3. Log throughput: one container writing ``--log-mb`` MB (``dd``, 64 KiB writes) through
   the backend into a file, against ``ctr run --rm`` with its output to a file.

Cleanup of start-up runs is not timed. Prints medians over ``--repeat`` rounds and the
ratios backend / ctr (for throughput, ctr time / backend time: above 1 = faster).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from containerd_daemon import ContainerdDaemon  # noqa: E402

from extvisor import BackendConfig, LaunchRequest  # noqa: E402
from extvisor.oci import build_oci_spec  # noqa: E402
from extvisor.testing import make_busybox_rootfs, make_service  # noqa: E402
from extvisor_containerd import ContainerdBackend  # noqa: E402

NS_BACKEND = "bench-extvisor"
NS_CTR = "bench-ctr"


class FileSink:
    def __init__(self, path: Path) -> None:
        self.file = open(path, "ab")  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def close(self) -> None:
        self.file.close()


def backend(daemon: ContainerdDaemon, state: Path) -> ContainerdBackend:
    options = {"containerd_address": daemon.address, "containerd_namespace": NS_BACKEND}
    return ContainerdBackend(BackendConfig(state_dir=state, options=options))


def request(spec, rootfs: Path, state: Path, sink: FileSink) -> LaunchRequest:  # type: ignore[no-untyped-def]
    (state / spec.id).mkdir(parents=True, exist_ok=True)
    return LaunchRequest(spec.id, spec, build_oci_spec(spec, rootfs), rootfs, sink, state / spec.id)


async def backend_startup(daemon: ContainerdDaemon, work: Path, rootfs: Path, n: int, concurrent: bool) -> float:
    state = work / "be-state"
    be = backend(daemon, state)
    await be.open()
    sink = FileSink(work / "be.log")
    reqs = [request(make_service(f"bench-{i}", ["/bin/sleep", "1000"]), rootfs, state, sink) for i in range(n)]
    t0 = time.perf_counter()
    if concurrent:
        handles = await asyncio.gather(*(be.launch(r) for r in reqs))
    else:
        handles = [await be.launch(r) for r in reqs]
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*(h.delete() for h in handles))
    await be.close()
    sink.close()
    return elapsed


def ctr(daemon: ContainerdDaemon, work: Path) -> list[str]:
    return ["ctr", "--address", daemon.address, "--namespace", NS_CTR, "run", "--rootfs", "--net-host",
            "--privileged", "--read-only", "--runc-root", str(work / "ctr-runc"),
            "--fifo-dir", str(work / "ctr-fifo")]  # fmt: skip


def ctr_startup(daemon: ContainerdDaemon, work: Path, rootfs: Path, n: int) -> float:
    ids = [f"ctr-bench-{i}" for i in range(n)]
    cmd = " ".join(ctr(daemon, work))
    script = f"for id in {' '.join(ids)}; do {cmd} --null-io -d {rootfs} $id /bin/sleep 1000 || exit 1; done"
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", script], check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    for cid in ids:
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace=NS_CTR, check=False)
        daemon.ctr("tasks", "delete", "-f", cid, namespace=NS_CTR, check=False)
        daemon.ctr("containers", "delete", cid, namespace=NS_CTR, check=False)
    return elapsed


async def backend_runs(daemon: ContainerdDaemon, work: Path, rootfs: Path, n: int) -> float:
    state = work / "run-state"
    be = backend(daemon, state)
    await be.open()
    sink = FileSink(work / "runs.log")
    t0 = time.perf_counter()
    for i in range(n):
        handle = await be.launch(request(make_service(f"run-{i}", "echo hello"), rootfs, state, sink))
        status = await handle.wait()
        await handle.delete()
        assert status.success, status
    elapsed = time.perf_counter() - t0
    await be.close()
    sink.close()
    return elapsed


def ctr_runs(daemon: ContainerdDaemon, work: Path, rootfs: Path, n: int) -> float:
    cmd = " ".join(ctr(daemon, work))
    script = f"for i in $(seq {n}); do {cmd} --rm {rootfs} ctr-run-$i /bin/sh -c 'echo hello' || exit 1; done"
    t0 = time.perf_counter()
    with open(work / "ctr-runs.log", "ab") as out:
        subprocess.run(["sh", "-c", script], check=True, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return time.perf_counter() - t0


DD = "dd if=/dev/zero bs=65536 count={blocks} 2>/dev/null"


async def backend_throughput(daemon: ContainerdDaemon, work: Path, rootfs: Path, size: int) -> float:
    state = work / "tp-state"
    be = backend(daemon, state)
    await be.open()
    log = work / "tp-backend.log"
    log.unlink(missing_ok=True)
    sink = FileSink(log)
    spec = make_service("bench-writer", DD.format(blocks=size // 65536))
    t0 = time.perf_counter()
    handle = await be.launch(request(spec, rootfs, state, sink))
    status = await handle.wait()
    elapsed = time.perf_counter() - t0
    await handle.delete()
    await be.close()
    sink.close()
    assert status.success and log.stat().st_size == size, (status, log.stat().st_size)
    return elapsed


def ctr_throughput(daemon: ContainerdDaemon, work: Path, rootfs: Path, size: int) -> float:
    out = work / "tp-ctr.log"
    cmd = [*ctr(daemon, work), "--rm", str(rootfs), "ctr-writer", "/bin/sh", "-c", DD.format(blocks=size // 65536)]
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
    elapsed = time.perf_counter() - t0
    assert out.stat().st_size == size
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,10")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--log-mb", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"):
        sys.exit("needs root, containerd and ctr")
    counts = [int(c) for c in args.counts.split(",")]
    with ContainerdDaemon() as daemon:
        work = daemon.base / "bench"
        rootfs = make_busybox_rootfs(work / "rootfs")  # shared: the root is read-only

        def median(f, *a):  # type: ignore[no-untyped-def]
            return statistics.median(f(*a) for _ in range(args.repeat))

        async def amedian(f, *a):  # type: ignore[no-untyped-def]
            return statistics.median([await f(*a) for _ in range(args.repeat)])

        version = [line.split()[-1] for line in daemon.ctr("version").stdout.splitlines() if "Version:" in line][-1]
        print(f"containerd backend vs ctr run (containerd {version}), "
              f"median of {args.repeat}; times in ms\n")  # fmt: skip
        print(f"{'start N services':<20}{'backend ∥':>11}{'backend seq':>13}{'ctr run -d':>12}{'∥/ctr':>8}{'seq/ctr':>9}")
        for n in counts:
            par = await amedian(backend_startup, daemon, work, rootfs, n, True)
            seq = await amedian(backend_startup, daemon, work, rootfs, n, False)
            sh = median(ctr_startup, daemon, work, rootfs, n)
            print(f"{'N=' + str(n):<20}{par * 1e3:>11.0f}{seq * 1e3:>13.0f}{sh * 1e3:>12.0f}{par / sh:>8.2f}{seq / sh:>9.2f}")
        print(f"\n{'N whole runs':<20}{'backend':>11}{'ctr run --rm':>13}{'ratio':>8}")
        for n in counts:
            be = await amedian(backend_runs, daemon, work, rootfs, n)
            sh = median(ctr_runs, daemon, work, rootfs, n)
            print(f"{'N=' + str(n):<20}{be * 1e3:>11.0f}{sh * 1e3:>13.0f}{be / sh:>8.2f}")
        size = args.log_mb * 1_000_000 // 65536 * 65536
        mb = size / 1e6
        be = await amedian(backend_throughput, daemon, work, rootfs, size)
        sh = median(ctr_throughput, daemon, work, rootfs, size)
        print(f"\n{f'log, {mb:.0f} MB, MB/s':<20}{'backend':>11}{'ctr run --rm':>13}{'ratio':>8}")
        print(f"{'dd 64k':<20}{mb / be:>11.0f}{mb / sh:>13.0f}{sh / be:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
