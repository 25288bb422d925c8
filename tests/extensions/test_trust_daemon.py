"""Two daemons (runc), each with its own ImageVerificationConfig: one install across both nodes.

As an operator would check it: ``extensions install -n a,b`` verifies on each node under that
node's own document, a refusal leaves the store, the services and the config dir as they were,
the list shows VERIFIED, events and the log name the rule, a changed document is re-read,
a keyless document refuses every install, ``--require-signatures`` refuses unmatched images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import free_port
from daemon_process import DaemonProcess
from extensions import cosign_format as cf
from extensions.images import Image, extension_entries


pytestmark = pytest.mark.runc

IPS = ["127.0.0.2", "127.0.0.3"]
SERVICE = "name: {name}\ncontainer:\n  entrypoint: /bin/sh\n  args: ['-c', 'exec sleep 1000']\nrestart: always\n"


def image(name: str, busybox: Path, version: str = "1.0.0") -> Image:
    return Image([extension_entries(name, {name: SERVICE.format(name=name)}, version=version, busybox=busybox)])


def policy(rules: str) -> str:
    return "apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n" + textwrap.indent(rules, "  ")


def key_rule(pattern: str, key: cf.Key) -> str:
    return f"- image: {json.dumps(pattern)}\n  publicKey:\n    certificate: |\n" + textwrap.indent(key.pub_pem, "      ")


def snapshot(d: DaemonProcess) -> dict[str, object]:
    """The store's directories, the services and the config dir of a node."""
    ext = d.state_dir / "extensions"
    dirs = {n: sorted(os.listdir(ext / n)) for n in ("installed", "trees", "staging")}
    services = sorted((s["id"], s["state"]) for s in d.client.services())
    return {"store": dirs, "services": services, "configs": sorted(os.listdir(d.service_config_dir))}


