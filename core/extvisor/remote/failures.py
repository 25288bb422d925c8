"""What went wrong talking to a node, said for an operator.

A refused client certificate rarely shows as a TLS error on the client: with TLS 1.3 the
server checks it after the client has finished its side of the handshake, so the client
only sees the connection closed before any answer. Such closings are reported as a refusal
with the likely reasons, and :func:`certificate_hint` adds what can be seen locally (an
expired certificate, none at all).
"""

from __future__ import annotations

import datetime as dt
import socket

REFUSED_HANDSHAKE = "the node closed the connection during TLS set-up"

_REFUSED_BY_NODE = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "it requires a client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "it refused our client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "our client certificate is not signed by its client CA",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "our client certificate has expired",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "our certificate is not a client certificate",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common (TLS 1.2 or newer is required)",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common (TLS 1.2 or newer is required)",
    "WRONG_VERSION_NUMBER": "it does not speak TLS on that port",
}


def describe(exc: BaseException) -> str:
    """One line for a failure to connect to a node or to get its answer."""
    import ssl  # loaded already by then: a TLS connection was tried

    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the node's certificate is not trusted: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):
        why = _REFUSED_BY_NODE.get(exc.reason or "")
        if why:
            return f"TLS: the node refused the connection: {why}"
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is `extvisor daemon --listen` running there, on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError)) or "without answering" in str(exc):
        return f"{REFUSED_HANDSHAKE}: it refused our client certificate (none, from another CA, or expired)"
    return str(exc) or type(exc).__name__


def certificate_hint(crt_pem: bytes | None, now: dt.datetime | None = None) -> str | None:
    """What is visibly wrong with our own client certificate, if anything."""
    if not crt_pem:
        return "this configuration has no client certificate (crt and key)"
    from extvisor.remote.certs import CertError, load_cert, not_after  # cryptography: only after a refusal

    try:
        expires = not_after(load_cert(crt_pem))
    except CertError as exc:
        return f"our client certificate cannot be read: {exc}"
    now = now or dt.datetime.now(dt.timezone.utc)
    if expires <= now:
        return f"our client certificate expired on {expires:%Y-%m-%d %H:%M} UTC"
    return None
