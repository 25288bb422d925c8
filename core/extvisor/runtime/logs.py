"""One log file per service, rotated by size, that readers can tail and follow.

Every byte a container writes is appended to ``<log-dir>/<id>.log`` straight away, so
nothing is lost however fast it writes; complete lines are also handed to the
``extvisor_log_lines`` hook (``logToConsole`` uses it).

What the disk or an operator may do is survived and said (``on_problem``): a write that
fails (a full disk) drops that output and is reported once, with the amount dropped when
writes work again; a log file deleted under us is recreated and its loss reported. The
descriptor is replaced only after its successor is open, and never used once closed:
a closed number may already belong to another file.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from extvisor.runtime.logread import tail_start
from extvisor.shared import defaults

DEFAULT_MAX_BYTES = defaults.LOG_MAX_BYTES
DEFAULT_BACKUPS = defaults.LOG_BACKUPS
CHUNK = 65536
_INLINE = 1 << 20  # a reader this close to the end reads in the loop; further back, in a thread
# One thread for every far read of every log: readers queue there in turn (each has one read
# outstanding at most), and twenty huge tails keep one core busy at most, not the event loop's.
_READS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="extvisor-log-read")

log = logging.getLogger("extvisor.logs")
T = TypeVar("T")


class ServiceLog:
    def __init__(
        self,
        path: Path,
        on_lines: Callable[[list[bytes]], None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        on_problem: Callable[[str], None] | None = None,
    ):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._on_lines = on_lines
        self._on_problem = on_problem
        self._partial = b""
        self._fd: int | None = None
        self._size = 0
        self.written = 0  #: bytes written since the daemon started (the log_bytes metric)
        self.dropped = 0  #: bytes that could not be written (full disk...) since the daemon started
        self._failing: str | None = None  # the error of the write failure in progress
        self._dropped_now = 0
        self._generation = 0  # bumped at each new file (rotation, recreation): followers switch
        self._history: deque[tuple[int, int, int]] = deque(maxlen=256)  # (generation, bytes, lines) per old file
        self._gen_lines = 0
        self._gens = [0]  # the generation in the current file, .1, .2...: what a follower can still open
        self._changed = asyncio.Event()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._open_new()
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:  # the service still runs; its output is dropped and said so
            self._fail(exc)
        # Backups an earlier daemon rotated are readable too (older generations: -1, -2...), so
        # a reader resuming after a restart goes on through them.
        kept = 0
        while kept < backups and os.path.lexists(self._backup(kept + 1)):
            kept += 1
        self._gens = [0, *range(-1, -kept - 1, -1)]

    # -- writing -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._check_file()
        self._store(data)
        if self._on_lines is not None:
            buf = self._partial + data
            cut = buf.rfind(b"\n") + 1
            self._partial = buf[cut:]
            if cut:
                self._on_lines(buf[:cut].splitlines(keepends=True))
        if self._size >= self.max_bytes:
            self._rotate()
        self._wake()

    def _store(self, data: bytes) -> None:
        if self._fd is None:
            self._drop(len(data))
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                self._size += n
                self.written += n
                view = view[n:]
        except OSError as exc:
            self._fail(exc)
            self._drop(len(view))
            self._size = _fsize(self._fd, self._size)  # what really is in the file, for rotation
            return
        finally:
            self._gen_lines += data.count(b"\n", 0, len(data) - len(view))
        if self._failing is not None:
            self._say(f"Log writes resumed after {self._failing}; {self._dropped_now} bytes of output were dropped")
            self._failing, self._dropped_now = None, 0

    def _drop(self, n: int) -> None:
        self.dropped += n
        self._dropped_now += n

    def _fail(self, exc: OSError) -> None:
        if self._failing is None:
            self._failing = exc.strerror or str(exc)
            self._say(f"Log write to {self.path} failed: {self._failing}; output is dropped until it works again")

    def _say(self, msg: str) -> None:
        if self._on_problem is not None:
            try:
                self._on_problem(msg)
            except Exception:
                log.exception("reporting a log problem failed")
        else:
            log.warning("%s", msg)

    def _check_file(self) -> None:
        """Recreate the log file if it was deleted (or never created) under us."""
        if self._fd is not None:
            try:
                if os.fstat(self._fd).st_nlink > 0:
                    return
            except OSError:
                pass
            lost = self._size
        else:
            lost = 0
        try:
            fd = self._open_new()
        except OSError as exc:
            self._fail(exc)
            return
        self._retire(fd, os.fstat(fd).st_size)
        if lost:
            self._say(f"Log file {self.path} was deleted; its {lost} bytes are lost; recreated")

    def ensure_open(self) -> None:
        """Raise OSError (``error creating log: ...``) when the log file cannot be opened."""
        if self._fd is None:
            try:
                fd = self._open_new()
            except OSError as exc:
                raise OSError(exc.errno, f"error creating log: {exc.strerror}: {self.path}") from None
            self._retire(fd, os.fstat(fd).st_size)

    def _open_new(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def _retire(self, fd: int, size: int, rotated: bool = False) -> None:
        """Make *fd* the file written to; the old descriptor is closed only now."""
        old = self._fd
        self._history.append((self._generation, self._size, self._gen_lines))
        self._fd, self._size, self._gen_lines = fd, size, 0
        self._generation += 1
        if rotated:
            self._gens = [self._generation, *self._gens][: self.backups + 1]
        else:  # recreated: the old file is gone, the backups stay where they are
            self._gens[0] = self._generation
        if old is not None:
            os.close(old)

    def _rotate(self) -> None:
        # The new file is made first under a temporary name: if that fails (full disk),
        # nothing was renamed and writing goes on in the current file.
        fresh = self.path.with_name(self.path.name + ".new")
        try:
            fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            self._fail(exc)
            return
        try:
            for i in range(self.backups - 1, 0, -1):
                older = self._backup(i)
                if older.exists():
                    older.replace(self._backup(i + 1))
            if self.backups > 0:
                try:
                    self.path.replace(self._backup(1))
                except FileNotFoundError:
                    pass  # deleted under us: the fresh file takes its place all the same
            fresh.replace(self.path)
        except OSError as exc:
            os.close(fd)
            fresh.unlink(missing_ok=True)
            self._fail(exc)
            return
        self._retire(fd, 0, rotated=True)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def close(self) -> None:
        if self._partial and self._on_lines is not None:
            self._on_lines([self._partial])
            self._partial = b""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._wake()

    # -- reading ---------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Oldest first: the rotated backups, then the current file; those that exist."""
        paths = [self._backup(i) for i in range(self.backups, 0, -1)] + [self.path]
        return [p for p in paths if p.exists()]

    def exists(self) -> bool:
        return bool(self.files())

    def _open_generations(self) -> list[tuple[int, BinaryIO]]:
        """Open every kept file now, oldest first (no rotation can happen meanwhile: it runs in this loop)."""
        out = []
        for i in range(len(self._gens) - 1, -1, -1):
            try:
                out.append((self._gens[i], open(self._backup(i) if i else self.path, "rb")))
            except OSError:
                continue
        return out

    def _open_generation(self, generation: int) -> BinaryIO | None:
        if generation not in self._gens:
            return None
        i = self._gens.index(generation)
        try:
            return open(self._backup(i) if i else self.path, "rb")
        except OSError:
            return None

    def _skipped(self, first: int, last: int) -> tuple[int, int]:
        """(bytes, lines) of the files of generations first..last, which are gone."""
        size = lines = 0
        for gen, b, n in self._history:
            if first <= gen <= last:
                size, lines = size + b, lines + n
        return size, lines

    def _next_file(self, gen: int) -> tuple[int, BinaryIO | None, bytes]:
        """The oldest file newer than generation *gen* that can be opened, and a marker if some were missed."""
        for g in range(gen + 1, self._generation + 1):
            f = self._open_generation(g)
            if f is not None:
                break
        else:
            g, f = self._generation + 1, None
        marker = b""
        if g - 1 >= gen + 1:
            size, lines = self._skipped(gen + 1, g - 1)
            if size:
                marker = (f"\n[extvisor: {lines} lines ({size} bytes) skipped: this reader fell behind "
                          "log rotation]\n").encode()
        return (g if f is not None else self._generation), f, marker

    async def locate(self, tail: int = -1) -> tuple[int, int] | None:
        """Where a read of the last *tail* lines starts: (inode of the file, offset), or None
        (no file yet). A reader that counts the bytes it got resumes with ``since`` (a daemon
        restart): the position outlives the daemon, rotations included."""
        opened = self._open_generations()
        try:
            if not opened:
                return None
            files = [o for _, o in opened]
            index, offset = (len(files) - 1, _fsize(files[-1].fileno(), 0)) if tail == 0 else \
                await asyncio.to_thread(tail_start, files, tail)
            return os.fstat(files[index].fileno()).st_ino, offset
        finally:
            for _, f in opened:
                f.close()

    async def read(self, tail: int = -1, follow: bool = False, since: tuple[int, int] | None = None
                   ) -> AsyncIterator[bytes]:  # fmt: skip
        """Yield the log from *tail* lines back (-1: all kept), then, with *follow*, new data.
        With *since* (a position from :meth:`locate` plus the bytes read from there), from there.

        A follower that falls so far behind that files it had not read were rotated away
        gets a line saying how much it missed, then goes on with what is kept.
        """
        opened = self._open_generations()
        f: BinaryIO | None = None
        try:
            if not opened:
                gen = self._generation
            else:
                if since is not None:
                    index, offset, marker = _resume([o for _, o in opened], *since)
                    if marker:
                        yield marker
                elif tail == 0:
                    index, offset = len(opened) - 1, None
                else:
                    index, offset = await _in_reader(tail_start, [o for _, o in opened], tail)
                for _, old in opened[:index]:
                    old.close()
                opened = opened[index:]
                gen, f = opened.pop(0)
                f.seek(0, os.SEEK_END) if offset is None else f.seek(offset)
            while True:
                changed = self._changed
                chunk = await _read(f) if f is not None else b""
                if chunk:
                    yield chunk
                    continue
                if opened:
                    if f is not None:
                        f.close()
                    gen, f = opened.pop(0)
                    continue
                if gen < self._generation:  # a newer file exists: go on in it
                    gen, nxt, marker = self._next_file(gen)
                    if marker:
                        yield marker
                    if nxt is not None:
                        if f is not None:
                            f.close()
                        f = nxt
                        continue
                if not follow:
                    return
                await changed.wait()
        finally:
            for _, other in opened:
                other.close()
            if f is not None:
                f.close()


def _resume(files: list[BinaryIO], ino: int, offset: int) -> tuple[int, int, bytes]:
    """(index, offset, marker) for *offset* bytes into the log from the start of file *ino*:
    bytes past its end are in the next newer files (rotation keeps the order)."""
    inos = [os.fstat(f.fileno()).st_ino for f in files]
    if ino not in inos:
        return 0, 0, b"[extvisor: the log was rotated past where this reader stopped; going on from the oldest kept]\n"
    index = inos.index(ino)
    while index < len(files) - 1:
        size = _fsize(files[index].fileno(), 0)
        if offset <= size:
            break
        offset -= size
        index += 1
    return index, offset, b""


async def _read(f: BinaryIO) -> bytes:
    """A chunk from *f*: in the loop near the end (live follow), else in a thread."""
    try:
        behind = os.fstat(f.fileno()).st_size - f.tell()
        if behind > _INLINE:
            return await _in_reader(f.read, CHUNK * 4)
        return f.read(CHUNK)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            return b""
        return f"\n[extvisor: reading the log failed: {exc.strerror}]\n".encode()


async def _in_reader(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_READS, fn, *args)


def _fsize(fd: int, default: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError:
        return default
