"""A small client of the daemon's API, for the CLI and scripts (the dashboard has an async one).

It speaks to one daemon, through its Unix socket or over TCP with TLS (:class:`Address`),
with the standard library only (``wire``), so that a CLI call costs little more than the
interpreter's start.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

from extvisor.client.wire import Address, Response, WireError, request

DEFAULT_SOCKET = "/run/extvisor/extvisor.sock"
SOCKET_ENV = "EXTVISOR_SOCKET"


class ClientError(Exception):
    """A one-line error for the operator: daemon not running, unknown service..."""


def default_socket() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


class Client:
    def __init__(self, socket_path: str | None = None, timeout: float = 30.0, address: Address | None = None):
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
        try:
            response = request(self.address, method, path, params, body, timeout, read_timeout)
        except (socket.timeout, TimeoutError):
            raise ClientError(f"the extvisor daemon at {self.socket} did not answer in time") from None
        except (OSError, WireError) as exc:  # refused, missing socket, TLS refused, reset
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
        """One call; its JSON answer. An HTTP error becomes a :class:`ClientError` with the API's detail."""
        response = self._open(method, path, params, body, self.timeout if timeout is ... else timeout)
        try:
            return response.json()
        except (socket.timeout, TimeoutError):
            raise ClientError(f"the extvisor daemon at {self.socket} did not answer in time") from None
        except (OSError, WireError, ValueError) as exc:
            raise self._unreachable(exc) from None
        finally:
            response.close()

    _request = request

    def stream(self, path: str, params: dict[str, Any] | None = None) -> Iterator[bytes]:
        """A streaming answer (logs, events), chunk by chunk, for as long as the daemon sends it."""
        response = self._open("GET", path, params, None, self.timeout, read_timeout=None)
        try:
            yield from response.iter_raw()
        except (OSError, WireError):
            raise ClientError("the extvisor daemon closed the stream (did it stop?)") from None
        finally:
            response.close()

    _stream = stream

    def daemon(self) -> dict[str, Any]:
        return self.request("GET", "/v1/daemon")

    def services(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/services")

    def service(self, service_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/services/{service_id}")

    def action(self, service_id: str, action: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/services/{service_id}/{action}", timeout=None)

    def logs(self, service_id: str, tail: int = -1, follow: bool = False) -> Iterator[bytes]:
        return self.stream(f"/v1/services/{service_id}/logs", {"tail": tail, "follow": follow})

    def events(self, follow: bool = True, tail: int = 0) -> Iterator[dict[str, Any]]:
        buf = b""
        for chunk in self.stream("/v1/events", {"follow": follow, "tail": tail}):
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
