"""containerd, podman, extension images and many nodes, each against its own tool."""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, Row, make_busybox_rootfs


def containerd_row(repeat: int = 5) -> Row:
    import bench_containerd as bc
    from containerd_daemon import ContainerdDaemon

    with ContainerdDaemon() as daemon:
        work = daemon.base / "bench"
        rootfs = make_busybox_rootfs(work / "rootfs")
        ours = statistics.median([asyncio.run(bc.backend_startup(daemon, work, rootfs, 1, False)) for _ in range(repeat)])
        raw = statistics.median([bc.ctr_startup(daemon, work, rootfs, 1) for _ in range(repeat)])
    return Row("containerd: one start", ours, raw, "s", 1.2, reference_name="ctr run -d")


def podman_row(repeat: int = 5) -> Row:
    import bench_podman as bp
    from podman_service import PodmanService

    with tempfile.TemporaryDirectory(prefix="bench-podman-") as tmp:
        base = Path(tmp)
        svc = PodmanService(base / "podman")
        svc.start()
        try:
            rootfs = make_busybox_rootfs(base / "raw-rootfs")
            ours = statistics.median([asyncio.run(bp.backend_start(svc, base / f"b{r}", 1)) for r in range(repeat)])
            raw = statistics.median([bp.cli_start(svc, rootfs, 1) for _ in range(repeat)])
        finally:
            svc.stop()
    return Row("podman: one start", ours, raw, "s", 1.2, reference_name="podman run -d")


def _script(name: str, *args: str, timeout: float = 240) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / name), *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{name}: {out.stderr.strip()[-300:]}")
    return out.stdout


def extensions_row() -> Row:
    text = _script("bench_extensions.py", "--mb", "50", "--repeat", "5")
    ours = float(re.search(r"extvisor install \(docker://\)\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    raw = float(re.search(r"skopeo copy \+ umoci raw unpack\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    return Row("install a 50 MB extension from a local registry", ours, raw, "s", 1.2,
               reference_name="skopeo copy + umoci raw unpack")


def build_row() -> Row:
    """`extensions build` of a 50 MB project against tar + skopeo (bench/bench_build.py)."""
    text = _script("bench_build.py", "--mb", "50", "--repeat", "5")
    ours = float(re.search(r"extvisor extensions build\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    raw = float(re.search(r"tar --sort=name -czf \+ skopeo copy\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    return Row("build a 50 MB extension image", ours, raw, "s", 1.2, reference_name="tar --sort=name -czf + skopeo copy")


def nodes_row() -> Row:
    """`services` across twenty TLS daemons against one (bench/bench_fanout.py prints both)."""
    text = _script("bench_fanout.py", "--nodes", "20", "--runs", "7")
    one = float(re.search(r"services -n <1 node>:\s+median (\d+) ms", text).group(1)) / 1000  # type: ignore[union-attr]
    many = float(re.search(r"services -n <20 nodes>: median (\d+) ms", text).group(1)) / 1000  # type: ignore[union-attr]
    return Row("services across 20 nodes (mutual TLS, CLI)", many, one, "s", 1.5, reference_name="the same, 1 node")


def verify_rows() -> list[Row]:
    """An install under a publicKey rule against the same install with none (bench/bench_verify.py)."""
    text = _script("bench_verify.py", "--repeat", "7", timeout=600)
    plain = float(re.search(r"install, no rule\s+([\d.]+) s", text).group(1))  # type: ignore[union-attr]
    verified = float(re.search(r"install, publicKey rule\s+([\d.]+) s", text).group(1))  # type: ignore[union-attr]
    ratio = float(re.search(r"ratio ([\d.]+) \(goal <= 1\.1", text).group(1))  # type: ignore[union-attr]
    return [Row("trust: seconds verification adds to an install", verified - plain, None, "s", 0.1, kind="max"),
            Row("trust: a service start with --require-signatures", ratio, None, "x", 1.1, kind="max",
                reference_name="the same start without it")]  # fmt: skip


def declared_rows() -> list[Row]:
    """`apply` of three extensions to one node and to twenty, and a no-op (bench/bench_declared.py)."""
    text = _script("bench_declared.py", "--nodes", "20", timeout=900)
    one = float(re.search(r"first apply, 1 node:\s+([\d.]+) s", text).group(1))  # type: ignore[union-attr]
    many = float(re.search(r"first apply, \d+ nodes \(parallel \d+\):\s+([\d.]+) s", text).group(1))  # type: ignore[union-attr]
    noop = float(re.search(r"no-op apply, 1 node:\s+([\d.]+) s", text).group(1))  # type: ignore[union-attr]
    return [Row("declared: first apply, 20 nodes", many, one, "s", 2.0, reference_name="the same, 1 node"),
            Row("declared: no-op apply, 1 node", noop, None, "s", 0.5, kind="max")]  # fmt: skip


def follow_rows() -> list[Row]:
    """One check of an unchanged tag; 20 daemons converging (bench/bench_follow.py)."""
    text = _script("bench_follow.py", "--daemons", "20", "--interval", "10", timeout=900)
    check = float(re.search(r"Follower\.check\s+([\d.]+) ms", text).group(1)) / 1000  # type: ignore[union-attr]
    raw = float(re.search(r"skopeo inspect --raw alone\s+([\d.]+) ms", text).group(1)) / 1000  # type: ignore[union-attr]
    intervals = float(re.search(r"\(([\d.]+) intervals; goal", text).group(1))  # type: ignore[union-attr]
    return [Row("follow: one check of an unchanged tag, CPU", check, raw, "s", 0.05, kind="max",
                reference_name="skopeo inspect --raw"),
            Row("follow: 20 daemons run a new generation", intervals, None, "intervals", 2.0, kind="max")]  # fmt: skip
