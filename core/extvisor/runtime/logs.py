"""One log file per service, rotated by size, that readers can tail and follow.

Every byte a container writes is appended to ``<log-dir>/<id>.log`` straight away, so
nothing is lost however fast it writes; complete lines are also handed to the
``extvisor_log_lines`` hook (``logToConsole`` uses it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3


class ServiceLog:
    def __init__(
        self,
        path: Path,
        on_lines: Callable[[list[bytes]], None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._on_lines = on_lines
        self._partial = b""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = os.fstat(self._fd).st_size
        self.written = 0  #: bytes written since the daemon started (the log_bytes metric)
        self._generation = 0  # bumped at each rotation, so followers switch files
        self._changed = asyncio.Event()

    def write(self, data: bytes) -> None:
        if not data:
            return
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self.written += len(data)
        if self._on_lines is not None:
            buf = self._partial + data
            cut = buf.rfind(b"\n") + 1
            self._partial = buf[cut:]
            if cut:
                self._on_lines(buf[:cut].splitlines(keepends=True))
        if self._size >= self.max_bytes:
            self._rotate()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _rotate(self) -> None:
        os.close(self._fd)
        for i in range(self.backups - 1, 0, -1):
            older = self._backup(i)
            if older.exists():
                older.replace(self._backup(i + 1))
        if self.backups > 0:
            self.path.replace(self._backup(1))
        else:
            self.path.unlink(missing_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = 0
        self._generation += 1

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def close(self) -> None:
        if self._partial and self._on_lines is not None:
            self._on_lines([self._partial])
            self._partial = b""
        os.close(self._fd)
        self._wake()

    # -- reading ---------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Oldest first: the rotated backups that exist, then the current file."""
        olds = [self._backup(i) for i in range(self.backups, 0, -1)]
        return [p for p in olds if p.exists()] + [self.path]

    def tail_offset(self, lines: int) -> tuple[int, int]:
        """(index into files(), byte offset) where the last *lines* lines start."""
        files = self.files()
        if lines < 0:
            return 0, 0
        need = lines
        for idx in range(len(files) - 1, -1, -1):
            data = files[idx].read_bytes() if files[idx].exists() else b""
            end = len(data)
            if data.endswith(b"\n"):
                end -= 1  # a final newline closes the last line, it does not start one
            pos = end
            while need > 0:
                nl = data.rfind(b"\n", 0, pos)
                if nl < 0:
                    break
                need -= 1
                pos = nl
                if need == 0:
                    return idx, nl + 1
            if need == 0:
                return idx, pos
            if data:
                need -= 1  # the first line of this file
            if need <= 0:
                return idx, 0
        return 0, 0

    async def read(self, tail: int = -1, follow: bool = False) -> AsyncIterator[bytes]:
        """Yield the log from *tail* lines back (-1: all kept), then, with *follow*, new data."""
        if tail == 0:
            files, start_idx, offset = self.files(), len(self.files()) - 1, self.path.stat().st_size
        else:
            files = self.files()
            start_idx, offset = self.tail_offset(tail)
        for i, path in enumerate(files[start_idx:-1], start=start_idx):
            with open(path, "rb") as f:
                f.seek(offset if i == start_idx else 0)
                while chunk := f.read(65536):
                    yield chunk
            offset = 0
        if start_idx != len(files) - 1:
            offset = 0
        f = open(self.path, "rb")
        try:
            f.seek(offset)
            generation = self._generation
            while True:
                changed = self._changed
                chunk = f.read(65536)
                if chunk:
                    yield chunk
                    continue
                if generation != self._generation:  # rotated: the rest went to the new file
                    f.close()
                    f = open(self.path, "rb")
                    generation = self._generation
                    continue
                if not follow:
                    return
                await changed.wait()
        finally:
            f.close()
