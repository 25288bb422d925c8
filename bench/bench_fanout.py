"""Fan-out across nodes, run by hand (as root): python bench/bench_fanout.py [--nodes 20] [--runs 7]

Starts N daemons on 127.0.0.2 ... 127.0.0.(N+1), each with its own server certificate from a
CA made here and one host service, then times `extvisor services` against one node and
against all N, through the CLI as a user runs it (a new interpreter each time). The issue's
bar: N = 20 answers within 1.5x the time of one. Prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import free_port  # noqa: E402
from daemon_process import DaemonProcess  # noqa: E402

from extvisor.remote import certs  # noqa: E402


def timed(env: dict[str, str], args: list[str]) -> float:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "extvisor", *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"extvisor {' '.join(args)} failed:\n{r.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="extvisor-fanout-"))
    port = free_port()
    ca = certs.new_ca()
    certs.write_pair(base / "ca", "ca", ca)
    ips = [f"127.0.0.{i}" for i in range(2, 2 + args.nodes)]
    daemons = []
    try:
        for ip in ips:
            certs.write_pair(base / ip, "server", certs.new_server(ca, [ip]))
            d = DaemonProcess(base / f"d-{ip}", extra=[
                "--host-service", "cri", "--listen", f"{ip}:{port}", "--tls-cert", str(base / ip / "server.crt"),
                "--tls-key", str(base / ip / "server.key"), "--client-ca", str(base / "ca" / "ca.crt")])  # fmt: skip
            d.start(timeout=60)
            daemons.append(d)
        env = {k: v for k, v in os.environ.items() if k != "EXTVISOR_SOCKET"}
        env["HOME"] = str(base)
        config = base / "config"
        subprocess.run([sys.executable, "-m", "extvisor", "config", "new", str(config), "--ca", str(base / "ca"),
                        "--roles", "os:reader", "-e", f"{ips[0]}:{port}"], check=True, capture_output=True)  # fmt: skip
        one = ["services", "--config", str(config), "-n", ips[0]]
        many = ["services", "--config", str(config), "-n", ",".join(ips)]
        timed(env, one), timed(env, many)  # warm the page cache
        t_one = [timed(env, one) for _ in range(args.runs)]
        t_many = [timed(env, many) for _ in range(args.runs)]
        m1, mn = statistics.median(t_one), statistics.median(t_many)
        print(f"services -n <1 node>:   median {m1 * 1000:.0f} ms  (runs: {', '.join(f'{t * 1000:.0f}' for t in t_one)})")
        print(f"services -n <{args.nodes} nodes>: median {mn * 1000:.0f} ms  (runs: {', '.join(f'{t * 1000:.0f}' for t in t_many)})")
        print(f"ratio {mn / m1:.2f} (the bar: at most 1.5)")
        # The same calls in this process: the fan-out alone, without an interpreter's start.
        from extvisor.client.nodes import fleet

        for label, nodes in (("1 node", ips[:1]), (f"{args.nodes} nodes", ips)):
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                fl = fleet(None, str(config), None, [",".join(nodes)], [])
                assert all(o.error is None for o in fl.each(lambda c: c.services()))
                times.append(time.perf_counter() - start)
            print(f"in-process fan-out, {label}: median {statistics.median(times) * 1000:.1f} ms")
        # The same N calls one after another: what running them at once saves. On one machine
        # the N daemons share its cores with the client, so the servers' own CPU time adds up
        # here where separate nodes would each spend theirs in parallel.
        fl = fleet(None, str(config), None, [",".join(ips)], [])
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            for t in fl.targets:
                t.client.services()
            times.append(time.perf_counter() - start)
        print(f"in-process, {args.nodes} nodes one after another: median {statistics.median(times) * 1000:.1f} ms "
              f"on {os.cpu_count()} CPU(s)")
    finally:
        for d in daemons:
            d.stop()


if __name__ == "__main__":
    main()
