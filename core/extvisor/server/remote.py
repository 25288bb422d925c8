"""The API over TCP with mutual TLS, and who may call what (docs/remote.md).

Each request carries the caller's roles in ``scope["extensions"]["extvisor.roles"]``: the
Unix socket's server sets admin (whoever can open the root-only socket), the TLS
listeners set those of the client certificate. :func:`authorize` refuses, before the API
sees the request, any call the roles do not allow, and any request without roles at all.

uvicorn does not put the peer certificate in the ASGI scope (encode/uvicorn#2306), so the
TLS listeners use an h11 protocol that reads it from the connection once, after the
handshake, and adds it (``extensions.tls.client_cert``, as asgiref's TLS extension) and
the roles to every request of that connection.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from extvisor.remote import roles as roles_mod
from extvisor.remote.nodes import listen_address

ROLES_KEY = "extvisor.roles"
_DENIED = json.dumps({"detail": roles_mod.NOT_AUTHORIZED}).encode()


def with_roles(app: Any, roles: Iterable[str]) -> Any:
    """*app* with these roles on every request (the Unix socket's server)."""
    fixed = frozenset(roles)

    async def app_with_roles(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), ROLES_KEY: fixed}}
        await app(scope, receive, send)

    return app_with_roles


def authorize(app: Any) -> Any:
    """403 ``not authorized`` for a call the caller's roles do not allow; nothing else runs."""

    async def authorized(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            roles = (scope.get("extensions") or {}).get(ROLES_KEY)
            if roles is None or not roles_mod.allowed(roles, scope["method"], scope["path"]):
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(_DENIED)).encode())]})  # fmt: skip
                await send({"type": "http.response.body", "body": _DENIED})
                return
        elif scope["type"] == "websocket":
            return  # no websocket routes: closing unaccepted refuses it
        await app(scope, receive, send)

    return authorized


class TLSH11Protocol(H11Protocol):
    """h11 over TLS, adding the client certificate and its roles to each request."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        from extvisor.remote.certs import client_roles  # cryptography: only on TLS listeners

        roles = client_roles(der) if der else frozenset()
        app = self.app

        async def app_with_peer(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                ext = {**(scope.get("extensions") or {}), "tls": {"client_cert": der}, ROLES_KEY: roles}
                scope = {**scope, "extensions": ext}
            await app(scope, receive, send)

        self.app = app_with_peer


def bind_tcp(address: str) -> socket.socket:
    """Bind ``HOST[:PORT]`` (port 50000 when left out) before anything starts."""
    host, port = listen_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it each answer's body waited ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Go's backlog (the kernel's somaxconn): a burst of connections waits in the kernel, costing the
    # daemon nothing, instead of having its SYNs dropped and retried a second later (a client with a
    # certificate among them would wait that second). The daemon's own limits: server/listener.py.
    sock.listen(socket.SOMAXCONN)
    sock.setblocking(False)
    return sock


def tls_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    from extvisor.remote.tls import server_context

    return server_context(cert, key, client_ca)


def unix_app(app: Any) -> Any:
    """The API as the root-only Unix socket serves it: whoever opens it is admin."""
    return with_roles(authorize(app), roles_mod.UNIX_SOCKET_ROLES)


def tls_config(app: Any, context: ssl.SSLContext, **options: Any) -> Any:
    """uvicorn's configuration for the TLS listeners (one for all: one SSL context)."""
    import uvicorn

    config = uvicorn.Config(authorize(app), http=TLSH11Protocol, ws="none", proxy_headers=False, **options)
    config.load()
    config.ssl = context  # set after load(): uvicorn's own would leave client certificates unchecked
    return config
