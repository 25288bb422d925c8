"""Three real daemons on 127.0.0.2-4 with mutual TLS, a private TLS registry with a password,
and extension images whose services really run (busybox), for the declared-state tests."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from daemon_process import DaemonProcess
from extensions.images import Image, extension_entries

from conftest import free_port
from extvisor.remote import certs
from extvisor.remote.talosconfig import Config, Context
from extvisor.testing import make_busybox_rootfs

IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
PLAIN = "name: plain\nrestart: always\ncontainer:\n  entrypoint: /bin/sh\n  args: ['-c', 'exec sleep 100000']\n"


def service(name: str, script: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        name: {name}
        restart: always
        container:
          entrypoint: /bin/sh
          args: ["-c", {script!r}]
        """) + extra


def ext_image(name: str, version: str, busybox: Path, script: str | None = None, extra: str = "") -> Image:
    script = script or f"echo {name} {version} $GREETING; exec sleep 100000"
    return Image([extension_entries(name, {name: service(name, script, extra)}, version=version, busybox=busybox)])


def cli(env: dict[str, str], *args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "extvisor", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, input=stdin if stdin is not None else "")  # fmt: skip


def client_cert(ca: certs.KeyPair, cn: str, roles: list[str]) -> certs.KeyPair:
    """A client certificate with a common name (``extvisor config new`` makes none)."""
    key = ed25519.Ed25519PrivateKey.generate()
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, r) for r in roles)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=24))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.private_key, None))  # fmt: skip
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return certs.KeyPair(cert.public_bytes(serialization.Encoding.PEM), pem)


class Fleet:
    def __init__(self, base: Path, registry):  # type: ignore[no-untyped-def]
        self.base = base
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in ("EXTVISOR_SOCKET", "EXTVISOR_CONFIG")}
        self.env["HOME"] = str(base / "home")
        pki = base / "pki"
        assert cli(self.env, "gen", "ca", str(pki / "ca")).returncode == 0
        self.ca = certs.load_pair(pki / "ca")
        self.daemons: dict[str, DaemonProcess] = {}
        for ip in IPS:
            assert cli(self.env, "gen", "server", str(pki / ip), "--ca", str(pki / "ca"), "--san", ip).returncode == 0
            flags = ["--listen", f"{ip}:{self.port}", "--tls-cert", str(pki / ip / "server.crt"), "--tls-key",
                     str(pki / ip / "server.key"), "--client-ca", str(pki / "ca" / "ca.crt"),
                     "--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)]  # fmt: skip
            d = DaemonProcess(base / ip, extra=flags)
            (d.config_dir / "plain.yaml").write_text(PLAIN)
            make_busybox_rootfs(d.rootfs_dir / "plain")
            self.daemons[ip] = d
        self.configs = {"admin": self.context("alice", ["os:admin"]), "reader": self.context("rita", ["os:reader"])}
        try:
            for d in self.daemons.values():
                d.start()
            for d in self.daemons.values():
                d.wait_state("ext-plain", "Running", timeout=30)
        except BaseException:
            self.stop()
            raise

    def context(self, cn: str, roles: list[str]) -> Path:
        pair = client_cert(self.ca, cn, roles)
        ctx = Context.from_pems(self.ca.crt, pair.crt, pair.key, [f"{IPS[0]}:{self.port}"], IPS)
        path = self.base / "configs" / cn
        Config(context=cn, contexts={cn: ctx}).save(path)
        return path

    def run(self, role: str, *args: str, timeout: float = 180, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return cli(self.env, *args, "--config", str(self.configs[role]), timeout=timeout, stdin=stdin)

    def pids(self, ip: str) -> dict[str, int | None]:
        return {s["id"]: s["pid"] for s in self.daemons[ip].client.services()}

    def stop(self) -> None:
        for d in self.daemons.values():
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
