"""A container's output read from conmon's log file, from where the last reader stopped.

conmon copies everything a container prints into a k8s-file log, one record per piece:
``<time> stdout|stderr F|P <text>`` (``P``: the line goes on in the stream's next record),
whether or not anyone is attached, and goes on while no extvisor runs. Reading that file
(rather than podman's attach stream, which drops what is written while nobody is attached)
lets a new daemon go on exactly where the previous one stopped.

Where that is, is written to ``<service state dir>/podman-output.pos`` right after each
chunk is handed to the sink, as one fixed-size ``pwrite`` (a killed writer leaves the old or
the new record): the container, the file (device, inode), the offset up to which records
were handed out, and, per stream, where a line still held back starts (a line is handed out
whole, so that a line of the other stream never cuts it; the held text is read again from
the file, not stored). A kill between the sink's write and that ``pwrite`` repeats the one
chunk; nothing is ever skipped.

The file's directory is watched with inotify (conmon replaces the file when it reaches
``log_size_max``; ``watch.py``), so an idle service costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .watch import DirWatcher

log = logging.getLogger("extvisor.podman")

POS_FILE = "podman-output.pos"
STREAMS = (b"stdout", b"stderr")
MAX_PARTIAL = 64 * 1024  # a longer line without a newline is handed out in pieces
READ = 256 * 1024  # per turn of the event loop


@dataclass
class Position:
    """Where a reader of one container's log stopped (the record in ``podman-output.pos``)."""

    container: str  #: podman's container id (64 hex digits)
    dev: int
    ino: int
    done: int  #: records before this offset were handed out, but for held lines
    held: dict[bytes, int]  #: per stream, the offset of the first record of its held line, or -1

    def encode(self) -> bytes:
        held = " ".join(f"{self.held.get(s, -1):20d}" for s in STREAMS)
        return f"{self.container:64.64s} {self.dev:20d} {self.ino:20d} {self.done:20d} {held}\n".encode()

    @classmethod
    def decode(cls, data: bytes) -> Position | None:
        fields = data.decode(errors="replace").split()
        if len(fields) != 4 + len(STREAMS):
            return None
        try:
            dev, ino, done, *held = (int(f) for f in fields[1:])
        except ValueError:
            return None
        return cls(fields[0], dev, ino, done, dict(zip(STREAMS, held)))


def load_position(state_dir: Path) -> Position | None:
    try:
        return Position.decode((state_dir / POS_FILE).read_bytes())
    except OSError:
        return None


class Decoder:
    """k8s-file records into output; each stream's unfinished line is held until it ends."""

    def __init__(self) -> None:
        self.held = {s: b"" for s in STREAMS}
        self.held_at = {s: -1 for s in STREAMS}

    def decode(self, data: bytes, offset: int, replay_until: int = -1) -> tuple[bytes, int]:
        """Decode the complete records in *data*, read at file *offset*; return (output, bytes used).

        Records before *replay_until* were handed out already, except those of a held line:
        only those are taken again (a resumed reader rebuilding the held text).
        """
        out: list[bytes] = []
        pos, end = 0, data.rfind(b"\n") + 1
        held, held_at = self.held, self.held_at
        while pos < end:
            nl = data.index(b"\n", pos)
            at = offset + pos
            parts = data[pos:nl].split(b" ", 3)
            pos = nl + 1
            if len(parts) < 3 or parts[1] not in held:
                continue  # not a record conmon writes
            stream, tag, text = parts[1], parts[2], parts[3] if len(parts) == 4 else b""
            if at < replay_until and not (0 <= held_at[stream] <= at):
                continue  # handed out before
            if tag == b"P":
                if held_at[stream] < 0:
                    held_at[stream] = at
                held[stream] += text
                if len(held[stream]) >= MAX_PARTIAL:
                    out.append(held[stream])
                    held[stream], held_at[stream] = b"", -1
            else:
                out.append(held[stream] + text + b"\n")
                held[stream], held_at[stream] = b"", -1
        return b"".join(out), end

    def flush(self) -> bytes:
        """What is held (the container ended or its file was replaced), oldest first."""
        order = sorted((s for s in STREAMS if self.held[s]), key=lambda s: self.held_at[s])
        out = b"".join(self.held[s] for s in order)
        self.held = {s: b"" for s in STREAMS}
        self.held_at = {s: -1 for s in STREAMS}
        return out


