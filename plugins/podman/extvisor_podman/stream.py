"""A container's output, from podman's attach stream into the service's log sink.

Why attach and not ``logs(follow=True)``: with podman 4.3 a followed k8s-file log skipped
thousands of lines of a fast writer (seen here: 24936 of 40001). The attach stream,
opened before the container starts, delivered every byte in every run.

conmon reads stdout and stderr from two pipes, so podman reports them as separate
frames; lines written to both within the same instant can come in either order. Each
stream is cut at line ends so that a line is never split by a line of the other stream.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from typing import Any

log = logging.getLogger("extvisor.podman")

MAX_PARTIAL = 64 * 1024  # a longer line without a newline is written in pieces
DRAIN_TIMEOUT = 10.0  # after the exit, how long the stream may take to end


class LogPump:
    """Reads the attach stream in a thread; writes complete lines to *sink* on the event loop."""

    def __init__(self, sink: Any, name: str) -> None:
        self.sink = sink
        self.name = name
        self.loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self.loop.create_future()
        self._resp: Any = None
        self._started = False

    def start(self, resp: Any) -> None:
        self._resp = resp
        self._started = True
        threading.Thread(target=self._run, name=f"podman-log-{self.name}", daemon=True).start()

    async def drained(self) -> None:
        """Return once every byte has been written to the sink (or there was no stream)."""
        if not self._started:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._done), DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("%s: the output stream did not end %gs after the exit; closed", self.name, DRAIN_TIMEOUT)
            self._resp.close()
            await asyncio.shield(self._done)

    def _emit(self, data: bytes) -> None:
        try:
            self.loop.call_soon_threadsafe(self.sink.write, data)
        except RuntimeError:  # the loop is closed: the daemon is gone
            pass

    def _run(self) -> None:
        partial = {1: b"", 2: b""}
        try:
            for kind, payload in _frames(self._resp.raw):
                data = partial.get(kind, b"") + payload
                cut = data.rfind(b"\n") + 1
                if len(data) - cut > MAX_PARTIAL:
                    cut = len(data)
                if cut:
                    self._emit(data[:cut])
                partial[kind] = data[cut:]
        except Exception as exc:  # a closed connection ends the stream like EOF
            log.debug("%s: output stream ended: %r", self.name, exc)
        finally:
            for rest in partial.values():
                if rest:
                    self._emit(rest)
            try:
                self._resp.close()
            except Exception:
                pass
            try:
                self.loop.call_soon_threadsafe(lambda: self._done.done() or self._done.set_result(None))
            except RuntimeError:
                pass


def _read_exact(raw: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = raw.read(n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf


def _frames(raw: Any):  # type: ignore[no-untyped-def]
    """Docker's multiplexed stream: 8-byte header (stream, 0, 0, 0, big-endian length), then data."""
    while True:
        header = _read_exact(raw, 8)
        if len(header) < 8:
            return
        kind, length = struct.unpack(">BxxxL", header)
        payload = _read_exact(raw, length)
        if payload:
            yield kind, payload
        if len(payload) < length:
            return
