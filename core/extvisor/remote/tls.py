"""TLS contexts for both ends of a remote API connection (standard library only).

Server: TLS 1.2 or newer, a client certificate required and checked against the client
CA, no session tickets (as Talos's apid). Client: the node's certificate checked against
the configuration's CA and against the node's name or address as typed.

``ssl`` loads certificates and keys only from files, while a talosconfig holds them inline:
they are written to anonymous memory files (memfd) and loaded from there; elsewhere than
Linux, to a private temporary directory, removed at once.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

TALOS_KEY_LABEL = b"ED25519 PRIVATE KEY"  # siderolabs/crypto's label for PKCS#8 Ed25519 keys


class TLSConfigError(Exception):
    """Certificate or key files that cannot be used, said in one line."""


def normalize_key_pem(pem: bytes) -> bytes:
    """Talos's ``ED25519 PRIVATE KEY`` blocks are PKCS#8: give them the standard label."""
    return pem.replace(b"-----BEGIN " + TALOS_KEY_LABEL, b"-----BEGIN PRIVATE KEY").replace(
        b"-----END " + TALOS_KEY_LABEL, b"-----END PRIVATE KEY"
    )


def _load_chain(ctx: ssl.SSLContext, crt: bytes, key: bytes, what: str) -> None:
    if hasattr(os, "memfd_create"):  # Linux: the key never touches a disk, and no tempfile import
        fds = []
        try:
            for data in (crt, normalize_key_pem(key)):
                fds.append(os.memfd_create("extvisor-tls", os.MFD_CLOEXEC))
                os.write(fds[-1], data)
            _load_files(ctx, f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}", what)
        finally:
            for fd in fds:
                os.close(fd)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="extvisor-tls-") as d:  # 0700
        crt_path, key_path = Path(d, "crt.pem"), Path(d, "key.pem")
        for path, data in ((crt_path, crt), (key_path, normalize_key_pem(key))):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        _load_files(ctx, str(crt_path), str(key_path), what)


def _load_files(ctx: ssl.SSLContext, crt_path: str, key_path: str, what: str) -> None:
    try:
        ctx.load_cert_chain(crt_path, key_path)
    except ssl.SSLError as exc:
        raise TLSConfigError(f"{what}: the certificate and key cannot be used together ({exc.reason or exc})") from None


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"{what} {path}: {exc.strerror}") from None


def server_context(cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str],
                   client_ca_file: str | os.PathLike[str]) -> ssl.SSLContext:  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED  # uvicorn's default is CERT_NONE: mTLS would be silently off
    ctx.options |= ssl.OP_NO_TICKET
    ca = _read(client_ca_file, "--client-ca")
    try:
        ctx.load_verify_locations(cadata=ca.decode(errors="replace"))
    except ssl.SSLError as exc:
        raise TLSConfigError(f"--client-ca {client_ca_file}: no usable CA certificate ({exc.reason or exc})") from None
    _load_chain(ctx, _read(cert_file, "--tls-cert"), _read(key_file, "--tls-key"), f"--tls-cert {cert_file} / --tls-key {key_file}")
    return ctx


def client_context(ca: bytes | None, crt: bytes | None, key: bytes | None) -> ssl.SSLContext:
    """*ca* empty: the system's roots (Talos does the same). No crt/key: no client certificate
    (the node will refuse the handshake, which the caller reports)."""
    try:
        ctx = ssl.create_default_context(cadata=ca.decode(errors="replace")) if ca else ssl.create_default_context()
    except ssl.SSLError as exc:
        raise TLSConfigError(f"the configuration's ca is not a usable certificate ({exc.reason or exc})") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    if crt and key:
        _load_chain(ctx, crt, key, "the configuration's crt and key")
    return ctx
