"""Certificates as talosctl makes them, and the TLS contexts refusing what they must.

The handshakes here are real (ssl sockets on 127.0.0.2); the daemon-level tests are in
test_remote_daemons.py.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from extvisor.remote import certs, tls
from extvisor.remote.certs import CertError, KeyPair


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return certs.new_ca()


@pytest.fixture(scope="module")
def server_files(ca: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("pki")
    certs.write_pair(d, "ca", KeyPair(ca.crt, ca.key))
    certs.write_pair(d, "server", certs.new_server(ca, ["127.0.0.2", "node-a.test"]))
    return d / "server.crt", d / "server.key", d / "ca.crt"


def test_ca_is_ed25519_for_ten_years(ca: KeyPair) -> None:
    cert = ca.cert
    assert isinstance(ca.private_key, ed25519.Ed25519PrivateKey)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    years = (cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365
    assert 9.9 < years < 10.1
    assert b"-----BEGIN PRIVATE KEY-----" in ca.key


def test_server_cert_names_and_usage(ca: KeyPair) -> None:
    cert = certs.new_server(ca, ["127.0.0.2", "node-a.test"], hours=24).cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.2"]
    assert san.get_values_for_type(x509.DNSName) == ["node-a.test"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    hours = (cert.not_valid_after_utc - cert.not_valid_before_utc - certs.BACKDATE).total_seconds() / 3600
    assert hours == pytest.approx(24)
    with pytest.raises(CertError, match="--san"):
        certs.new_server(ca, [])


def test_client_cert_roles_in_one_rdn_and_client_auth_only(ca: KeyPair) -> None:
    pair = certs.new_client(ca, ["os:reader", " os:operator", ""], hours=48)
    cert = pair.cert
    assert len(cert.subject.rdns) == 1  # O=os:operator+O=os:reader, as Go packs it
    assert certs.cert_roles(cert) == {"os:reader", "os:operator"}
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    der = cert.public_bytes(certs.serialization.Encoding.DER)
    assert certs.client_roles(der) == {"os:reader", "os:operator"}
    # a server certificate presented as a client's grants nothing (Talos: EKU must be exactly client auth)
    server_der = certs.new_server(ca, ["x"]).cert.public_bytes(certs.serialization.Encoding.DER)
    assert certs.client_roles(server_der) == frozenset()
    assert certs.client_roles(b"garbage") == frozenset()


def test_files_modes_and_no_overwrite(ca: KeyPair, tmp_path: Path) -> None:
    crt, key = certs.write_pair(tmp_path / "new" / "dir", "ca", ca)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(crt.parent.stat().st_mode) == 0o700
    with pytest.raises(CertError, match="already exists"):
        certs.write_pair(tmp_path / "new" / "dir", "ca", ca)
    assert certs.load_pair(tmp_path / "new" / "dir").crt == ca.crt
    assert certs.load_pair(crt).key == ca.key  # a path to the .crt works too
    with pytest.raises(CertError, match="cannot read"):
        certs.load_pair(tmp_path / "missing")


def test_talos_ed25519_label_is_accepted(ca: KeyPair) -> None:
    talos_key = ca.key.replace(b"PRIVATE KEY", b"ED25519 PRIVATE KEY")
    with pytest.raises(ValueError):  # what cryptography alone does with Talos's label
        certs.serialization.load_pem_private_key(talos_key, None)
    assert isinstance(certs.load_key(talos_key), ed25519.Ed25519PrivateKey)
    client = certs.new_client(KeyPair(ca.crt, talos_key), ["os:admin"])
    client_talos = KeyPair(client.crt, client.key.replace(b"PRIVATE KEY", b"ED25519 PRIVATE KEY"))
    tls.client_context(ca.crt, client_talos.crt, client_talos.key)  # loads: no "PEM lib"


# -- handshakes ----------------------------------------------------------------------------


class Server:
    """One TLS server on 127.0.0.2 that records what each handshake gave."""

    def __init__(self, ctx: ssl.SSLContext):
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.results: list[object] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    self.results.append(certs.client_roles(s.getpeercert(binary_form=True)))
                    s.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                self.results.append(exc)

    def connect(self, ctx: ssl.SSLContext, name: str = "127.0.0.2") -> bytes:
        with socket.create_connection(("127.0.0.2", self.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                return s.recv(2)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(server_files: tuple[Path, Path, Path]):
    s = Server(tls.server_context(*server_files))
    yield s
    s.close()


def _wait_result(server: Server, n: int) -> object:
    for _ in range(100):
        if len(server.results) >= n:
            return server.results[n - 1]
        threading.Event().wait(0.02)
    raise AssertionError("the server saw no handshake")


def test_server_context_settings(server_files: tuple[Path, Path, Path]) -> None:
    ctx = tls.server_context(*server_files)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(tls.TLSConfigError, match="--client-ca"):
        tls.server_context(server_files[0], server_files[1], server_files[2].with_name("nope.crt"))


def test_valid_client_gets_its_roles(server: Server, ca: KeyPair) -> None:
    client = certs.new_client(ca, ["os:reader"])
    assert server.connect(tls.client_context(ca.crt, client.crt, client.key)) == b"ok"
    assert _wait_result(server, 1) == {"os:reader"}
    assert server.connect(tls.client_context(ca.crt, client.crt, client.key), name="node-a.test") == b"ok"


def _refused(server: Server, ctx: ssl.SSLContext, name: str = "127.0.0.2") -> None:
    """Refused at the handshake: with TLS 1.3 the client may only notice on its first read."""
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        data = server.connect(ctx, name)
        if data == b"":
            raise ConnectionResetError("closed")


def test_client_without_certificate_is_refused(server: Server, ca: KeyPair) -> None:
    _refused(server, tls.client_context(ca.crt, None, None))
    assert isinstance(_wait_result(server, 1), ssl.SSLError)


def test_client_from_another_ca_is_refused(server: Server, ca: KeyPair) -> None:
    other = certs.new_ca()
    client = certs.new_client(other, ["os:admin"])
    _refused(server, tls.client_context(ca.crt, client.crt, client.key))
    assert "certificate verify failed" in str(_wait_result(server, 1))


def test_expired_client_is_refused(server: Server, ca: KeyPair) -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    client = certs.new_client(ca, ["os:admin"], hours=1, now=past)
    _refused(server, tls.client_context(ca.crt, client.crt, client.key))
    assert "expired" in str(_wait_result(server, 1))


def test_server_certificate_as_client_is_refused(server: Server, ca: KeyPair) -> None:
    misuse = certs.new_server(ca, ["127.0.0.9"])
    _refused(server, tls.client_context(ca.crt, misuse.crt, misuse.key))
    assert "unsuitable certificate purpose" in str(_wait_result(server, 1))


def test_wrong_server_name_is_refused_by_the_client(server: Server, ca: KeyPair) -> None:
    client = certs.new_client(ca, ["os:admin"])
    with pytest.raises(ssl.SSLCertVerificationError, match="127.0.0.3|mismatch"):
        server.connect(tls.client_context(ca.crt, client.crt, client.key), name="127.0.0.3")
    with pytest.raises(ssl.SSLCertVerificationError):
        server.connect(tls.client_context(certs.new_ca().crt, client.crt, client.key))  # server from another CA


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_client_is_refused(server: Server, ca: KeyPair) -> None:
    client = certs.new_client(ca, ["os:admin"])
    ctx = tls.client_context(ca.crt, client.crt, client.key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.1
    with pytest.raises(ssl.SSLError) as err:
        server.connect(ctx)
    assert "protocol version" in str(err.value).lower() or "unsupported protocol" in str(err.value).lower()
    seen = _wait_result(server, 1)
    assert isinstance(seen, ssl.SSLError) and "unsupported protocol" in str(seen).lower()


def test_subject_with_no_organization(ca: KeyPair) -> None:
    pair = certs.new_client(ca, [])
    assert pair.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
    assert certs.client_roles(pair.cert.public_bytes(certs.serialization.Encoding.DER)) == frozenset()
