"""Benchmark installing an extension image against ``skopeo copy`` + ``umoci raw unpack``.

    python bench/bench_extensions.py [--mb 50] [--repeat 3]

Starts a private registry (tests/extensions/registry.py: TLS with its own CA, basic auth),
pushes a ``--mb`` MB extension in the siderolabs shape (one service, its rootfs: a few large
binaries and many small files, mostly incompressible), then times, in the same run:

- extvisor: ``Store.install`` from ``docker://`` (what ``extvisor extensions install`` has the
  daemon do: fetch with skopeo, check every blob, apply the layers, run every check, sync,
  switch atomically), into a fresh store each round;
- baseline: ``skopeo copy docker://... oci:DIR:latest`` then ``umoci raw unpack``.

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from extensions.images import Image, extension_entries, file, service_yaml  # noqa: E402
from extensions.images import Pusher  # noqa: E402
from extensions.registry import Registry  # noqa: E402

from extvisor.extensions import FetchOptions, parse_ref  # noqa: E402
from extvisor.extensions.check import default_kinds  # noqa: E402
from extvisor.extensions.image import default_talos  # noqa: E402
from extvisor.extensions.store import Store  # noqa: E402


def big_image(mb: int) -> Image:
    rng = random.Random(12)
    base = "rootfs/usr/local/lib/containers/big"
    entries = extension_entries("big", {"big": service_yaml("big")})
    size = mb << 20
    big_files, small = 8, 2000
    for i in range(big_files):  # binaries: incompressible
        entries.append(file(f"{base}/bin/tool{i}", rng.randbytes(int(size * 0.85) // big_files), 0o755))
    for i in range(small):  # data files, some text
        entries.append(file(f"{base}/share/data/{i // 100}/f{i}", rng.randbytes(int(size * 0.15) // small)))
    return Image([entries[: len(entries) // 2], entries[len(entries) // 2 :]])  # two layers, as bldr gives


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for tool in ("skopeo", "umoci", "docker-registry", "openssl", "htpasswd"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: run scripts/setup.sh --dev", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="bench-ext-", dir=os.environ.get("BENCH_TMP", "/var/tmp")))
    registry = Registry(work / "registry")
    (work / "registry").mkdir()
    registry.start()
    try:
        pusher = Pusher(f"https://{registry.host}", (registry.user, registry.password), registry.ca)
        image = big_image(args.mb)
        pusher.image("bench/big", "1", image)
        pushed = sum(len(b) for b in image.blobs.values())
        ref = registry.ref("bench/big", "1")
        opts = FetchOptions(authfile=str(registry.authfile), cert_dir=str(registry.cert_dir))
        kinds, talos = default_kinds(), default_talos()
        ours, theirs = [], []
        for i in range(args.repeat):
            store = Store(work / f"store{i}")

            def install() -> None:
                store.install(parse_ref(ref), opts, talos, kinds)  # noqa: B023

            def baseline() -> None:
                layout, rootfs = work / f"oci{i}", work / f"umoci{i}"  # noqa: B023
                subprocess.run(["skopeo", "copy", "--src-authfile", str(registry.authfile), "--src-cert-dir",
                                str(registry.cert_dir), ref, f"oci:{layout}:latest"], check=True, capture_output=True)  # fmt: skip
                subprocess.run(["umoci", "raw", "unpack", "--image", f"{layout}:latest", str(rootfs)], check=True, capture_output=True)

            # alternate the order so page-cache and registry warm-up favour neither
            if i % 2:
                ours.append(timed(install))
                theirs.append(timed(baseline))
            else:
                theirs.append(timed(baseline))
                ours.append(timed(install))
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        print(f"image: {pushed / 1e6:.1f} MB compressed, 2 layers, {args.mb} MB of files, {args.repeat} rounds")
        print(f"{'':32}{'median s':>10}{'min s':>9}")
        print(f"{'extvisor install (docker://)':32}{m_ours:10.2f}{min(ours):9.2f}")
        print(f"{'skopeo copy + umoci raw unpack':32}{m_theirs:10.2f}{min(theirs):9.2f}")
        print(f"ratio extvisor / baseline: {m_ours / m_theirs:.2f} (goal <= 1.2)")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
