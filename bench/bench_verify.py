"""What verifying an extension image's cosign signature costs.

    python bench/bench_verify.py [--mb 5] [--repeat 7] [--restarts 5]

Starts a private registry (tests/extensions/registry.py: TLS with its own CA, basic auth),
pushes a ``--mb`` MB extension and signs it with extvisor's signer, then measures in one run:

1. install (``Store.install`` from ``docker://``, a fresh store each round) with no
   ImageVerificationConfig against the same install under a ``publicKey`` rule: the added
   seconds (goal: at most 0.1 s) and the ratio; rounds alternate which goes first. The raw
   skopeo steps verification adds (``inspect --raw`` of the image and of its ``.sig``
   manifest) are timed alone in the same run, for reference.
2. restarting the extension's service in a daemon (runc) started with and without
   ``--require-signatures``: the signature is checked at install only, so the ratio should be
   1 (goal: at most 1.1, noise).
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
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from daemon_process import DaemonProcess  # noqa: E402
from extensions.images import Image, Pusher, extension_entries, file  # noqa: E402
from extensions.registry import Registry  # noqa: E402

from extvisor.documents.imageverify import read_machine_config  # noqa: E402
from extvisor.extensions import FetchOptions, parse_ref  # noqa: E402
from extvisor.extensions import sign as signer  # noqa: E402
from extvisor.extensions.check import default_kinds  # noqa: E402
from extvisor.extensions.image import default_talos  # noqa: E402
from extvisor.extensions.store import Store  # noqa: E402
from extvisor.extensions.verify import Policy, signature_tag  # noqa: E402

# exits on SIGTERM at once: a restart is then the start it measures, not the stop timeout
SERVICE = ("name: bench\ncontainer:\n  entrypoint: /bin/sh\n"
           "  args: ['-c', 'trap \"exit 0\" TERM; sleep 100000 & wait']\nrestart: always\n")


def image(mb: int) -> Image:
    rng = random.Random(7)
    busybox = Path("/bin/busybox") if Path("/bin/busybox").exists() else None
    entries = extension_entries("bench", {"bench": SERVICE}, busybox=busybox)
    entries.append(file("rootfs/usr/local/lib/containers/bench/data.bin", rng.randbytes(mb << 20)))
    return Image([entries])


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def policy_text(pattern: str, pub: str) -> str:
    return ("apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n"
            f"  - image: {pattern}\n    publicKey:\n      certificate: |\n" + textwrap.indent(pub, "        "))  # fmt: skip


def restarts(d: DaemonProcess, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start, wall = time.perf_counter(), time.time()
        d.client.action("ext-bench", "restart")
        d.wait(lambda: any(e["state"] == "Running" and e["ts"] > wall for e in d.service("ext-bench")["events"]), 30)  # noqa: B023
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args()
    for tool in ("skopeo", "docker-registry", "openssl", "htpasswd", "runc"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: run scripts/setup.sh --dev", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="bench-verify-", dir=os.environ.get("BENCH_TMP", "/var/tmp")))
    (work / "registry").mkdir()
    registry = Registry(work / "registry")
    registry.start()
    try:
        pusher = Pusher(f"https://{registry.host}", (registry.user, registry.password), registry.ca)
        digest = pusher.image("bench/signed", "1", image(args.mb))
        ref = registry.ref("bench/signed", "1")
        opts = FetchOptions(authfile=str(registry.authfile), cert_dir=str(registry.cert_dir))
        key_file, pub_file = signer.write_key_pair(work / "keys", b"")
        signer.sign(parse_ref(ref), signer.load_private_key(key_file.read_bytes(), b""), opts)
        text = policy_text(f"{registry.host}/bench/*", pub_file.read_text())
        policy = Policy(read_machine_config(text, "bench.yaml").verifications[0])
        kinds, talos = default_kinds(), default_talos()
        plain, verified, raw = [], [], []
        access = ["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)]
        for i in range(args.repeat):
            a, b = Store(work / f"plain{i}"), Store(work / f"verified{i}")

            def install_plain() -> None:
                a.install(parse_ref(ref), opts, talos, kinds)  # noqa: B023

            def install_verified() -> None:
                record, _ = b.install(parse_ref(ref), opts, talos, kinds, policy=policy)  # noqa: B023
                assert record.verified.startswith("key ") and record.digest == digest

            def skopeo_steps() -> None:
                subprocess.run(["skopeo", "inspect", "--raw", *access, ref], check=True, capture_output=True)
                sig = f"docker://{registry.host}/bench/signed:{signature_tag(digest)}"
                subprocess.run(["skopeo", "inspect", "--raw", *access, sig], check=True, capture_output=True)

            order = [(plain, install_plain), (verified, install_verified)]
            for bucket, fn in order if i % 2 else reversed(order):
                bucket.append(timed(fn))
            raw.append(timed(skopeo_steps))
            shutil.rmtree(work / f"plain{i}", ignore_errors=True)
            shutil.rmtree(work / f"verified{i}", ignore_errors=True)
        m_plain, m_verified = statistics.median(plain), statistics.median(verified)
        print(f"image: {args.mb} MB extension, signed with extvisor's signer; {args.repeat} rounds, medians")
        print(f"  install, no rule                 {m_plain:7.3f} s")
        print(f"  install, publicKey rule          {m_verified:7.3f} s")
        print(f"  skopeo inspect --raw of the image and of its .sig  {statistics.median(raw):7.3f} s  (the raw steps verification adds)")
        print(f"  added by verification: {m_verified - m_plain:+.3f} s (goal <= 0.100); ratio {m_verified / m_plain:.2f}")

        # 2. service restarts with and without --require-signatures: both daemons up, interleaved
        daemons = {}
        try:
            for flag in (False, True):
                d = DaemonProcess(work / ("require" if flag else "open"), extra=[*access, *(["--require-signatures"] if flag else [])])
                (d.service_config_dir / "verify.yaml").write_text(text)
                daemons[flag] = d.start()
                d.cli("extensions", "install", ref)
                d.wait_state("ext-bench", "Running", timeout=60)
            times: dict[bool, list[float]] = {False: [], True: []}
            for i in range(args.restarts):
                for flag in ((False, True) if i % 2 else (True, False)):
                    times[flag] += restarts(daemons[flag], 1)
            results = {flag: statistics.median(t) for flag, t in times.items()}
        finally:
            for d in daemons.values():
                d.stop()
        print(f"  service restart, no flag               {results[False]:7.3f} s")
        print(f"  service restart, --require-signatures  {results[True]:7.3f} s")
        print(f"  ratio {results[True] / results[False]:.2f} (goal <= 1.1: nothing is verified at a start)")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
