"""A minimal inotify wrapper (ctypes): one fd, one watch at a time, read by asyncio.

Only used as a wake-up: callers re-check the file system after any event, so events are
drained and never parsed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os

from .wake import wait_and_clear

IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# What can make a missing child appear in a watched directory, or the directory vanish.
DIR_EVENTS = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(rc: int, what: str, path: str | None = None) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return rc


class DirWatch:
    """Watch one directory at a time; :meth:`wait` returns after the next event."""

    def __init__(self) -> None:
        self.fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self.wd = -1
        self.path: str | None = None
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)

    def watch(self, path: str) -> None:
        """Move the watch to directory *path* (no-op when it is already watched)."""
        if path == self.path:
            return
        self._unwatch()
        self.wd = _check(_libc.inotify_add_watch(self.fd, os.fsencode(path), DIR_EVENTS | IN_ONLYDIR), "inotify_add_watch", path)
        self.path = path

    def _unwatch(self) -> None:
        if self.wd >= 0:
            _libc.inotify_rm_watch(self.fd, self.wd)  # EINVAL when the dir is gone: fine
        self.wd, self.path = -1, None

    def _readable(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for the next event; ``False`` on timeout."""
        return await wait_and_clear(self._event, timeout)

    def close(self) -> None:
        if self.fd < 0:
            return
        self._loop.remove_reader(self.fd)
        os.close(self.fd)  # drops the watches with it
        self.fd = -1
        self.wd, self.path = -1, None
