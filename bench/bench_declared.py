"""Benchmark ``extvisor apply`` of a declared node file: one node, twenty nodes, a no-op.

    python bench/bench_declared.py [--nodes 20]

Starts a private registry (TLS, password), pushes three small extension images whose services
run (busybox), starts ``--nodes`` + 1 daemons (runc) on 127.0.0.x with mutual TLS, and times the
CLI as an operator runs it:

- one node: ``apply -f node.yaml`` to a fresh node (pull three images, install, start three
  services, the health gate);
- N nodes: the same file to N fresh nodes with ``--max-parallel N --yes`` (goal: at most 2x
  the one-node time);
- no-op: the same file again, to one node and to the N nodes (goal: at most 0.5 s a node);
- the raw tool in the same run: ``skopeo inspect --raw`` of the three tags (what a no-op
  must ask the registry at least) and ``skopeo copy`` of the three images (what a first
  apply must fetch at least), for scale.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from daemon_process import DaemonProcess  # noqa: E402
from declared.fleet import cli, client_cert, ext_image  # noqa: E402
from extensions.images import Pusher, busybox_path  # noqa: E402
from extensions.registry import Registry  # noqa: E402

from conftest import free_port  # noqa: E402
from extvisor.remote import certs  # noqa: E402
from extvisor.remote.talosconfig import Config, Context  # noqa: E402

NAMES = ("alpha", "beta", "gamma")


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = cli(env, *args, timeout=600)
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"extvisor {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="extvisor-bench-declared-"))
    reg = Registry(work / "registry")
    (work / "registry").mkdir()
    reg.start()
    daemons: list[DaemonProcess] = []
    try:
        pusher = Pusher(f"https://{reg.host}", (reg.user, reg.password), reg.ca)
        bb = busybox_path()
        assert bb is not None, "busybox-static is needed"
        for name in NAMES:
            pusher.image(f"ext/{name}", "1.0.0", ext_image(name, "1.0.0", bb))
        node_file = work / "node.yaml"
        node_file.write_text("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions:\n"
                             + "".join(f"  - image: {reg.host}/ext/{n}:1.0.0\n" for n in NAMES))  # fmt: skip
        env = {"HOME": str(work / "home"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        port = free_port()
        ips = [f"127.0.1.{i}" for i in range(1, args.nodes + 2)]
        assert cli(env, "gen", "ca", str(work / "pki" / "ca")).returncode == 0
        ca = certs.load_pair(work / "pki" / "ca")
        for ip in ips:
            assert cli(env, "gen", "server", str(work / "pki" / ip), "--ca", str(work / "pki" / "ca"), "--san", ip).returncode == 0
            d = DaemonProcess(work / ip, extra=["--listen", f"{ip}:{port}", "--tls-cert", str(work / "pki" / ip / "server.crt"),
                                                "--tls-key", str(work / "pki" / ip / "server.key"),
                                                "--client-ca", str(work / "pki" / "ca" / "ca.crt"),
                                                "--authfile", str(reg.authfile), "--cert-dir", str(reg.cert_dir)])  # fmt: skip
            d.start(timeout=60)
            daemons.append(d)
        pair = client_cert(ca, "bench", ["os:admin"])
        config = work / "config"
        Config(context="b", contexts={"b": Context.from_pems(ca.crt, pair.crt, pair.key, [f"{ips[0]}:{port}"], ips)}).save(config)
        base = ["apply", "-f", str(node_file), "--config", str(config)]
        one, fleet = ips[0], ips[1:]

        policy = work / "policy.json"
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        (work / "raw").mkdir()

        def raw_inspect() -> float:
            start = time.perf_counter()
            for n in NAMES:
                subprocess.run(["skopeo", "--policy", str(policy), "inspect", "--raw", "--authfile", str(reg.authfile), "--cert-dir",
                                str(reg.cert_dir), f"docker://{reg.host}/ext/{n}:1.0.0"], capture_output=True, check=True)  # fmt: skip
            return time.perf_counter() - start

        def raw_copy() -> float:
            start = time.perf_counter()
            for n in NAMES:
                subprocess.run(["skopeo", "--policy", str(policy), "copy", "--src-authfile", str(reg.authfile), "--src-cert-dir", str(reg.cert_dir),
                                f"docker://{reg.host}/ext/{n}:1.0.0", f"dir:{work / 'raw' / n}"], capture_output=True, check=True)  # fmt: skip
            return time.perf_counter() - start

        def cpu(ds: list[DaemonProcess], which: slice = slice(11, 15)) -> float:
            """CPU seconds of the daemons and the children they waited for (skopeo, runc)."""
            total = 0
            for d in ds:
                fields = Path(f"/proc/{d.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()  # type: ignore[union-attr]
                total += sum(int(x) for x in fields[which])
            return total / os.sysconf("SC_CLK_TCK")

        own0 = cpu(daemons[:1], slice(11, 13))

        c0 = cpu(daemons[:1])
        t_one = timed([*base, "-n", one], env)
        c_one = cpu(daemons[:1]) - c0
        c_own = cpu(daemons[:1], slice(11, 13)) - own0
        c0 = cpu(daemons[1:])
        t_fleet = timed([*base, "-n", ",".join(fleet), "--max-parallel", str(len(fleet)), "--yes"], env)
        c_fleet = (cpu(daemons[1:]) - c0) / len(fleet)
        t_noop_one = min(timed([*base, "-n", one], env) for _ in range(3))
        t_noop_fleet = timed([*base, "-n", ",".join(fleet), "--max-parallel", str(len(fleet)), "--yes"], env)
        t_inspect = min(raw_inspect() for _ in range(3))
        t_copy = raw_copy()
        print(f"first apply, 1 node:               {t_one:6.2f} s")
        print(f"first apply, {len(fleet)} nodes (parallel {len(fleet)}): {t_fleet:6.2f} s   ratio {t_fleet / t_one:.2f} (goal <= 2)")
        print(f"CPU a node (daemon, skopeo, runc): {c_one:6.2f} s alone (the daemon itself {c_own:.2f} s), {c_fleet:.2f} s in the fleet; "
              f"{os.cpu_count()} cores: the fleet needs at least {c_fleet * len(fleet) / (os.cpu_count() or 1):.2f} s")
        print(f"no-op apply, 1 node:               {t_noop_one:6.2f} s   (goal <= 0.5)")
        print(f"no-op apply, {len(fleet)} nodes:             {t_noop_fleet:6.2f} s   {t_noop_fleet / len(fleet):.3f} s a node (goal <= 0.5)")
        print(f"raw: skopeo inspect --raw x3:      {t_inspect:6.2f} s   no-op / raw {t_noop_one / t_inspect:.2f}")
        print(f"raw: skopeo copy x3:               {t_copy:6.2f} s   first apply / raw {t_one / t_copy:.2f}")
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
