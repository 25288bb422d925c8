"""A small client of the daemon's API, for the CLI, the dashboard and scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

DEFAULT_SOCKET = "/run/extvisor/extvisor.sock"
SOCKET_ENV = "EXTVISOR_SOCKET"


class ClientError(Exception):
    """A one-line error for the operator: daemon not running, unknown service..."""


def default_socket() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


class Client:
    def __init__(self, socket_path: str | None = None, timeout: float = 30.0):
        self.socket = socket_path or default_socket()
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=self.socket), base_url="http://extvisor", timeout=timeout
        )

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise ClientError(f"cannot reach the extvisor daemon at {self.socket} ({exc}); is `extvisor daemon` running?") from None
        except httpx.TimeoutException:
            raise ClientError(f"the extvisor daemon at {self.socket} did not answer in time") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ClientError(detail if isinstance(detail, str) else json.dumps(detail))
        return r.json()

    def daemon(self) -> dict[str, Any]:
        return self._request("GET", "/v1/daemon")

    def services(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/services")

    def service(self, service_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/services/{service_id}")

    def action(self, service_id: str, action: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/services/{service_id}/{action}", timeout=None)

    def _stream(self, path: str, params: dict[str, Any]) -> Iterator[bytes]:
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ClientError(r.json().get("detail", r.text))
                yield from r.iter_raw()
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise ClientError(f"cannot reach the extvisor daemon at {self.socket} ({exc}); is `extvisor daemon` running?") from None
        except httpx.RemoteProtocolError:
            raise ClientError("the extvisor daemon closed the stream (did it stop?)") from None

    def logs(self, service_id: str, tail: int = -1, follow: bool = False) -> Iterator[bytes]:
        return self._stream(f"/v1/services/{service_id}/logs", {"tail": tail, "follow": follow})

    def events(self, follow: bool = True, tail: int = 0) -> Iterator[dict[str, Any]]:
        buf = b""
        for chunk in self._stream("/v1/events", {"follow": follow, "tail": tail}):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)

    def stats(self) -> list[dict[str, Any]]:
        """Every service's CPU, memory, processes, restarts and uptime (``extvisor stats``)."""
        return self._request("GET", "/v1/stats")

    def stats_history(self, points: int = 60) -> dict[str, Any]:
        return self._request("GET", "/v1/stats/history", params={"points": points})

    def processes(self, service_id: str | None = None) -> list[dict[str, Any]]:
        params = {"service": service_id} if service_id else None
        return self._request("GET", "/v1/stats/processes", params=params)

    def host(self) -> dict[str, Any]:
        return self._request("GET", "/v1/stats/host")
