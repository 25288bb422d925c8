"""The daemon's API as the dashboard uses it: async, over the Unix socket or a node's TLS.

Every failure to talk to the daemon (socket missing, connection refused, stream cut)
becomes :class:`Unreachable`, so the app has one thing to catch and show as a banner. Each
call names a route of ``extvisor.shared.routes``, and an answer not of the route's shape is
an :class:`ApiError` like any other the daemon gives.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from extvisor.client.http import checked
from extvisor.shared import defaults, routes
from extvisor.shared.routes import Route


class Unreachable(Exception):
    """The daemon did not answer (or stopped answering) on its socket."""


class ApiError(Exception):
    """The daemon answered with an error (unknown service...): its one-line detail."""


def _detail(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        detail = r.text
    return detail if isinstance(detail, str) else json.dumps(detail)


class Feed:
    def __init__(self, socket_path: str, timeout: float = defaults.DASHBOARD_TIMEOUT, http: httpx.AsyncClient | None = None):
        self.socket = socket_path
        self.remote = http is not None
        self._http = http or httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=socket_path), base_url="http://extvisor", timeout=timeout
        )

    @classmethod
    def node(cls, url: str, ssl_context: Any, timeout: float = defaults.DASHBOARD_TIMEOUT) -> Feed:
        """A remote node over mutual TLS; its certificate is checked against the name in *url*."""
        return cls(url, timeout, httpx.AsyncClient(base_url=url, verify=ssl_context, timeout=timeout))

    def _unreachable(self, exc: BaseException) -> Unreachable:
        if self.remote:
            from extvisor.remote.failures import describe

            cause: BaseException = exc
            seen = exc.__cause__ or exc.__context__
            while seen is not None:  # httpx wraps httpcore's error, which wraps the socket's: the deepest
                if isinstance(seen, OSError):
                    cause = seen
                seen = seen.__cause__ or seen.__context__
            if isinstance(exc, httpx.RemoteProtocolError):  # closed before answering: a refused certificate
                cause = ConnectionResetError()
            return Unreachable(describe(cause))
        return Unreachable(str(exc) or type(exc).__name__)

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, route: Route, params: dict[str, Any] | None = None, **path: str) -> Any:
        """Call *route* (path parameters as keywords); its answer, checked against the route's shape."""
        kw: dict[str, Any] = {"timeout": None} if route.waits else {}  # a stop answers once the service is down
        target = route.path_for(**path)
        try:
            r = await self._http.request(route.method, target, params=params, **kw)
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from None
        if r.status_code >= 400:
            raise ApiError(_detail(r))
        try:
            answer = r.json()
        except ValueError:
            raise ApiError(f"the answer to {route.method} {target} is not JSON") from None
        return _checked(route, answer, target)

    async def daemon(self) -> dict[str, Any]:
        return await self.call(routes.DAEMON)  # type: ignore[no-any-return]

    async def services(self) -> list[dict[str, Any]]:
        return await self.call(routes.SERVICES)  # type: ignore[no-any-return]

    async def service(self, service_id: str) -> dict[str, Any]:
        return await self.call(routes.SERVICE_ONE, service_id=service_id)  # type: ignore[no-any-return]

    async def action(self, service_id: str, action: str) -> str:
        """start, stop or restart: the daemon's message."""
        result = await self.call(routes.ACTION, service_id=service_id, action=action)
        return str(result["message"])

    @asynccontextmanager
    async def _stream(self, route: Route, params: dict[str, Any], **path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """The response body as it arrives; entered once the daemon has answered (headers)."""
        timeout = httpx.Timeout(defaults.DASHBOARD_TIMEOUT, read=None)
        try:
            async with self._http.stream(route.method, route.path_for(**path), params=params, timeout=timeout) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise ApiError(_detail(r))
                yield r.aiter_raw()
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from None

    @asynccontextmanager
    async def events(self) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Every service's state changes from now on. The daemon subscribes before it
        answers, so a snapshot read after entering misses nothing."""
        async with self._stream(routes.EVENTS, {"follow": "true", "tail": 0}) as chunks:
            yield _ndjson(routes.EVENTS, routes.EVENTS.path, chunks)

    @asynccontextmanager
    async def logs(self, service_id: str, tail: int) -> AsyncIterator[AsyncIterator[list[str]]]:
        """The last *tail* lines of a service's log, then its new lines, in batches."""
        params = {"follow": "true", "tail": tail}
        async with self._stream(routes.LOGS, params, service_id=service_id) as chunks:
            yield _lines(chunks)


def _checked(route: Route, answer: Any, target: str) -> Any:
    return checked(route, answer, target, ApiError)


async def _ndjson(route: Route, target: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    async for lines in _lines(chunks):
        for line in lines:
            if line.strip():
                try:
                    item = json.loads(line)
                except ValueError:
                    raise ApiError(f"a line of {route.method} {target} is not JSON") from None
                yield _checked(route, item, target)


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[str]]:
    """Complete lines, decoded; a multi-byte character or a line split across chunks waits for the rest."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    partial = ""
    async for chunk in chunks:
        text = partial + decoder.decode(chunk)
        *lines, partial = text.split("\n")
        if lines:
            yield lines
