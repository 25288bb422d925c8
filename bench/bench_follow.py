"""What following a published declared state costs a node, and how fast a fleet converges.

    python bench/bench_follow.py [--checks 30] [--daemons 20] [--interval 5]

Starts a private registry (tests/extensions/registry.py: TLS with its own CA, basic auth) and
publishes a declared-state file with ``extvisor publish --key``, then measures in one run:

1. the CPU one check of an unchanged tag costs the node (``Follower.check`` with the real
   registry source: one ``skopeo inspect --raw``, the record written), the daemon's own CPU
   and skopeo's together (goal: at most 50 ms), against the raw ``skopeo inspect --raw`` of
   the same tag timed alone in the same run (the ratio);
2. ``--daemons`` daemons (runc) on loopback following one tag every ``--interval`` seconds: a
   new generation is published and the time until every daemon runs it is taken (goal: within
   two intervals), with the slowest daemon's time as a share of the interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from daemon_process import DaemonProcess  # noqa: E402
from extensions.registry import Registry  # noqa: E402

from extvisor.extensions import FetchOptions  # noqa: E402
from extvisor.extensions.sign import write_key_pair  # noqa: E402
from extvisor.server.follow import Follower, RegistrySource  # noqa: E402
from extvisor.shared import routes  # noqa: E402
from extvisor.testing import make_busybox_rootfs  # noqa: E402

PLAIN = "name: plain\nrestart: always\ncontainer:\n  entrypoint: /bin/sh\n  args: ['-c', 'exec sleep 100000']\n"


def document(path: Path, greeting: str) -> Path:
    path.write_text("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions: []\n---\napiVersion: v1alpha1\n"
                    f"kind: ExtensionServiceConfig\nname: plain\nenvironment:\n  - GREETING={greeting}\n")  # fmt: skip
    return path


def cpu() -> float:
    """This process's CPU (every thread) and its reaped children's, seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class NoEngine:
    async def apply(self, *a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("an unchanged tag must not reach the engine")


def publish(reg: Registry, work: Path, path: Path, ref: str) -> str:
    env = {**os.environ, "EXTVISOR_SIGNING_PASSWORD": "bench"}
    out = subprocess.run([sys.executable, "-m", "extvisor", "publish", str(path), ref, "--key", str(work / "key/cosign.key"),
                          "--authfile", str(reg.authfile), "--cert-dir", str(reg.cert_dir), "-o", "json"],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"publish failed: {out.stderr}")
    return json.loads(out.stdout)["digest"]


def check_cost(reg: Registry, work: Path, ref: str, digest: str, checks: int) -> None:
    options = FetchOptions(authfile=str(reg.authfile), cert_dir=str(reg.cert_dir))
    source = RegistrySource(ref, options, lambda: None, work / "follow")
    follower = Follower(ref, 60, source, NoEngine(), work / "state")  # type: ignore[arg-type]
    follower.record["digest"] = digest  # it runs what is published: every check finds it unchanged
    raw_cmd = ["skopeo", "inspect", "--raw", "--authfile", str(reg.authfile), "--cert-dir", str(reg.cert_dir), ref]
    ours, raw = [], []
    for i in range(checks + 1):
        for which in (("ours", "raw") if i % 2 else ("raw", "ours")):
            before = cpu()
            if which == "ours":
                assert asyncio.run(follower.check()) == "unchanged"
                (ours if i else []).append(cpu() - before)
            else:
                subprocess.run(raw_cmd, capture_output=True, check=True)
                (raw if i else []).append(cpu() - before)
    m_ours, m_raw = statistics.median(ours), statistics.median(raw)
    print(f"one check of an unchanged tag, CPU (daemon + skopeo), {checks} rounds, medians")
    print(f"  Follower.check                     {m_ours * 1000:7.1f} ms  (goal <= 50)")
    print(f"  skopeo inspect --raw alone         {m_raw * 1000:7.1f} ms")
    print(f"  ratio {m_ours / m_raw:.2f}; worst check {max(ours) * 1000:.1f} ms")


def fleet(reg: Registry, work: Path, ref: str, daemons: int, interval: float) -> None:
    nodes = []
    try:
        pub = (work / "key/cosign.pub").read_text()
        trust = ("apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n"
                 f"  - image: {reg.host}/fleet/*\n    publicKey:\n      certificate: |\n"
                 + "".join(f"        {line}\n" for line in pub.splitlines()))  # fmt: skip
        for i in range(daemons):
            d = DaemonProcess(work / f"node{i}", extra=["--authfile", str(reg.authfile), "--cert-dir", str(reg.cert_dir),
                                                        "--follow", ref, "--follow-interval", f"{interval}s"])  # fmt: skip
            (d.config_dir / "plain.yaml").write_text(PLAIN)
            make_busybox_rootfs(d.rootfs_dir / "plain")
            (d.service_config_dir / "trust.yaml").write_text(trust)
            nodes.append(d)
            d.start(timeout=60)

        def running() -> list[str | None]:
            return [d.client.call(routes.FOLLOW)["digest"] for d in nodes]

        def wait_all(digest: str, limit: float) -> float:
            start = time.monotonic()
            while time.monotonic() - start < limit:
                if all(x == digest for x in running()):
                    return time.monotonic() - start
                time.sleep(0.1)
            raise SystemExit(f"not every daemon runs {digest} after {limit:.0f}s: {running()}")

        first = publish(reg, work, document(work / "node.yaml", "one"), ref)
        wait_all(first, 20 * interval)
        time.sleep(interval * 0.5)  # the checks' phases are spread again by their jitter
        began = time.monotonic()
        second = publish(reg, work, document(work / "node.yaml", "two"), ref)
        published = time.monotonic() - began
        took = wait_all(second, 10 * interval)
        print(f"{daemons} daemons following {ref} every {interval:g}s (±20 %)")
        print(f"  extvisor publish (validate, sign, push)  {published:5.1f}s")
        print(f"  every daemon runs the new generation {took:.1f}s after the tag moved "
              f"({took / interval:.2f} intervals; goal <= 2.00); {(took + published) / interval:.2f} from publish's start")  # fmt: skip
    finally:
        for d in nodes:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=30)
    parser.add_argument("--daemons", type=int, default=20)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    for tool in ("skopeo", "docker-registry", "runc", "busybox"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: run scripts/setup.sh --dev", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="extvisor-bench-follow-"))
    reg = Registry(work / "registry")
    (work / "registry").mkdir()
    reg.start()
    try:
        write_key_pair(work / "key", b"bench")
        ref = f"docker://{reg.host}/fleet/node:stable"
        digest = publish(reg, work, document(work / "node.yaml", "zero"), ref)
        check_cost(reg, work, ref, digest, args.checks)
        if args.daemons:
            fleet(reg, work, ref, args.daemons, args.interval)
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