class FileTail:
    """Copies conmon's log file of one container into *sink*, recording how far it got.

    *resume* is the position an earlier reader recorded (adoption), else the file is read
    from its start. :meth:`drained` reads the rest once the container has ended;
    :meth:`detach` stops reading and leaves the position for the next daemon.
    """

    def __init__(self, sink: Any, name: str, path: Path, state_dir: Path, container: str,
                 resume: Position | None = None) -> None:  # fmt: skip
        self.sink = sink
        self.name = name
        self.path = path
        self.container = container
        self.loop = asyncio.get_running_loop()
        self.decoder = Decoder()
        self.offset = 0
        self.replay_until = -1
        self._fd: int | None = None
        self._pos_fd: int | None = None
        self._watcher: DirWatcher | None = None
        self._wd = -1
        self._scheduled = False
        self._done: asyncio.Future[None] | None = None
        state_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(self._fd)
            self.dev, self.ino = st.st_dev, st.st_ino
            if resume is not None and resume.container == container:
                if (resume.dev, resume.ino) == (self.dev, self.ino):
                    starts = [o for o in resume.held.values() if o >= 0]
                    self.offset = min([resume.done, *starts])
                    self.replay_until = resume.done
                    self.decoder.held_at = {s: resume.held.get(s, -1) for s in STREAMS}
                else:  # conmon replaced its file (log_size_max) while no daemon read it
                    sink.write(b"[extvisor: output lost while no daemon read it: conmon replaced its log file]\n")
                    log.warning("%s: conmon replaced %s while no daemon read it; that output is lost", name, path)
            self._pos_fd = os.open(state_dir / POS_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._save()
            self._watcher = DirWatcher.of(self.loop)
            self._wd = self._watcher.add(str(path.parent), self._schedule)
        except BaseException:
            self._close()
            raise
        self._schedule()

    # -- reading ----------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._scheduled and self._fd is not None:
            self._scheduled = True
            self.loop.call_soon(self._turn)

    def _turn(self) -> None:
        self._scheduled = False
        if self._fd is not None and self._read() == READ:
            self._schedule()  # more to read: let the loop run in between

    def _read(self) -> int:
        """Hand out the complete records at the offset; return how many bytes were read."""
        assert self._fd is not None
        try:
            data = os.pread(self._fd, READ, self.offset)
        except OSError as exc:
            log.warning("%s: reading %s failed: %s", self.name, self.path, exc)
            return 0
        out, used = self.decoder.decode(data, self.offset, self.replay_until)
        if not data:
            self._check_replaced()
            return 0
        if used == 0 and len(data) == READ:  # a record longer than a read: never from conmon
            out, used = data, len(data)
        self.offset += used
        if out:
            self.sink.write(out)
        if used:
            self._save()
        return len(data)

    def _check_replaced(self) -> None:
        """At the end of the file: go on in conmon's new one if it replaced this one."""
        try:
            st = os.stat(self.path)
        except OSError:
            return  # removed with the container
        if (st.st_dev, st.st_ino) == (self.dev, self.ino):
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        rest = self.decoder.flush()
        if rest:
            self.sink.write(rest)
        assert self._fd is not None
        os.close(self._fd)
        self._fd = fd
        st = os.fstat(fd)
        self.dev, self.ino, self.offset, self.replay_until = st.st_dev, st.st_ino, 0, -1
        self._save()
        self._schedule()

    def _save(self) -> None:
        if self._pos_fd is None:
            return
        held = {s: (o if o >= 0 else -1) for s, o in self.decoder.held_at.items()}
        record = Position(self.container, self.dev, self.ino, max(self.offset, self.replay_until), held)
        try:
            os.pwrite(self._pos_fd, record.encode(), 0)
        except OSError as exc:
            log.warning("%s: cannot record its output position: %s", self.name, exc)

    # -- the end ----------------------------------------------------------------------

    async def drained(self) -> None:
        """Read the rest (the container has ended: conmon wrote its last record), then stop."""
        if self._done is None:
            self._done = self.loop.create_future()
            try:
                while self._fd is not None and self._read() == READ:
                    await asyncio.sleep(0)
                rest = self.decoder.flush()
                if rest:
                    self.sink.write(rest)
            finally:
                self._close()
                self._done.set_result(None)
        await asyncio.shield(self._done)

    def detach(self) -> None:
        """Stop reading; the position file stays for the next daemon (adoption)."""
        self._close()

    def _close(self) -> None:
        if self._watcher is not None:
            if self._wd >= 0:
                self._watcher.remove(self._wd, self._schedule)
            self._watcher, self._wd = None, -1
        for name in ("_fd", "_pos_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
