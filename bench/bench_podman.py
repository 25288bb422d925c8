"""Benchmark the podman backend against the podman CLI (run by hand as root, not by the tests).

    python bench/bench_podman.py [--counts 1,5] [--repeat 3]

A private ``podman system service`` is started for the run (tests/podman_service.py).

1. Start-up: N ``sleep`` services launched through PodmanBackend (concurrently, as the
   supervisor starts independent services) until every launch returned with the
   container running, against a shell loop of ``podman --url SOCK run -d`` of the same
   rootfs with the same main settings (runc: the service's containers.conf). Removal is not timed.
2. One short run: launch ``/bin/true``, wait for the exit (output drained), delete;
   against ``podman --url SOCK run --rm`` of the same.

Prints medians over ``--repeat`` rounds and the ratios backend / CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from podman_service import PodmanService  # noqa: E402

from extvisor import BackendConfig  # noqa: E402
from extvisor.testing import CollectingSink, Harness, make_busybox_rootfs  # noqa: E402
from extvisor_podman import PodmanBackend  # noqa: E402

CLI_FLAGS = [
    "--network", "host", "--ipc", "host", "--read-only", "--read-only-tmpfs=false",
    "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--cap-add", "ALL", "--cap-drop", "SYS_BOOT", "--cap-drop", "SYS_MODULE",
    "--security-opt", "seccomp=unconfined", "--log-driver", "k8s-file",
]  # fmt: skip


def cli(svc: PodmanService, *args: str) -> list[str]:
    return ["podman", "--url", svc.url, *args]


async def backend_start(svc: PodmanService, base: Path, n: int) -> float:
    backend = PodmanBackend(BackendConfig(base / "state", {"podman_url": svc.url}))
    await backend.open()
    harness = Harness(backend, base / "rootfs", base / "svc-state")
    specs = [harness.spec(f"s{i}", ["/bin/sleep", "1000"]) for i in range(n)]
    requests = [harness.request(s, CollectingSink()) for s in specs]  # rootfs built before timing
    t0 = time.perf_counter()
    handles = await asyncio.gather(*(backend.launch(r) for r in requests))
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*(h.delete() for h in handles))
    await backend.close()
    return elapsed


def cli_start(svc: PodmanService, rootfs: Path, n: int) -> float:
    script = [
        " ".join(cli(svc, "run", "-d", "--name", f"raw{i}", *CLI_FLAGS, "--rootfs", f"{rootfs}:O", "/bin/sleep", "1000"))
        + " >/dev/null"
        for i in range(n)
    ]
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", "\n".join(script)], check=True)
    elapsed = time.perf_counter() - t0
    subprocess.run(cli(svc, "rm", "-f", "-t", "0", *(f"raw{i}" for i in range(n))), capture_output=True, check=True)
    return elapsed


async def backend_short_run(svc: PodmanService, base: Path) -> float:
    backend = PodmanBackend(BackendConfig(base / "state", {"podman_url": svc.url}))
    await backend.open()
    harness = Harness(backend, base / "rootfs", base / "svc-state")
    spec = harness.spec("once", ["/bin/true"])
    request = harness.request(spec, CollectingSink())
    t0 = time.perf_counter()
    handle = await backend.launch(request)
    await handle.wait()
    await handle.delete()
    elapsed = time.perf_counter() - t0
    await backend.close()
    return elapsed


def cli_short_run(svc: PodmanService, rootfs: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cli(svc, "run", "--rm", *CLI_FLAGS, "--rootfs", f"{rootfs}:O", "/bin/true"), check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,5")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("podman") is None:
        sys.exit("podman is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        svc = PodmanService(base / "podman")
        svc.start()
        try:
            rootfs = make_busybox_rootfs(base / "raw-rootfs")
            rows = []
            for n in (int(c) for c in args.counts.split(",")):
                ours = [asyncio.run(backend_start(svc, base / f"b{n}-{r}", n)) for r in range(args.repeat)]
                raw = [cli_start(svc, rootfs, n) for _ in range(args.repeat)]
                rows.append((f"start {n} sleep services (s)", statistics.median(ours), statistics.median(raw)))
            ours = [asyncio.run(backend_short_run(svc, base / f"once-{r}")) for r in range(args.repeat)]
            raw = [cli_short_run(svc, rootfs) for _ in range(args.repeat)]
            rows.append(("run /bin/true to the end, removed (s)", statistics.median(ours), statistics.median(raw)))
        finally:
            svc.stop()
    print(f"podman backend vs podman CLI (remote, same service), median of {args.repeat}")
    print(f"{'measure':40} {'backend':>9} {'podman':>9} {'ratio':>7}")
    for name, ours_s, raw_s in rows:
        print(f"{name:40} {ours_s:9.3f} {raw_s:9.3f} {ours_s / raw_s:7.2f}")


if __name__ == "__main__":
    main()