class Pair:
    def __init__(self, base: Path, registry, extra: dict[str, list[str]] | None = None):  # type: ignore[no-untyped-def]
        self.env = {k: v for k, v in os.environ.items() if k not in ("EXTVISOR_SOCKET", "EXTVISOR_CONFIG")}
        self.env["HOME"] = str(base / "home")
        self.port = free_port()
        self.pki = base / "pki"
        self.ok("gen", "ca", str(self.pki / "ca"))
        self.daemons: dict[str, DaemonProcess] = {}
        access = ["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)]
        for ip in IPS:
            self.ok("gen", "server", str(self.pki / ip), "--ca", str(self.pki / "ca"), "--san", ip)
            tls = ["--listen", f"{ip}:{self.port}", "--tls-cert", str(self.pki / ip / "server.crt"),
                   "--tls-key", str(self.pki / ip / "server.key"), "--client-ca", str(self.pki / "ca" / "ca.crt")]  # fmt: skip
            self.daemons[ip] = DaemonProcess(base / ip, extra=[*tls, *access, *(extra or {}).get(ip, [])])
        self.config = base / "admin.conf"
        self.ok("config", "new", str(self.config), "--ca", str(self.pki / "ca"), "--roles", "os:admin",
                "-e", f"{IPS[0]}:{self.port}", "-n", ",".join(IPS))  # fmt: skip

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "extvisor", *args, "--config", str(self.config)],
                              capture_output=True, text=True, env=self.env, timeout=120)  # fmt: skip

    def ok(self, *args: str) -> None:
        r = subprocess.run([sys.executable, "-m", "extvisor", *args], capture_output=True, text=True, env=self.env, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

    def start(self) -> None:
        for d in self.daemons.values():
            d.start()

    def stop(self) -> None:
        for d in self.daemons.values():
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


@pytest.fixture
def keys() -> tuple[cf.Key, cf.Key]:
    return cf.Key(), cf.Key()


def test_each_node_verifies_under_its_own_document(tmp_path, registry, pusher, busybox, keys):
    a, b = keys
    digest = pusher.image("fleet/hello", "1", image("hello", busybox))
    cf.push_signature(pusher, "fleet/hello", digest, a, f"{registry.host}/fleet/hello")
    pair = Pair(tmp_path, registry)
    node_a, node_b = (pair.daemons[ip] for ip in IPS)
    (node_a.service_config_dir / "verify.yaml").write_text(policy(key_rule(f"{registry.host}/fleet/*", a)))
    # node b: its document and an ExtensionServiceConfig in one multi-document file
    (node_b.service_config_dir / "node.yaml").write_text(
        "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: hello\nenvironment: [X=1]\n---\n"
        + policy(key_rule(f"{registry.host}/fleet/*", b)))  # fmt: skip
    pair.start()
    try:
        before_b = snapshot(node_b)
        ref = registry.ref("fleet/hello", "1")
        r = pair.cli("extensions", "install", "-n", ",".join(IPS), ref)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"{IPS[0]}: installed hello 1.0.0 ({digest})" in r.stdout
        assert f"error: {IPS[1]}: {ref}: image refused" in r.stderr
        assert f"{ref}: refused by rule 0 ({registry.host}/fleet/*): no valid signature: signed with another key" in r.stderr
        assert f"{IPS[0]}: {ref}: verify: rule 0 ({registry.host}/fleet/*): signature of {digest} verified with key " in r.stderr
        assert snapshot(node_b) == before_b
        node_a.wait_state("ext-hello", "Running", timeout=30)
        # the list: VERIFIED per node
        items = json.loads(pair.cli("extensions", "-o", "json").stdout)
        verified = {i["node"]: i["verified"] for i in items}
        fingerprint = verified[IPS[0]].removeprefix("key ")
        assert list(verified) == [IPS[0]] and len(fingerprint) == 12
        table = pair.cli("extensions").stdout.splitlines()
        assert table[0].split() == ["NODE", "ID", "NAME", "VERSION", "AUTHOR", "DIGEST", "VERIFIED", "SERVICES"]
        assert f"key {fingerprint}" in table[1]
        # events and the daemon log name the deciding rule
        events = [e["msg"] for e in node_a.service("ext-hello")["events"]]
        assert f"extension hello 1.0.0 installed; image verification: rule 0 ({registry.host}/fleet/*): key {fingerprint}" in events
        assert f"image verification: rule 0 ({registry.host}/fleet/*): key {fingerprint}" in node_a.log()
        assert "extension " + ref + " refused: " in node_b.log()
        # node b's document changes to skip: re-read at the next install, no restart needed
        (node_b.service_config_dir / "node.yaml").write_text(policy(f"- image: {registry.host}/fleet/*\n  skip: true\n"))
        r = pair.cli("extensions", "install", "-n", IPS[1], ref)
        assert r.returncode == 0, r.stderr
        assert json.loads(pair.cli("extensions", "-o", "json", "-n", IPS[1]).stdout)[0]["verified"] == "skip"
        # a keyless document: every install refused, nothing changed
        (node_a.service_config_dir / "verify.yaml").write_text(policy(
            "- image: '*'\n  keyless:\n    issuer: https://accounts.google.com\n    subject: a@b\n"))  # fmt: skip
        before_a = snapshot(node_a)
        r = pair.cli("extensions", "install", "-n", IPS[0], ref)
        assert r.returncode == 1
        assert "the node's ImageVerificationConfig cannot be read: " in r.stderr
        assert "verify.yaml:5:5: error: rules.0.keyless: keyless rules are not supported" in r.stderr
        assert snapshot(node_a) == before_a
    finally:
        pair.stop()


def test_require_signatures(tmp_path, registry, pusher, busybox, keys):
    a, _ = keys
    signed = pusher.image("strict/signed", "1", image("signedext", busybox))
    cf.push_signature(pusher, "strict/signed", signed, a, f"{registry.host}/strict/signed")
    pusher.image("strict/other", "1", image("otherext", busybox))
    d = DaemonProcess(tmp_path / "d", extra=["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir),
                                              "--require-signatures"])  # fmt: skip
    (d.service_config_dir / "verify.yaml").write_text(policy(key_rule(f"{registry.host}/strict/signed", a)))
    d.start()
    try:
        before = snapshot(d)
        r = d.cli("extensions", "install", registry.ref("strict/other", "1"), check=False)
        assert r.returncode == 1
        assert (f"no rule of the ImageVerificationConfig at {d.service_config_dir / 'verify.yaml'}:1 matches "
                f"{registry.host}/strict/other, and the node requires signatures (--require-signatures)") in r.stderr  # fmt: skip
        assert snapshot(d) == before
        r = d.cli("extensions", "install", registry.ref("strict/signed", "1"))
        assert f"installed signedext 1.0.0 ({signed})" in r.stdout
        d.wait_state("ext-signedext", "Running", timeout=30)
    finally:
        d.stop()
    # installed extensions start again under --require-signatures without being fetched again
    d.start()
    try:
        d.wait_state("ext-signedext", "Running", timeout=30)
        assert json.loads(d.cli("extensions", "-o", "json").stdout)[0]["verified"].startswith("key ")
    finally:
        d.stop()
