"""Benchmark the runc backend against plain runc (run by hand as root, not by the tests).

    python bench/bench_runc.py [--counts 1,10,50] [--log-mb 200] [--repeat 3]

1. Start-up: N ``sleep`` services launched through RuncBackend until every launch has
   returned (running), concurrently as the supervisor starts independent services and
   one after the other, against a shell loop of ``runc run --detach`` over the same
   bundles. Cleanup is not timed.
2. Log throughput: one container writing ``--log-mb`` MB through the backend into a
   file sink, until wait() returns, against ``runc run`` with stdout straight to a file;
   once with 64 KiB writes (``dd``: the pipe path's ceiling), once with lines (``yes``).

Prints a table with medians over ``--repeat`` rounds and the ratios backend / shell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from extvisor import BackendConfig, LaunchRequest
from extvisor.oci import build_oci_spec, fit_to_host
from extvisor.testing import make_busybox_rootfs, make_service
from extvisor_runc import RuncBackend


class FileSink:
    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def close(self) -> None:
        self.file.close()


def write_bundle(bundle: Path, oci: dict) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    oci = json.loads(json.dumps(oci))
    fit_to_host(oci)
    (bundle / "config.json").write_text(json.dumps(oci))


async def backend_startup(work: Path, rootfs: Path, n: int, concurrent: bool) -> float:
    state = work / f"be-{n}-{concurrent}"
    backend = RuncBackend(BackendConfig(state_dir=state))
    await backend.open()
    specs = [make_service(f"bench-{i}", ["/bin/sleep", "1000"]) for i in range(n)]
    requests = [
        LaunchRequest(s.id, s, build_oci_spec(s, rootfs), rootfs, FileSink(state / f"{s.id}.log"), state / s.id)
        for s in specs
    ]
    t0 = time.perf_counter()
    if concurrent:
        handles = await asyncio.gather(*(backend.launch(r) for r in requests))
    else:
        handles = [await backend.launch(r) for r in requests]
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*(h.delete() for h in handles))
    await backend.close()
    for r in requests:
        r.log.close()
    return elapsed


def shell_startup(work: Path, rootfs: Path, n: int) -> float:
    root = work / f"sh-root-{n}"
    ids = []
    for i in range(n):
        spec = make_service(f"bench-{i}", ["/bin/sleep", "1000"])
        write_bundle(work / "sh-bundles" / spec.id, build_oci_spec(spec, rootfs))
        ids.append(spec.id)
    script = (
        f'for id in {" ".join(ids)}; do '
        f"runc --root {root} run --detach --bundle {work}/sh-bundles/$id $id "
        f">{work}/sh-bundles/$id/out.log 2>&1 || exit 1; "
        "done"
    )
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", script], check=True)
    elapsed = time.perf_counter() - t0
    for cid in ids:
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], check=True)
    return elapsed


WRITERS = {
    "dd 64k": "dd if=/dev/zero bs=65536 count={blocks} 2>/dev/null",
    "yes lines": "yes 'a line of text to fill the log with' | head -c {size}",
}


def writer(kind: str, size: int) -> str:
    return WRITERS[kind].format(size=size, blocks=size // 65536)


async def backend_throughput(work: Path, rootfs: Path, size: int, kind: str) -> float:
    state = work / "tp-backend"
    backend = RuncBackend(BackendConfig(state_dir=state))
    await backend.open()
    spec = make_service("bench-writer", writer(kind, size))
    sink = FileSink(work / "tp-backend.log")
    request = LaunchRequest(spec.id, spec, build_oci_spec(spec, rootfs), rootfs, sink, state / spec.id)
    t0 = time.perf_counter()
    handle = await backend.launch(request)
    status = await handle.wait()
    elapsed = time.perf_counter() - t0
    await handle.delete()
    await backend.close()
    sink.close()
    assert status.success and sink.size == size, (status, sink.size)
    return elapsed


def shell_throughput(work: Path, rootfs: Path, size: int, kind: str) -> float:
    spec = make_service("bench-writer", writer(kind, size))
    bundle = work / "tp-bundle"
    write_bundle(bundle, build_oci_spec(spec, rootfs))
    out = work / "tp-shell.log"
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        cmd = ["runc", "--root", str(work / "tp-root"), "run", "--bundle", str(bundle), spec.id]
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, check=True)
    elapsed = time.perf_counter() - t0
    assert out.stat().st_size == size
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,10,50")
    parser.add_argument("--log-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("runc"):
        sys.exit("needs root and runc")
    counts = [int(c) for c in args.counts.split(",")]
    size = args.log_mb * 1_000_000 // 65536 * 65536
    with tempfile.TemporaryDirectory(prefix="bench-runc-") as tmp:
        work = Path(tmp)
        rootfs = make_busybox_rootfs(work / "rootfs")  # shared: the root is read-only

        def median(f, *a):
            return statistics.median(f(*a) for _ in range(args.repeat))

        async def amedian(f, *a):
            return statistics.median([await f(*a) for _ in range(args.repeat)])

        print(f"runc backend vs plain runc, median of {args.repeat}; times in ms\n")
        head = ("start N services", "backend ∥", "backend seq", "shell loop", "∥/shell", "seq/shell")
        print("{:<22}{:>12}{:>13}{:>12}{:>9}{:>11}".format(*head))
        for n in counts:
            par = await amedian(backend_startup, work, rootfs, n, True)
            seq = await amedian(backend_startup, work, rootfs, n, False)
            sh = median(shell_startup, work, rootfs, n)
            row = (f"N={n}", par * 1e3, seq * 1e3, sh * 1e3, par / sh, seq / sh)
            print("{:<22}{:>12.0f}{:>13.0f}{:>12.0f}{:>9.2f}{:>11.2f}".format(*row))

        mb = size / 1e6
        print(f"\n{f'log, {mb:.0f} MB, MB/s':<22}{'backend':>12}{'runc run':>13}{'ratio':>9}")
        for kind in WRITERS:
            be = await amedian(backend_throughput, work, rootfs, size, kind)
            sh = median(shell_throughput, work, rootfs, size, kind)
            print(f"{kind:<22}{mb / be:>12.0f}{mb / sh:>13.0f}{sh / be:>9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
