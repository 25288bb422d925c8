"""The daemon's API as the dashboard uses it: async, over the Unix socket or a node's TLS.

Every failure to talk to the daemon (socket missing, connection refused, stream cut)
becomes :class:`Unreachable`, so the app has one thing to catch and show as a banner.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx


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
    def __init__(self, socket_path: str, timeout: float = 10.0, http: httpx.AsyncClient | None = None):
        self.socket = socket_path
        self.remote = http is not None
        self._http = http or httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=socket_path), base_url="http://extvisor", timeout=timeout
        )

    @classmethod
    def node(cls, url: str, ssl_context: Any, timeout: float = 10.0) -> Feed:
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

    async def _get(self, path: str, **kw: Any) -> Any:
        return await self._request("GET", path, **kw)

    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = await self._http.request(method, path, **kw)
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from None
        if r.status_code >= 400:
            raise ApiError(_detail(r))
        return r.json()

    async def daemon(self) -> dict[str, Any]:
        return await self._get("/v1/daemon")

    async def services(self) -> list[dict[str, Any]]:
        return await self._get("/v1/services")

    async def service(self, service_id: str) -> dict[str, Any]:
        return await self._get(f"/v1/services/{service_id}")

    async def action(self, service_id: str, action: str) -> str:
        """start, stop or restart; stop answers once the service is down, so no timeout."""
        result = await self._request("POST", f"/v1/services/{service_id}/{action}", timeout=None)
        return str(result.get("message", f"{action}: done"))

    @asynccontextmanager
    async def _stream(self, path: str, params: dict[str, Any]) -> AsyncIterator[AsyncIterator[bytes]]:
        """The response body as it arrives; entered once the daemon has answered (headers)."""
        try:
            async with self._http.stream("GET", path, params=params, timeout=httpx.Timeout(10.0, read=None)) as r:
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
        async with self._stream("/v1/events", {"follow": "true", "tail": 0}) as chunks:
            yield _ndjson(chunks)

    @asynccontextmanager
    async def logs(self, service_id: str, tail: int) -> AsyncIterator[AsyncIterator[list[str]]]:
        """The last *tail* lines of a service's log, then its new lines, in batches."""
        params = {"follow": "true", "tail": tail}
        async with self._stream(f"/v1/services/{service_id}/logs", params) as chunks:
            yield _lines(chunks)


async def _ndjson(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    async for lines in _lines(chunks):
        for line in lines:
            if line.strip():
                yield json.loads(line)


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[str]]:
    """Complete lines, decoded; a multi-byte character or a line split across chunks waits for the rest."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    partial = ""
    async for chunk in chunks:
        text = partial + decoder.decode(chunk)
        *lines, partial = text.split("\n")
        if lines:
            yield lines
