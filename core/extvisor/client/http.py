"""A small client of the daemon's API, for the CLI and scripts (the dashboard has an async one).

It speaks to one daemon, through its Unix socket or over TCP with TLS (:class:`Address`),
with the standard library only (``wire``), so that a CLI call costs little more than the
interpreter's start. Every answer is checked against its route's declared shape
(``extvisor.shared.routes``): an answer of another shape is a :class:`ClientError` naming
what was wrong, never a traceback further on.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

from extvisor.client.wire import Address, Response, WireError, request
from extvisor.shared import defaults, routes
from extvisor.shared.routes import Route
from extvisor.shared.shapes import ShapeError, check

DEFAULT_SOCKET = defaults.SOCKET
SOCKET_ENV = defaults.SOCKET_ENV
MAX_LINE = 16 * 1024 * 1024  #: longest NDJSON line accepted from a stream


RETRIES = 3  #: a GET cut off by a daemon restart is asked again this many times


def _cut_off(exc: BaseException) -> bool:
    """The connection was taken, then dropped without an answer (not refused: nobody listens)."""
    if isinstance(exc, WireError):
        return "without answering" in str(exc) or "ended early" in str(exc)
    # Over TLS, a daemon that dies mid-handshake ends it with an EOF (a refused certificate
    # looks the same, and is refused again: asking again costs a few handshakes).
    return isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)) or \
        type(exc).__name__ in ("SSLEOFError", "SSLZeroReturnError")


class ClientError(Exception):
    """A one-line error for the operator: daemon not running, unknown service..."""


def default_socket() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


class Client:
    errors = (ClientError,)  #: what a call raises (client/resume.py catches it without importing us)

    def __init__(self, socket_path: str | None = None, timeout: float = defaults.CLIENT_TIMEOUT,
                 address: Address | None = None):  # fmt: skip
        self.address = address or Address(unix=socket_path or default_socket())
        self.socket = str(self.address)
        self.timeout = timeout

    def _unreachable(self, exc: BaseException) -> ClientError:
        if self.address.unix is not None:
            return ClientError(f"cannot reach the extvisor daemon at {self.socket} ({exc}); is `extvisor daemon` running?")
        if self.address.ssl is not None:
            from extvisor.remote.failures import describe  # refused certificates, names, TLS versions

            return ClientError(describe(exc))
        return ClientError(f"cannot reach the extvisor daemon at {self.socket}: {exc}")

    def _open(self, method: str, path: str, params: dict[str, Any] | None, body: Any, timeout: float | None,
              read_timeout: Any = ...) -> Response:
        for attempt in range(RETRIES + 1):
            try:
                response = request(self.address, method, path, params, body, timeout, read_timeout)
                break
            except (socket.timeout, TimeoutError):
                raise ClientError(f"the extvisor daemon at {self.socket} did not answer in time") from None
            except (OSError, WireError) as exc:  # refused, missing socket, TLS refused, reset
                # A daemon that went away (killed, upgrading) after taking the connection: the
                # next one answers from the same listening socket. Only reads are asked again.
                if method != "GET" or attempt == RETRIES or not _cut_off(exc):
                    raise self._unreachable(exc) from None
        if response.status >= 400:
            try:
                raw = response.read()
                detail = json.loads(raw).get("detail", raw.decode(errors="replace"))
            except (ValueError, AttributeError, OSError, WireError):
                detail = response.reason
            finally:
                response.close()
            raise ClientError(detail if isinstance(detail, str) else json.dumps(detail))
        return response

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                timeout: float | None = ...) -> Any:  # type: ignore[assignment]
        """One call; its JSON answer, unchecked. An HTTP error becomes a :class:`ClientError` with the API's detail."""
        for attempt in range(RETRIES + 1):
            response = self._open(method, path, params, body, self.timeout if timeout is ... else timeout)
            try:
                return response.json()
            except (socket.timeout, TimeoutError):
                raise ClientError(f"the extvisor daemon at {self.socket} did not answer in time") from None
            except ValueError:
                raise ClientError(f"the answer to {method} {path} is not JSON") from None
            except (OSError, WireError) as exc:
                if method != "GET" or attempt == RETRIES or not _cut_off(exc):  # see _open
                    raise self._unreachable(exc) from None
            finally:
                response.close()
        raise AssertionError("unreachable")

    def call(self, route: Route, params: dict[str, Any] | None = None, body: Any = None, **path: str) -> Any:
        """Call *route* (path parameters as keywords); its answer, checked against the route's shape."""
        target = route.path_for(**path)
        _check_request(route, body)
        return checked(route, self.request(route.method, target, params, body, None if route.waits else ...), target)

    def open(self, route: Route, params: dict[str, Any] | None = None, body: Any = None, **path: str) -> Iterator[bytes]:
        """A streaming route's answer (a log, events, an install), chunk by chunk, for as long as it comes."""
        _check_request(route, body)
        response = self._open(route.method, route.path_for(**path), params, body, self.timeout, read_timeout=None)
        try:
            yield from response.iter_raw()
        except (OSError, WireError):
            raise ClientError("the extvisor daemon closed the stream (did it stop?)") from None
        finally:
            response.close()

    def lines(self, route: Route, params: dict[str, Any] | None = None, body: Any = None, **path: str) -> Iterator[Any]:
        """An NDJSON stream's items as they come, each checked against the route's shape.

        Closing the iterator early closes the connection, which cancels an install on the node."""
        target = route.path_for(**path)
        chunks = self.open(route, params, body, **path)
        buf = b""
        try:
            for chunk in chunks:
                buf += chunk
                *complete, buf = buf.split(b"\n")
                if len(buf) > MAX_LINE:
                    raise ClientError(f"a line of {route.method} {target} is longer than {MAX_LINE} bytes")
                for line in complete:
                    if line.strip():
                        yield checked(route, parse_line(route, line, target), target)
        finally:
            chunks.close()  # closing early (Ctrl-C) closes the connection: the node stops an install

    # The routes scripts use most, by name.
    def daemon(self) -> dict[str, Any]:
        return self.call(routes.DAEMON)  # type: ignore[no-any-return]

    def services(self) -> list[dict[str, Any]]:
        return self.call(routes.SERVICES)  # type: ignore[no-any-return]

    def service(self, service_id: str) -> dict[str, Any]:
        return self.call(routes.SERVICE_ONE, service_id=service_id)  # type: ignore[no-any-return]

    def action(self, service_id: str, action: str) -> dict[str, Any]:
        return self.call(routes.ACTION, service_id=service_id, action=action)  # type: ignore[no-any-return]

    def logs(self, service_id: str, tail: int = -1, follow: bool = False) -> Iterator[bytes]:
        if follow:  # rides over daemon restarts (client/resume.py)
            from extvisor.client.resume import follow_logs

            return follow_logs(self, service_id, tail)
        return self.open(routes.LOGS, {"tail": tail, "follow": follow}, service_id=service_id)

    def events(self, follow: bool = True, tail: int = 0) -> Iterator[dict[str, Any]]:
        if follow:  # rides over daemon restarts (client/resume.py)
            from extvisor.client.resume import follow_events

            return follow_events(self, tail)
        return self.lines(routes.EVENTS, {"follow": follow, "tail": tail})

    def stats(self) -> list[dict[str, Any]]:
        """Every service's CPU, memory, processes, restarts and uptime (``extvisor stats``)."""
        return self.call(routes.STATS_ALL)  # type: ignore[no-any-return]

    def processes(self, service_id: str | None = None) -> list[dict[str, Any]]:
        return self.call(routes.PROCESSES, {"service": service_id} if service_id else None)  # type: ignore[no-any-return]


def _check_request(route: Route, body: Any) -> None:
    """A body the route does not take is a mistake of ours: said before anything is sent."""
    if route.request is None:
        if body is not None:
            raise ValueError(f"{route.method} {route.path} takes no body")
    else:
        check(route.request, body, "request")


def parse_line(route: Route, line: bytes, target: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise ClientError(f"a line of {route.method} {target} is not JSON") from None


def checked(route: Route, answer: Any, target: str, error: type[Exception] = ClientError) -> Any:
    """*answer* when it has the route's shape; an *error* saying what is wrong otherwise."""
    try:
        check(route.answer, answer)
    except ShapeError as exc:
        raise error(f"unexpected answer to {route.method} {target}: {exc}") from None
    return answer
