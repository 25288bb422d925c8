"""HTTP/1.1 requests over a Unix socket or TCP (with TLS), standard library only.

Why not httpx here: importing it takes about 0.15 s, ten times a bare interpreter, and the
CLI pays that on every call (docs/performance.md). ``http.client`` imports ``ssl`` even for a
Unix socket. What the daemon's API needs is small: one request per connection
(``Connection: close``), a body sized by ``Content-Length`` or sent chunked (the streams),
JSON in and out. ``ssl`` is imported only when a TLS node is reached.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import IO, Any

from extvisor.shared import defaults

MAX_LINE = 65536  #: longest status or header line accepted
MAX_HEADERS = 100


class WireError(Exception):
    """The peer answered something that is not HTTP/1.1 as the API speaks it."""


class Address:
    """Where a daemon listens: a Unix socket path, or host and port (TLS when ``ssl`` is set)."""

    def __init__(self, unix: str | None = None, host: str = "", port: int = 0, ssl: Any = None,
                 server_hostname: str | None = None):
        self.unix = unix
        self.host = host
        self.port = port
        self.ssl = ssl  #: an ssl.SSLContext for TCP
        self.server_hostname = server_hostname

    def __repr__(self) -> str:
        return f"Address({str(self)!r}, tls={self.ssl is not None})"

    def __str__(self) -> str:
        if self.unix is not None:
            return self.unix
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Response:
    """Status, headers and a body that is read as it arrives."""

    def __init__(self, sock: socket.socket, reader: IO[bytes]):
        self._sock = sock
        self._reader = reader
        self.status, self.reason = self._status_line()
        self.headers = self._headers()

    def _line(self) -> bytes:
        line = self._reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise WireError("header line too long")
        return line

    def _status_line(self) -> tuple[int, str]:
        line = self._line()
        if not line:
            raise WireError("the server closed the connection without answering")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise WireError(f"not an HTTP answer: {line[:80]!r}")
        return int(parts[1]), parts[2] if len(parts) > 2 else ""

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                return headers
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raise WireError("too many headers")

    def iter_raw(self) -> Iterator[bytes]:
        """The body as it comes, de-chunked."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self._line()
                if not size_line:
                    raise WireError("the stream ended in the middle of a chunk")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    return
                data = self._reader.read(size)
                if len(data) < size:
                    raise WireError("the stream ended in the middle of a chunk")
                self._reader.read(2)  # CRLF after the chunk
                yield data
        elif "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left > 0:
                data = self._reader.read1(min(left, 65536))  # type: ignore[attr-defined]
                if not data:
                    raise WireError("the answer ended early")
                left -= len(data)
                yield data
        else:
            while data := self._reader.read1(65536):  # type: ignore[attr-defined]
                yield data

    def read(self) -> bytes:
        return b"".join(self.iter_raw())

    def json(self) -> Any:
        return json.loads(self.read() or b"null")

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self._sock.close()


def connect(address: Address, timeout: float | None) -> socket.socket:
    if address.unix is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.unix)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    if address.ssl is not None:
        try:
            sock = address.ssl.wrap_socket(sock, server_hostname=address.server_hostname or address.host)
        except BaseException:
            sock.close()
            raise
    return sock


def request(
    address: Address,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    body: Any = None,
    timeout: float | None = defaults.CLIENT_TIMEOUT,
    read_timeout: float | None = ...,  # type: ignore[assignment]
) -> Response:
    """Send one request and read the status and headers; the body is read by the caller.

    *timeout* bounds connecting and the wait for the answer; *read_timeout* (default: the
    same) bounds each read of the body afterwards, ``None`` for a stream that may idle.
    """
    target = _quote(path, "/")
    if params:
        target += "?" + "&".join(f"{_quote(k)}={_quote(_param(v))}" for k, v in params.items())
    payload = b"" if body is None else json.dumps(body).encode()
    host = "extvisor" if address.unix is not None else str(address)
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", "Accept: application/json"]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    sock = connect(address, timeout)
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        reader = sock.makefile("rb")
        response = Response(sock, reader)
        sock.settimeout(timeout if read_timeout is ... else read_timeout)
        return response
    except BaseException:
        sock.close()
        raise


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _quote(text: str, safe: str = "") -> str:
    """Percent-encoding as urllib.parse.quote does it (urllib costs a CLI call more than this)."""
    keep = _SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode())


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
