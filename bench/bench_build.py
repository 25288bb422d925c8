"""Benchmark ``extvisor extensions build`` against ``tar --sort=name -czf`` + ``skopeo`` packing.

    python bench/bench_build.py [--mb 50] [--repeat 3]

Makes a project folder with a ``--mb`` MB rootfs (a few large binaries, mostly
incompressible, and many small files), then times, in the same run, as whole processes:

- extvisor: ``extvisor extensions build DIR -o oci:OUT:v1`` (checks the folder, writes the
  layer, config, manifest and layout);
- baseline: what an author types without it: ``tar --sort=name --owner=0 --group=0
  --numeric-owner --mtime=@0 -czf layer.tar.gz manifest.yaml rootfs`` of the same tree laid out
  as the image, then ``skopeo copy tarball:layer.tar.gz oci:OUT:v1`` (the packing step
  examples/hello-world-extension/build-image.sh uses; umoci would need an unpacked bundle).
  The baseline's tree is laid out before timing starts (a gift to it).

Prints medians and the ratio extvisor / baseline (goal: at most 1.2).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTVISOR = str(Path(sys.executable).with_name("extvisor"))
SERVICE = "name: big\ncontainer:\n  entrypoint: ./bin/tool0\nrestart: always\n"
MANIFEST = ROOT / "examples" / "hello-world-extension" / "manifest.yaml"


def make_project(path: Path, mb: int) -> None:
    rng = random.Random(12)
    size = mb << 20
    rootfs = path / "big"
    (rootfs / "bin").mkdir(parents=True)
    for i in range(8):  # binaries: incompressible
        (rootfs / "bin" / f"tool{i}").write_bytes(rng.randbytes(int(size * 0.85) // 8))
        (rootfs / "bin" / f"tool{i}").chmod(0o755)
    for i in range(2000):  # data files
        d = rootfs / "share" / "data" / str(i // 100)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(rng.randbytes(int(size * 0.15) // 2000))
    (path / "big.yaml").write_text(SERVICE)
    (path / "manifest.yaml").write_text(MANIFEST.read_text().replace("name: hello-world", "name: big"))


def image_tree(project: Path, out: Path) -> None:
    """The project laid out as the image's layer (what the baseline archives)."""
    (out / "rootfs/usr/local/etc/containers").mkdir(parents=True)
    (out / "rootfs/usr/local/lib/containers").mkdir(parents=True)
    shutil.copy(project / "manifest.yaml", out / "manifest.yaml")
    shutil.copy(project / "big.yaml", out / "rootfs/usr/local/etc/containers/big.yaml")
    shutil.copytree(project / "big", out / "rootfs/usr/local/lib/containers/big", symlinks=True)


def timed(cmd: list[str], cwd: Path | None = None) -> float:
    """Wall time of one whole process."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        print("missing skopeo: run scripts/setup.sh --dev", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-build-", dir=os.environ.get("BENCH_TMP", "/var/tmp")))
    try:
        project = work / "project"
        make_project(project, args.mb)
        tree = work / "tree"
        image_tree(project, tree)
        policy = work / "policy.json"
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        ours, theirs = [], []
        for i in range(args.repeat):
            def extvisor() -> float:
                return timed([EXTVISOR, "extensions", "build", str(project), "-o", f"oci:{work}/ours{i}:v1"])  # noqa: B023

            def baseline() -> float:
                layer = work / f"layer{i}.tar.gz"  # noqa: B023
                t = timed(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0",
                           "-czf", str(layer), "manifest.yaml", "rootfs"], cwd=tree)  # fmt: skip
                return t + timed(["skopeo", "--policy", str(policy), "copy", "-q", f"tarball:{layer}",
                                  f"oci:{work}/theirs{i}:v1"])  # noqa: B023  # fmt: skip

            # alternate the order so the page cache favours neither
            if i % 2:
                ours.append(extvisor())
                theirs.append(baseline())
            else:
                theirs.append(baseline())
                ours.append(extvisor())
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        print(f"project: {args.mb} MB rootfs, 8 binaries + 2000 files, {args.repeat} rounds")
        print(f"{'':40}{'median s':>10}{'min s':>9}")
        print(f"{'extvisor extensions build':40}{m_ours:10.2f}{min(ours):9.2f}")
        print(f"{'tar --sort=name -czf + skopeo copy':40}{m_theirs:10.2f}{min(theirs):9.2f}")
        print(f"ratio extvisor / baseline: {m_ours / m_theirs:.2f} (goal <= 1.2)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
