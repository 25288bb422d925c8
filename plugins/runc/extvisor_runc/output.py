"""A runc container's output, read from the file the monitor appends it to, from where the
last reader stopped.

The monitor writes every byte of the container's pipe to ``<service state dir>/runc-output``
at once. The daemon reads it on at each ``out`` from the monitor and records how far it got
in ``runc-output.pos``, one fixed-size ``pwrite`` before and one after handing each chunk to
the service log: before, the chunk in flight and the service log's file (inode) and size;
after, the new offset. A new daemon reads on from there, and for a chunk left in flight (a
kill in between) it looks whether the service log grew by it: nothing missed, nothing
repeated. What has been read is given back to the filesystem by punching holes
(``FALLOC_FL_PUNCH_HOLE``): the file keeps its offsets, not its blocks.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from extvisor.protocols import LogSink

log = logging.getLogger("extvisor.runc")

OUTPUT, POSITION, EXIT = "runc-output", "runc-output.pos", "runc-exit.json"
READ = 1 << 18
PUNCH_EVERY = 4 << 20
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def load_position(state_dir: Path, log_path: Path | None = None) -> tuple[int, int] | None:
    """(init PID, offset) where the last reader stopped, or None. A chunk it left in flight
    counts as read if the service log at *log_path* grew by it."""
    try:
        pid, offset, pending, ino, size = (int(f) for f in (state_dir / POSITION).read_text().split())
    except (OSError, ValueError):
        return None
    if pending > offset and log_path is not None and _written(log_path, ino, size, pending - offset):
        offset = pending
    return pid, offset


def _written(log_path: Path, ino: int, size: int, n: int) -> bool:
    """Did the service log (inode *ino*, *size* bytes before) take the *n* bytes in flight?"""
    if ino == 0:  # its file could not be looked at then: read the chunk again rather than skip it
        return False
    try:
        current = os.stat(log_path)
    except OSError:
        return False
    if current.st_ino == ino:
        return current.st_size >= size + n
    try:  # rotated after the write: the chunk ends the old file, now the first backup
        old = os.stat(f"{log_path}.1")
        if old.st_ino == ino:
            return old.st_size >= size + n
    except OSError:
        pass
    return current.st_size >= n  # the old file is gone (rotated away): the new one began with it


class OutputTail:
    def __init__(self, sink: LogSink, name: str, state_dir: Path, pid: int, offset: int = 0) -> None:
        self.sink = sink
        self.name = name
        self.pid = pid
        self.offset = offset
        self._punched = offset - offset % PUNCH_EVERY
        self._failed = False
        path = getattr(sink, "path", None)  # a ServiceLog's file: where a chunk in flight would be
        self._log_path = path if isinstance(path, Path) else None
        self._fd = os.open(state_dir / OUTPUT, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._pos = os.open(state_dir / POSITION, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            os.close(self._fd)
            raise
        self._save()

    def read(self, limit: int = 1 << 30) -> int:
        """Hand everything appended since the last read to the sink; return the bytes read."""
        total = 0
        while self._fd >= 0 and total < limit:
            try:
                data = os.pread(self._fd, READ, self.offset)
            except OSError as exc:
                log.warning("%s: reading its output failed: %s", self.name, exc)
                break
            if not data:
                break
            self._save(len(data))
            try:
                self.sink.write(data)
            except Exception:  # a broken sink must not stop the container or the loop
                if not self._failed:
                    log.exception("%s: log sink failed; output dropped", self.name)
                self._failed = True
            self.offset += len(data)
            total += len(data)
            self._save()
            if len(data) < READ:
                break
        if self.offset - self._punched >= PUNCH_EVERY:
            end = self.offset - self.offset % 4096
            if _libc.fallocate(self._fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, end) == 0:
                self._punched = end
            else:  # a filesystem without holes: the file keeps its size until the container goes
                self._punched = self.offset
        return total

    def _save(self, in_flight: int = 0) -> None:
        ino = size = 0
        if in_flight and self._log_path is not None:
            try:
                st = os.stat(self._log_path)
                ino, size = st.st_ino, st.st_size
            except OSError:
                pass
        record = f"{self.pid:10d} {self.offset:20d} {self.offset + in_flight:20d} {ino:20d} {size:20d}\n"
        try:
            os.pwrite(self._pos, record.encode(), 0)
        except OSError as exc:
            log.warning("%s: cannot record its output position: %s", self.name, exc)

    def close(self) -> None:
        for name in ("_fd", "_pos"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
