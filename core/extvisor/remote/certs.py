"""Certificates as talosctl makes them: an Ed25519 CA (ten years), server certificates
with IP and DNS names, client certificates whose Subject Organization values are roles.

Keys are written as PKCS#8 ``PRIVATE KEY``, mode 0600, never through a symlink and never into
a directory another user owns or can write. Talos writes Ed25519 keys under the
label ``ED25519 PRIVATE KEY``, which neither OpenSSL nor ``cryptography`` reads: such keys are
relabelled when read (:func:`normalize_key_pem`), the bytes are the same.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from extvisor.shared import dirs

from . import roles as roles_mod
from .tls import normalize_key_pem

CA_HOURS = 87600  # Talos's CA: ten years
SERVER_HOURS = 8760  # Talos renews its own daily; ours are made by hand, so a year
CLIENT_HOURS = 8760  # TalosAPIDefaultCertificateValidityDuration
BACKDATE = dt.timedelta(minutes=5)  # small clock differences between machines


class CertError(Exception):
    """A certificate or key that cannot be used, said in one line."""


@dataclass
class KeyPair:
    crt: bytes  # PEM
    key: bytes  # PEM, PKCS#8

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.crt)

    @property
    def private_key(self):  # type: ignore[no-untyped-def]
        return load_key(self.key)


def load_key(pem: bytes):  # type: ignore[no-untyped-def]
    try:
        return serialization.load_pem_private_key(normalize_key_pem(pem), password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(f"not a usable private key: {exc}") from None


def _new_key_like(ca_key):  # type: ignore[no-untyped-def]
    """A leaf's key follows its CA's, as in siderolabs/crypto: Ed25519, else ECDSA P-256."""
    if ca_key is None or isinstance(ca_key, ed25519.Ed25519PrivateKey):
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _sign_algorithm(key):  # type: ignore[no-untyped-def]
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()  # Ed25519 must be None


def _key_pem(key) -> bytes:  # type: ignore[no-untyped-def]
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _builder(subject: x509.Name, issuer: x509.Name, public_key, hours: float, now: dt.datetime | None):  # type: ignore[no-untyped-def]
    now = now or dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(hours=hours))
    )


def _usage(digital_signature: bool = True, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)  # fmt: skip


def new_ca(organization: str = "extvisor", hours: float = CA_HOURS, now: dt.datetime | None = None) -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    cert = (
        _builder(name, name, key.public_key(), hours, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _leaf(ca: KeyPair, subject: x509.Name, usage: x509.ObjectIdentifier, hours: float,
          sans: list[str] | None, now: dt.datetime | None) -> KeyPair:  # fmt: skip
    ca_cert, ca_key = ca.cert, ca.private_key
    key = _new_key_like(ca_key)
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), hours, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_san(sans)), critical=False)
    cert = builder.sign(ca_key, _sign_algorithm(ca_key))
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def new_server(ca: KeyPair, sans: list[str], hours: float = SERVER_HOURS, now: dt.datetime | None = None) -> KeyPair:
    """A server certificate for these names and addresses (the client checks the node it dialled)."""
    if not sans:
        raise CertError("a server certificate needs at least one name or address (--san)")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])])
    return _leaf(ca, subject, ExtendedKeyUsageOID.SERVER_AUTH, hours, sans, now)


def new_client(ca: KeyPair, roles: Iterable[str], hours: float = CLIENT_HOURS, now: dt.datetime | None = None) -> KeyPair:
    """A client certificate: O = each role (one multi-valued RDN, as Go writes it), EKU client auth only."""
    values = sorted(roles_mod.parse(roles))
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, r) for r in values]
    subject = x509.Name([x509.RelativeDistinguishedName(attrs)] if attrs else [])
    return _leaf(ca, subject, ExtendedKeyUsageOID.CLIENT_AUTH, hours, None, now)


# -- files --------------------------------------------------------------------------------


def write_pair(directory: str | os.PathLike[str], stem: str, pair: KeyPair, overwrite: bool = False) -> tuple[Path, Path]:
    """``DIR/<stem>.crt`` (0644) and ``DIR/<stem>.key`` (0600); DIR is made 0700 when missing.

    Never writes through a symlink (a file is created with ``O_EXCL|O_NOFOLLOW``, or replaced
    by a rename with *overwrite*), nor into a directory another user owns or can write.
    """
    d = Path(directory)
    crt, key = d / f"{stem}.crt", d / f"{stem}.key"
    dir_fd = open_private_dir(d)
    try:
        if not overwrite:
            for p in (crt, key):
                try:
                    st = os.stat(p.name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                what = " (a symlink)" if stat.S_ISLNK(st.st_mode) else ""
                raise CertError(f"{p} already exists{what}; not overwriting it")
        _write_at(dir_fd, key, pair.key, 0o600, overwrite)
        _write_at(dir_fd, crt, pair.crt, 0o644, overwrite)
    finally:
        os.close(dir_fd)
    return crt, key


def open_private_dir(d: Path) -> int:
    """A descriptor of *d* (made 0700 when missing) if keys may go there: a directory, not a
    symlink, of this user, that neither group nor others can write (as OpenSSH's StrictModes)."""
    try:
        return dirs.open_private_dir(d, "keys", parents=True)
    except dirs.UnsafeDirectory as exc:
        raise CertError(str(exc)) from None


def _write_at(dir_fd: int, path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    """Write a new file in *dir_fd*; with *overwrite*, a new file renamed over the old name
    (which replaces a symlink there rather than writing through it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    name = f".{path.name}.{secrets.token_hex(6)}" if overwrite else path.name
    try:
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    except FileExistsError:
        raise CertError(f"{path} already exists; not overwriting it") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.unlink(name, dir_fd=dir_fd)
        raise
    finally:
        os.close(fd)
    if overwrite:
        os.rename(name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def load_pair(directory: str | os.PathLike[str], stem: str = "ca") -> KeyPair:
    """``DIR/<stem>.crt`` and ``DIR/<stem>.key`` (or a path to the .crt, the .key beside it)."""
    d = Path(directory)
    if d.suffix == ".crt" and d.is_file():
        crt, key = d, d.with_suffix(".key")
    else:
        crt, key = d / f"{stem}.crt", d / f"{stem}.key"
    try:
        pair = KeyPair(crt.read_bytes(), key.read_bytes())
    except OSError as exc:
        raise CertError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        pair.cert
    except ValueError as exc:
        raise CertError(f"{crt}: not a PEM certificate ({exc})") from None
    pair.private_key
    return pair


# -- reading ------------------------------------------------------------------------------


def cert_roles(cert: x509.Certificate) -> frozenset[str]:
    """Every Organization value of the subject, multi-valued RDNs included."""
    return roles_mod.parse(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))


def client_roles(der: bytes) -> frozenset[str]:
    """The roles a peer's certificate grants: none unless its only extended key usage is
    client authentication (Talos's apid rule; OpenSSL only checks that it is present)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, x509.ExtensionNotFound):
        return frozenset()
    if list(eku) != [ExtendedKeyUsageOID.CLIENT_AUTH]:
        return frozenset()
    return cert_roles(cert)


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertError(f"not a PEM certificate: {exc}") from None
