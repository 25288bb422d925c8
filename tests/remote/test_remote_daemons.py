"""Several real daemons on loopback addresses, each with its own server certificate from a
CA made here, driven by the CLI across nodes with reader, operator and admin configurations,
and every refusal the issue lists (issue 13)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import free_port
from daemon_process import DaemonProcess

from extvisor.client.http import Client, ClientError
from extvisor.client.wire import Address
from extvisor.remote import certs, tls
from extvisor.remote.talosconfig import Config, Context

pytestmark = pytest.mark.runc

IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
TICK = """\
name: tick
restart: always
container:
  entrypoint: /bin/sh
  args: ["-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
"""
IDLE = """\
name: idle
restart: always
container:
  entrypoint: /bin/sh
  args: ["-c", "exec sleep 100000"]
"""


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "extvisor", *args], capture_output=True, text=True, env=env, timeout=timeout)


class Cluster:
    def __init__(self, base: Path):
        from extvisor.testing import make_busybox_rootfs

        self.base = base
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in ("EXTVISOR_SOCKET", "EXTVISOR_CONFIG")}
        self.env["HOME"] = str(base / "home")  # no ~/.extvisor/config of the machine's
        self.pki = base / "pki"
        self._ok(cli(self.env, "gen", "ca", str(self.pki / "ca")))
        self.ca = certs.load_pair(self.pki / "ca")
        self.daemons: dict[str, DaemonProcess] = {}
        for ip in IPS:
            self._ok(cli(self.env, "gen", "server", str(self.pki / ip), "--ca", str(self.pki / "ca"), "--san", ip))
            d = DaemonProcess(base / ip, extra=self.tls_flags(ip, self.pki / ip))
            for name, body in (("tick", TICK), ("idle", IDLE)):
                (d.config_dir / f"{name}.yaml").write_text(body)
                make_busybox_rootfs(d.rootfs_dir / name)
            if ip == IPS[0]:
                (d.config_dir / "only.yaml").write_text(IDLE.replace("name: idle", "name: only"))
                make_busybox_rootfs(d.rootfs_dir / "only")
            self.daemons[ip] = d
        try:
            for d in self.daemons.values():
                d.start()
            for d in self.daemons.values():
                for sid in ("ext-tick", "ext-idle"):
                    d.wait_state(sid, "Running", timeout=30)
        except BaseException:
            self.stop()
            raise
        self.configs = {role: self.config(role) for role in ("reader", "operator", "admin")}

    def tls_flags(self, ip: str, pki: Path, port: int | None = None) -> list[str]:
        return ["--listen", f"{ip}:{port or self.port}", "--tls-cert", str(pki / "server.crt"),
                "--tls-key", str(pki / "server.key"), "--client-ca", str(self.pki / "ca" / "ca.crt")]  # fmt: skip

    @staticmethod
    def _ok(r: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    def config(self, role: str) -> Path:
        path = self.base / "configs" / role
        self._ok(cli(self.env, "config", "new", str(path), "--ca", str(self.pki / "ca"), "--roles", f"os:{role}",
                     "-e", f"{IPS[0]}:{self.port}", "-n", ",".join(IPS)))  # fmt: skip
        return path

    def run(self, role: str | Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        config = role if isinstance(role, Path) else self.configs[role]
        return cli(self.env, *args, "--config", str(config), timeout=timeout)

    def tls_client(self, ip: str, roles: list[str]) -> Client:
        pair = certs.new_client(self.ca, roles)
        ctx = tls.client_context(self.ca.crt, pair.crt, pair.key)
        return Client(timeout=10, address=Address(host=ip, port=self.port, ssl=ctx))

    def stop(self) -> None:
        for d in self.daemons.values():
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster(tmp_path_factory.mktemp("fleet"))
    yield c
    c.stop()


def write_context(path: Path, ca: bytes, crt: bytes | None, key: bytes | None, nodes: list[str], port: int) -> Path:
    ctx = Context.from_pems(ca, crt or b"", key or b"", [f"{nodes[0]}:{port}"], nodes)
    Config(context="t", contexts={"t": ctx}).save(path)
    return path


# -- reading across nodes -------------------------------------------------------------------


def test_services_across_nodes_node_first(cluster: Cluster) -> None:
    r = cluster.run("reader", "services")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "SERVICE", "STATE"]
    seen = {(line.split()[0], line.split()[1]) for line in lines[1:]}
    for ip in IPS:
        assert (ip, "ext-tick") in seen and (ip, "ext-idle") in seen
    assert (IPS[0], "ext-only") in seen and (IPS[1], "ext-only") not in seen
    as_json = json.loads(cluster.run("reader", "services", "-o", "json", "-n", f"{IPS[1]},{IPS[2]}").stdout)
    assert {(i["node"], i["id"]) for i in as_json} == {(ip, s) for ip in IPS[1:] for s in ("ext-tick", "ext-idle")}
    assert all(list(i)[0] == "node" for i in as_json)
    as_yaml = yaml.safe_load(cluster.run("reader", "services", "-o", "yaml", "-n", IPS[2]).stdout)
    assert {i["node"] for i in as_yaml} == {IPS[2]}


def test_node_with_explicit_port_and_endpoints_as_nodes(cluster: Cluster) -> None:
    r = cluster.run("reader", "services", "-e", f"{IPS[1]}:{cluster.port}", "-n", "")
    assert r.returncode == 0, r.stderr  # -n "" gives no nodes: the context's nodes are used
    r = cluster.run("reader", "service", "ext-tick", "-n", f"{IPS[2]}:{cluster.port}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["NODE", f"{IPS[2]}:{cluster.port}"]


def test_stats_processes_and_extensions_across_nodes(cluster: Cluster) -> None:
    r = cluster.run("reader", "stats")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "SERVICE", "STATE"]
    assert {(line.split()[0], line.split()[1]) for line in lines[1:]} >= {(ip, "ext-tick") for ip in IPS}
    items = json.loads(cluster.run("reader", "stats", "-o", "json", "-n", IPS[1]).stdout)
    assert {(i["node"], i["id"]) for i in items} == {(IPS[1], "ext-tick"), (IPS[1], "ext-idle")}
    assert all(i["processes"] >= 1 and i["memory_bytes"] > 0 for i in items)
    procs = json.loads(cluster.run("reader", "processes", "ext-idle", "-o", "json").stdout)
    assert sorted(p["node"] for p in procs) == IPS
    assert all("sleep" in p["command"] for p in procs)
    r = cluster.run("reader", "extensions", "-n", f"{IPS[0]},127.0.0.99:1")
    assert r.returncode == 1  # one node failed: named on stderr, the other's answer stands
    assert "127.0.0.99:1" in r.stderr and IPS[0] not in r.stderr
    assert json.loads(cluster.run("reader", "extensions", "-o", "json").stdout) == []


def test_service_logs_and_events_per_node(cluster: Cluster) -> None:
    r = cluster.run("reader", "service", "ext-tick")
    assert r.returncode == 0, r.stderr
    assert [line.split()[1] for line in r.stdout.splitlines() if line.startswith("NODE")] == IPS
    r = cluster.run("reader", "logs", "ext-tick", "--tail", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for ip in IPS:
        # the last 3 lines, plus one the service may write while the file is being read
        numbers = [int(line.split()[-1]) for line in lines if line.startswith(f"{ip}: tick ")]
        assert len(numbers) in (3, 4) and numbers == list(range(numbers[0], numbers[0] + len(numbers))), lines
    assert len(lines) == sum(line.startswith(tuple(f"{ip}: tick " for ip in IPS)) for line in lines)
    r = cluster.run("reader", "events", "--no-follow", "--tail", "2", "-o", "json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted({e["node"] for e in events}) == IPS and len(events) == 6


# -- roles ----------------------------------------------------------------------------------


def test_reader_stopping_is_refused_and_nothing_happens(cluster: Cluster) -> None:
    before = {ip: d.service("ext-idle") for ip, d in cluster.daemons.items()}
    r = cluster.run("reader", "service", "ext-idle", "stop")
    assert r.returncode == 1
    assert sorted(r.stderr.splitlines()) == [f"error: {ip}: not authorized" for ip in IPS]
    assert r.stdout == ""
    for ip, d in cluster.daemons.items():
        after = d.service("ext-idle")
        assert after["state"] == "Running" and after["pid"] == before[ip]["pid"]
        assert after["events"] == before[ip]["events"]


def test_operator_stops_on_one_node_only_and_starts_again(cluster: Cluster) -> None:
    a, b = IPS[0], IPS[1]
    pid_b = cluster.daemons[b].service("ext-idle")["pid"]
    r = cluster.run("operator", "service", "ext-idle", "stop", "-n", a)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split(None, 1) == [a, 'Service "ext-idle" stopped']
    assert cluster.daemons[a].service("ext-idle")["state"] == "Finished"
    assert cluster.daemons[b].service("ext-idle")["pid"] == pid_b  # the same name elsewhere is untouched
    r = cluster.run("operator", "service", "ext-idle", "start", "-n", a, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["node"] == a
    cluster.daemons[a].wait_state("ext-idle", "Running")


def test_operator_cannot_install_or_remove_extensions_admin_can_reach_them(cluster: Cluster) -> None:
    ip = IPS[0]
    operator, admin = cluster.tls_client(ip, ["os:operator"]), cluster.tls_client(ip, ["os:admin"])
    with pytest.raises(ClientError, match="^not authorized$"):
        operator.request("POST", "/v1/extensions", body={"refs": [f"oci-archive:{cluster.base}/nut.tar"]})
    with pytest.raises(ClientError, match="^not authorized$"):
        operator.request("DELETE", "/v1/extensions/nut")
    assert operator.request("GET", "/v1/extensions") == []  # reading is allowed, and nothing was installed
    with pytest.raises(ClientError, match="no image reference given"):  # admin passes the role check
        admin.request("POST", "/v1/extensions", body={"refs": []})
    with pytest.raises(ClientError, match='extension "nut" is not installed'):
        admin.request("DELETE", "/v1/extensions/nut")


def test_certificate_without_a_known_role_gets_nothing(cluster: Cluster) -> None:
    nobody = cluster.tls_client(IPS[0], ["os:nobody"])
    with pytest.raises(ClientError, match="^not authorized$"):
        nobody.services()


# -- refusals at the handshake ----------------------------------------------------------------


def test_client_from_another_ca_is_refused(cluster: Cluster) -> None:
    other = certs.new_ca()
    pair = certs.new_client(other, ["os:admin"])
    cfg = write_context(cluster.base / "other-ca", cluster.ca.crt, pair.crt, pair.key, IPS[:2], cluster.port)
    r = cluster.run(cfg, "services")
    assert r.returncode == 1 and r.stdout == ""
    for ip in IPS[:2]:
        assert f"error: {ip}: the node closed the connection during TLS set-up" in r.stderr


def test_expired_client_is_refused_and_said_so(cluster: Cluster) -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    pair = certs.new_client(cluster.ca, ["os:admin"], hours=1, now=past)
    cfg = write_context(cluster.base / "expired", cluster.ca.crt, pair.crt, pair.key, IPS[:1], cluster.port)
    r = cluster.run(cfg, "service", "ext-idle", "stop")
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {IPS[0]}: the node closed the connection during TLS set-up")
    assert "our client certificate expired on" in r.stderr
    assert cluster.daemons[IPS[0]].service("ext-idle")["state"] == "Running"


def test_client_without_certificate_is_refused(cluster: Cluster) -> None:
    cfg = write_context(cluster.base / "no-cert", cluster.ca.crt, None, None, IPS[:1], cluster.port)
    r = cluster.run(cfg, "services")
    assert r.returncode == 1
    assert "during TLS set-up" in r.stderr and "this configuration has no client certificate" in r.stderr


def test_tls_1_1_client_is_refused(cluster: Cluster) -> None:
    pair = certs.new_client(cluster.ca, ["os:admin"])

    def get(version: ssl.TLSVersion) -> bytes:
        ctx = tls.client_context(cluster.ca.crt, pair.crt, pair.key)
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.1
        with socket.create_connection((IPS[0], cluster.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=IPS[0]) as s:
                s.sendall(b"GET /v1/daemon HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(12)

    assert get(ssl.TLSVersion.TLSv1_2) == b"HTTP/1.1 200"  # the same client with TLS 1.2 is served
    with pytest.warns(DeprecationWarning), pytest.raises((ssl.SSLError, ConnectionResetError)):
        get(ssl.TLSVersion.TLSv1_1)


def test_server_certificate_for_another_name_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    ip = "127.0.0.5"
    other = cluster.pki / "wrong-name"
    certs.write_pair(other, "server", certs.new_server(cluster.ca, ["127.0.0.99", "elsewhere.test"]))
    d = DaemonProcess(tmp_path / "d", extra=cluster.tls_flags(ip, other)).start()
    try:
        r = cluster.run("admin", "services", "-n", f"{ip},{IPS[0]}")
        assert r.returncode == 1
        assert f"error: {ip}: TLS: the node's certificate is not trusted: IP address mismatch" in r.stderr
        assert f"{IPS[0]}   ext-idle" in r.stdout  # the other node still answers
    finally:
        d.stop()


# -- nodes that fail --------------------------------------------------------------------------


def test_unreachable_node_and_unknown_service_are_named(cluster: Cluster) -> None:
    r = cluster.run("reader", "services", "-n", f"{IPS[0]},127.0.0.9")
    assert r.returncode == 1
    assert r.stderr.startswith("error: 127.0.0.9: connection refused")
    assert f"{IPS[0]}   ext-tick" in r.stdout
    r = cluster.run("reader", "service", "ext-only", "-n", f"{IPS[0]},{IPS[1]}")
    assert r.returncode == 1
    assert r.stderr == f'error: {IPS[1]}: service "ext-only" is not registered (known: ext-idle, ext-tick)\n'
    assert r.stdout.splitlines()[0].split() == ["NODE", IPS[0]]


def test_logs_follow_goes_on_when_a_node_goes_away(cluster: Cluster, tmp_path: Path) -> None:
    ip = "127.0.0.6"
    pki = cluster.pki / ip
    certs.write_pair(pki, "server", certs.new_server(cluster.ca, [ip]))
    from extvisor.testing import make_busybox_rootfs

    d = DaemonProcess(tmp_path / "d", extra=cluster.tls_flags(ip, pki))
    (d.config_dir / "tick.yaml").write_text(TICK)
    make_busybox_rootfs(d.rootfs_dir / "tick")
    d.start()
    d.wait_state("ext-tick", "Running")
    out = (tmp_path / "out").open("w+")
    err = (tmp_path / "err").open("w+")
    follow = subprocess.Popen([sys.executable, "-m", "extvisor", "logs", "ext-tick", "-f", "--tail", "1",
                               "-n", f"{IPS[0]},{ip}", "--config", str(cluster.configs["reader"])],
                              stdout=out, stderr=err, env=cluster.env)  # fmt: skip
    try:
        def lines() -> list[str]:
            return Path(out.name).read_text().splitlines()

        cluster.daemons[IPS[0]].wait(lambda: any(x.startswith(f"{ip}: tick") for x in lines()), what="the second node's lines")
        d.proc.send_signal(signal.SIGKILL)  # the node goes away mid-stream
        d.proc.wait(10)
        # (after the follower's patience for a restarting daemon: client/resume.py)
        cluster.daemons[IPS[0]].wait(lambda: f"error: {ip}:" in Path(err.name).read_text(), timeout=40,
                                     what="the error line")  # fmt: skip
        count = sum(x.startswith(f"{IPS[0]}: tick") for x in lines())
        cluster.daemons[IPS[0]].wait(lambda: sum(x.startswith(f"{IPS[0]}: tick") for x in lines()) >= count + 3,
                                     what="more lines from the node still there")  # fmt: skip
        assert follow.poll() is None  # still following
        assert Path(err.name).read_text() == f"error: {ip}: the extvisor daemon closed the stream (did it stop?)\n"
    finally:
        follow.send_signal(signal.SIGINT)
        rc = follow.wait(10)
        if d.proc.poll() is not None:  # clean the container the killed daemon left behind
            d.start()
        d.stop()
    assert rc == 1  # a node failed


# -- configurations -------------------------------------------------------------------------


def test_talosconfig_with_talos_key_labels_works(cluster: Cluster) -> None:
    pair = certs.new_client(cluster.ca, ["os:reader"])
    doc = {"context": "admin@lab", "contexts": {"admin@lab": {
        "endpoints": [f"{IPS[1]}:{cluster.port}"],
        "ca": base64.b64encode(cluster.ca.crt).decode(), "crt": base64.b64encode(pair.crt).decode(),
        "key": base64.b64encode(pair.key.replace(b"PRIVATE KEY", b"ED25519 PRIVATE KEY")).decode()}}}  # fmt: skip
    path = cluster.base / "talosconfig"
    path.write_text(yaml.safe_dump(doc))
    r = cli({**cluster.env, "EXTVISOR_CONFIG": str(path)}, "services")  # from the environment, endpoints as nodes
    assert r.returncode == 0, r.stderr
    assert {line.split()[0] for line in r.stdout.splitlines()[1:]} == {f"{IPS[1]}:{cluster.port}"}  # as typed


def test_without_configuration_the_local_socket_is_used(cluster: Cluster) -> None:
    d = cluster.daemons[IPS[0]]
    r = cli(cluster.env, "services", "--socket", str(d.socket))
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[0] == "SERVICE"
    r = cli(cluster.env, "services", "-n", IPS[0])
    assert r.returncode == 1 and "no client configuration at" in r.stderr
    r = cli(cluster.env, "services", "--config", str(cluster.configs["reader"]), "--context", "nope")
    assert r.returncode == 1 and "context 'nope' is not defined" in r.stderr


def test_listen_without_tls_files_refuses_to_start(tmp_path: Path, cluster: Cluster) -> None:
    r = cli(cluster.env, "daemon", "--state-dir", str(tmp_path / "s"), "--socket", str(tmp_path / "s.sock"),
            "--listen", "127.0.0.7", "--tls-cert", str(cluster.pki / IPS[0] / "server.crt"))  # fmt: skip
    assert r.returncode == 2
    assert "--listen needs --tls-cert, --tls-key and --client-ca" in r.stderr
    assert not (tmp_path / "s.sock").exists()
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    d = DaemonProcess(tmp_path / "d", extra=["--listen", "127.0.0.7", "--tls-cert", str(bad), "--tls-key",
                                             str(bad), "--client-ca", str(cluster.pki / "ca" / "ca.crt")])  # fmt: skip
    with pytest.raises(RuntimeError, match="daemon exited with 1"):
        d.start(timeout=20)
    assert "--tls-cert" in d.log() and "cannot be used" in d.log()
