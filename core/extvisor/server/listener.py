"""Accepting the TLS listeners' connections within limits (docs/remote.md, "Limits").

asyncio's own accept loop gives every TCP connection an SSL transport at once (a 256 KiB
read buffer and an OpenSSL object before the client sent a byte), keeps it for 60 s, and
on ``EMFILE`` logs a traceback for each failed accept. Anyone who can reach the port could
exhaust the daemon's memory and descriptors without a certificate. Here instead:

* a connection that has sent nothing yet is only a socket watched for its first byte;
  TLS starts when the ClientHello arrives, with a 32 KiB read buffer;
* ``max_connections`` bounds the connections open at once (never more than the open-file
  limit leaves room for); at the bound, the oldest not yet authenticated one is closed
  for the newcomer (an idle one before one in its handshake), so a flood of idle
  connections cannot keep a client with a certificate out;
* every connection must complete its handshake ``handshake_timeout`` seconds after it was
  accepted, or is closed;
* accept errors (out of descriptors or memory) stop accepting for a while, 5 ms doubling up
  to 1 s as Go's servers do, and are logged once per burst.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import resource
import socket
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import uvicorn

log = logging.getLogger("extvisor.listener")

RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
MIN_DELAY, MAX_DELAY = 0.005, 1.0  # accept back-off, as Go's net/http
ACCEPTS_PER_TURN = 256  # then other callbacks (the Unix socket, requests) get the loop
TRIM_AFTER = 64  # handshakes, then memory is given back once no connection is unauthenticated


def descriptor_room() -> int:
    """How many connections the open-file limit leaves room for, keeping a quarter (at least 256)
    for the rest of the daemon: services' logs and pipes, the Unix socket, the runtime."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - max(256, soft // 4))


def release_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim). TLS objects are
    allocated between longer-lived ones, so after a burst of handshakes the freed memory is in
    holes that glibc keeps for ever otherwise."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


class Burst:
    """A condition logged when it starts and summed up once it has not recurred for QUIET seconds,
    however often it recurs meanwhile."""

    QUIET = 10.0

    def __init__(self, started: str, ended: str):
        self.started, self.ended = started, ended
        self.count = 0
        self.since = self.last = 0.0

    def hit(self, *args: Any) -> None:
        self.last = time.monotonic()
        if not self.count:
            self.since = self.last
            log.warning(self.started, *args)
        self.count += 1

    def clear(self) -> None:
        if self.count and time.monotonic() - self.last >= self.QUIET:
            log.warning(self.ended, self.count, self.last - self.since)
            self.count = 0


class GuardedSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a 32 KiB read buffer, telling the acceptor how it ends."""

    max_size = 32 * 1024  # a TLS record is at most 16 KiB; asyncio's 256 KiB is per connection

    def __init__(self, acceptor: TLSAcceptor, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.acceptor = acceptor
        self.raw: asyncio.Transport | None = None
        self.deadline = 0.0
        self.aborted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.aborted:  # evicted before its transport was made
            transport.abort()  # type: ignore[attr-defined]
            return
        self.raw = transport  # type: ignore[assignment]
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.raw = None
        self.acceptor.closed(self)

    def abort(self) -> None:
        self.aborted = True
        if self.raw is not None:
            self.raw.abort()


class TLSAcceptor:
    """The TLS listeners' accept loop: the limits above, then asyncio's TLS and *protocol*."""

    def __init__(self, sockets: list[socket.socket], context: ssl.SSLContext, protocol: Callable[[], asyncio.Protocol],
                 max_connections: int, handshake_timeout: float):  # fmt: skip
        self.sockets = sockets
        self.context = context
        self.protocol = protocol
        self.handshake_timeout = handshake_timeout
        room = descriptor_room()
        self.max_connections = min(max_connections, room)
        if self.max_connections < max_connections:
            log.warning("--max-connections %d lowered to %d: the open-file limit (ulimit -n) leaves room for no more",
                        max_connections, self.max_connections)  # fmt: skip
        self.idle: dict[socket.socket, float] = {}  # accepted, no byte yet: socket -> deadline (oldest first)
        self.handshaking: dict[GuardedSSLProtocol, None] = {}  # oldest first
        self.established: set[GuardedSSLProtocol] = set()
        self.tasks: set[asyncio.Task] = set()  # type: ignore[type-arg]
        self.delay = 0.0
        self.handshakes = 0  # since memory was last given back
        self.accepting = False
        self.closing = False
        self.loop = asyncio.get_running_loop()
        self.sweeper: asyncio.TimerHandle | None = None
        self.resumer: asyncio.TimerHandle | None = None
        self.errors = Burst("TLS listener: accepting failed: %s; retrying with a back-off of up to 1 s "
                            "(logged once per burst)", "TLS listener: accepting again, after %d failed accepts in %.1f s")
        self.full = Burst("TLS listener: %d connections open, the limit (--max-connections): closing the oldest "
                          "not yet authenticated for each new one (logged once per burst)",
                          "TLS listener: below the connection limit again, after %d connections over it in %.1f s")

    @property
    def open(self) -> int:
        return len(self.idle) + len(self.handshaking) + len(self.established)

    def start(self) -> None:
        for sock in self.sockets:
            sock.setblocking(False)
        self._resume()

    def _resume(self) -> None:
        self.resumer = None
        if self.closing or self.accepting:
            return
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._accept, sock)
        self.accepting = True

    def _pause(self) -> None:
        if self.accepting:
            for sock in self.sockets:
                self.loop.remove_reader(sock.fileno())
            self.accepting = False

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_failed(exc)
                return
            self.delay = 0.0
            self.errors.clear()
            if self.open < self.max_connections:
                self.full.clear()
            else:
                self.full.hit(self.open)
                if not self._evict():
                    conn.close()  # every connection open has a certificate: the newcomer must wait
                    continue
            conn.setblocking(False)
            self.idle[conn] = self.loop.time() + self.handshake_timeout
            self.loop.add_reader(conn.fileno(), self._first_byte, conn)
            self._sweep_later()

    def _evict(self) -> bool:
        """Close the oldest connection without a certificate yet, idle before handshaking."""
        if self.idle:
            self._close_idle(next(iter(self.idle)))
            return True
        if self.handshaking:
            proto = next(iter(self.handshaking))
            del self.handshaking[proto]
            proto.abort()
            return True
        return False

    def _accept_failed(self, exc: OSError) -> None:
        self.errors.hit(exc.strerror or exc)
        if exc.errno not in RESOURCE_ERRORS:
            return  # nothing to wait for (a protocol error of one connection): go on at the next turn
        self._evict()  # a descriptor back for the Unix socket and the services
        self._pause()  # Linux keeps reporting the listener readable: wait instead of spinning
        self.delay = min(MAX_DELAY, max(MIN_DELAY, self.delay * 2))
        self.resumer = self.loop.call_later(self.delay, self._resume)

    def _close_idle(self, conn: socket.socket) -> None:
        del self.idle[conn]
        self.loop.remove_reader(conn.fileno())
        conn.close()

    def _first_byte(self, conn: socket.socket) -> None:
        """The client spoke: now TLS, with what is left of its deadline."""
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            first = b""
        if first != b"\x16":  # gone, or not a TLS handshake record: no TLS object for it
            self._close_idle(conn)
            return
        deadline = self.idle.pop(conn)
        self.loop.remove_reader(conn.fileno())
        left = max(0.1, deadline - self.loop.time())
        waiter = self.loop.create_future()
        proto = GuardedSSLProtocol(self, self.loop, self.protocol(), self.context, waiter,
                                   server_side=True, ssl_handshake_timeout=left)  # fmt: skip
        proto.deadline = deadline
        self.handshaking[proto] = None
        self.handshakes += 1
        waiter.add_done_callback(lambda f: self._handshake_done(proto, f))
        task = self.loop.create_task(self._transport(conn, proto))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _transport(self, conn: socket.socket, proto: GuardedSSLProtocol) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: proto, conn)
        except Exception:  # the peer left already, or the loop is closing
            conn.close()
            self.handshaking.pop(proto, None)

    def _handshake_done(self, proto: GuardedSSLProtocol, waiter: asyncio.Future) -> None:  # type: ignore[type-arg]
        self.handshaking.pop(proto, None)
        if not waiter.cancelled() and waiter.exception() is None and proto.raw is not None:
            self.established.add(proto)
        # a failed handshake is the client's business (no certificate, wrong CA): nothing logged

    def closed(self, proto: GuardedSSLProtocol) -> None:
        self.handshaking.pop(proto, None)
        self.established.discard(proto)

    def _sweep_later(self) -> None:
        if self.sweeper is None and not self.closing:
            self.sweeper = self.loop.call_later(min(0.5, self.handshake_timeout / 4), self._sweep)

    def _sweep(self) -> None:
        """Close what is past its handshake deadline (both dicts are in deadline order)."""
        self.sweeper = None
        self.full.clear()
        self.errors.clear()
        now = self.loop.time()
        while self.idle:
            conn, deadline = next(iter(self.idle.items()))
            if deadline > now:
                break
            self._close_idle(conn)
        while self.handshaking:
            proto = next(iter(self.handshaking))
            if proto.deadline > now:
                break
            del self.handshaking[proto]
            proto.abort()
        if self.idle or self.handshaking:
            self._sweep_later()
        elif self.handshakes >= TRIM_AFTER:
            self.handshakes = 0
            release_memory()

    # what uvicorn's shutdown asks of the servers it holds
    def close(self) -> None:
        self.closing = True
        self._pause()
        for handle in (self.sweeper, self.resumer):
            if handle is not None:
                handle.cancel()
        for conn in list(self.idle):
            self._close_idle(conn)
        for proto in list(self.handshaking):
            proto.abort()
        self.handshaking.clear()

    async def wait_closed(self) -> None:
        return None


class Server(uvicorn.Server):
    """uvicorn without its signal handlers: the daemon handles SIGTERM and SIGINT itself."""

    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        return nullcontext()


class TLSServer(Server):
    """uvicorn for the TLS listeners, accepting through :class:`TLSAcceptor`."""

    def __init__(self, config: uvicorn.Config, max_connections: int, handshake_timeout: float):
        super().__init__(config)
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.acceptor: TLSAcceptor | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan and state, no listener of uvicorn's
        config = self.config

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=self.server_state,  # type: ignore[call-arg]
                                              app_state=self.lifespan.state)  # fmt: skip

        self.acceptor = TLSAcceptor(list(sockets or []), config.ssl, protocol, self.max_connections,
                                    self.handshake_timeout)  # fmt: skip
        self.acceptor.start()
        self.servers.append(self.acceptor)  # type: ignore[arg-type]
