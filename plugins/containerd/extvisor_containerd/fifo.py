"""The FIFO a container's stdout and stderr go through, read on the event loop.

The shim opens the FIFO for writing when the task is created. Our end is opened first,
non-blocking, and only read when the loop says it is readable: Linux reports nothing on
a FIFO no writer has opened yet, so an early read cannot mistake "no writer yet" for
end of file (a reader that did so would close, and the shim's blocking open would hang
Tasks.Create until its deadline). Readable with b'' after a writer came = end of file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path
from typing import Protocol

CHUNK = 65536


class LogSink(Protocol):
    def write(self, data: bytes) -> None: ...


class FifoReader:
    """Create the FIFO at *path* and copy everything written to it into *sink*."""

    def __init__(self, path: Path, sink: LogSink, reopen: bool = False) -> None:
        """With *reopen*, read the FIFO an earlier daemon made, where it stopped: the shim
        keeps a read end of its own, so what was written meanwhile waits in the FIFO."""
        self.path = path
        self.sink = sink
        if not reopen:
            remove_fifo(path)  # a stale one from a crashed run
            os.mkfifo(path, 0o600)
        elif not stat.S_ISFIFO(os.lstat(path).st_mode):
            raise FileNotFoundError(f"{path} is not a FIFO")
        self.fd: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.loop = asyncio.get_running_loop()
        self.eof = self.loop.create_future()
        self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # should not happen; end the stream rather than spin
            self._finish(exc)
            return
        if data:
            self.sink.write(data)
        else:
            self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        self._detach()
        if not self.eof.done():
            if exc is None:
                self.eof.set_result(None)
            else:
                self.eof.set_exception(exc)

    def _detach(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None

    async def drained(self, timeout: float) -> bool:
        """Wait until every writer has closed the FIFO (the container ended)."""
        try:
            await asyncio.wait_for(asyncio.shield(self.eof), timeout)
            return True
        except TimeoutError:
            return False

    def detach(self) -> None:
        """Stop reading and leave the FIFO where it is, for the next daemon to reopen."""
        self._detach()

    def close(self) -> None:
        """Read what is left without blocking, stop reading, remove the FIFO."""
        while self.fd is not None:
            try:
                data = os.read(self.fd, CHUNK)
            except OSError:
                break
            if not data:
                break
            self.sink.write(data)
        self._detach()
        if not self.eof.done():
            self.eof.set_result(None)
        remove_fifo(self.path)


def remove_fifo(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            os.unlink(path)
