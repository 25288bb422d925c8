"""A runc container's output, read from the file the monitor appends it to, from where the
last reader stopped.

The monitor writes every byte of the container's pipe to ``<service state dir>/runc-output``
at once. The daemon reads it on at each ``out`` from the monitor and, after handing a chunk to
the service log, records how far it got in ``runc-output.pos`` (one fixed-size ``pwrite``:
the init's PID and the offset). A new daemon reads on from there: nothing missed, nothing
repeated (a kill between the log's write and that ``pwrite`` repeats the one chunk, as the
podman backend's reader does). What has been read is given back to the filesystem by
punching holes (``FALLOC_FL_PUNCH_HOLE``): the file keeps its offsets, not its blocks.
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


def load_position(state_dir: Path) -> tuple[int, int] | None:
    """(init PID, offset) recorded by the last reader, or None."""
    try:
        pid, offset = (int(f) for f in (state_dir / POSITION).read_text().split())
    except (OSError, ValueError):
        return None
    return pid, offset


class OutputTail:
    def __init__(self, sink: LogSink, name: str, state_dir: Path, pid: int, offset: int = 0) -> None:
        self.sink = sink
        self.name = name
        self.pid = pid
        self.offset = offset
        self._punched = offset - offset % PUNCH_EVERY
        self._failed = False
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

    def _save(self) -> None:
        try:
            os.pwrite(self._pos, f"{self.pid:10d} {self.offset:20d}\n".encode(), 0)
        except OSError as exc:
            log.warning("%s: cannot record its output position: %s", self.name, exc)

    def close(self) -> None:
        for name in ("_fd", "_pos"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
