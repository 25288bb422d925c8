"""A private registry for the tests: Debian's ``docker-registry serve`` with its own config.

127.0.0.1 on a free port, TLS with a CA made here, htpasswd (bcrypt) basic auth, storage in a
temporary directory. Never the packaged service or its config.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port

TOOLS = {
    "skopeo": "skopeo",
    "docker-registry": "docker-registry",
    "openssl": "openssl",
    "htpasswd": "apache2-utils",
    "busybox": "busybox-static",
}


def require_tools(*names: str) -> None:
    """Fail (or skip with EXTVISOR_ALLOW_SKIP=1) when a tool the test needs is missing."""
    missing = [f"{n} (apt-get install {TOOLS.get(n, n)})" for n in names if shutil.which(n) is None]
    if not missing:
        return
    message = "missing: " + ", ".join(missing) + "; run scripts/setup.sh"
    if os.environ.get("EXTVISOR_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(message + " (or set EXTVISOR_ALLOW_SKIP=1 to skip)")


def _run(*cmd: str, cwd: Path | None = None) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60)
    assert out.returncode == 0, f"{cmd}: {out.stderr}"
    return out.stdout


def make_ca(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.crt, server.crt, server.key)."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run("openssl", "req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
         "-subj", "/CN=extvisor test CA", "-days", "2")  # fmt: skip
    _run("openssl", "req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"), "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    _run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
         "-CAcreateserial", "-out", str(d / "server.crt"), "-days", "2", "-extfile", str(d / "ext.cnf"))  # fmt: skip
    return d / "ca.crt", d / "server.crt", d / "server.key"


class Registry:
    user = "extvisor"
    password = "s3cret-pw"

    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = work / "storage"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ca, cert, key = make_ca(self.work / "tls")
        self.ca = ca
        self.cert_dir = self.work / "certs.d"  # what skopeo's --cert-dir takes: *.crt are CAs
        self.cert_dir.mkdir()
        shutil.copy(ca, self.cert_dir / "ca.crt")
        htpasswd = self.work / "htpasswd"
        htpasswd.write_text(_run("htpasswd", "-Bbn", self.user, self.password))
        self.authfile = self.work / "auth.json"
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        self.authfile.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        config = self.work / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: extvisor-tests\n"
            f"  tls:\n    certificate: {cert}\n    key: {key}\n"
            f"auth:\n  htpasswd:\n    realm: extvisor-tests\n    path: {htpasswd}\n"
        )
        self._serve("wb")

    def restart(self) -> None:
        """The same registry again after :meth:`stop`: same port, storage, CA and password."""
        self._serve("ab")

    def _serve(self, mode: str) -> None:
        self.log = open(self.work / "registry.log", mode)  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.work / "config.yml")], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)  # fmt: skip
        ca = self.ca
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("docker-registry exited: " + (self.work / "registry.log").read_text())
            try:
                r = httpx.get(f"https://{self.host}/v2/", verify=ssl.create_default_context(cafile=str(ca)), timeout=2)
                if r.status_code == 401:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("docker-registry did not answer: " + (self.work / "registry.log").read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def blob_path(self, digest: str) -> Path:
        hexd = digest.split(":")[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def ref(self, repo: str, tag: str) -> str:
        return f"docker://{self.host}/{repo}:{tag}"


class StallingProxy:
    """A TCP proxy on loopback in front of the registry that stops forwarding the registry's
    answer after *limit* bytes on a connection, keeping it open: a registry that stops
    sending mid-blob (TLS passes through untouched, so the certificate still matches)."""

    def __init__(self, upstream_port: int, limit: int = 1 << 20):
        import socket
        import threading

        self.limit = limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.upstream = ("127.0.0.1", upstream_port)
        self.sockets: list[socket.socket] = []
        self.stalled = threading.Event()  # set once a connection has been held
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.limit), daemon=True).start()

    def _pump(self, src, dst, limit: int | None) -> None:  # type: ignore[no-untyped-def]
        sent = 0
        try:
            while data := src.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[: limit - sent])
                    self.stalled.set()
                    self.closed.wait()  # hold the connection open, sending nothing
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass

    def authfile(self, registry: Registry, path: Path) -> Path:
        """The registry's credentials for the proxy's address."""
        token = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        return path

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(2)  # wakes a thread blocked in recv
            except OSError:
                pass
            s.close()
