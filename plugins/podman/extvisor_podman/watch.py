"""One inotify instance per event loop for every container's log directory (ctypes).

One instance, not one per container: a user may have only 128 of them
(``fs.inotify.max_user_instances``), while watches are counted in thousands.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable

IN_MODIFY, IN_MOVED_TO, IN_CREATE = 0x2, 0x80, 0x100
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]

_watchers: dict[asyncio.AbstractEventLoop, DirWatcher] = {}


def _error(what: str, path: object) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what} {path}: {os.strerror(err)}")


class DirWatcher:
    """Calls each directory's callbacks (in the loop) when a file in it is written, created or moved in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise _error("inotify_init1", "(fs.inotify.max_user_instances?)")
        self.callbacks: dict[int, list[Callable[[], None]]] = {}
        loop.add_reader(self.fd, self._readable)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> DirWatcher:
        watcher = _watchers.get(loop)
        if watcher is None or watcher.fd < 0:
            watcher = _watchers[loop] = cls(loop)
        return watcher

    def add(self, directory: str, callback: Callable[[], None]) -> int:
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_MODIFY | IN_MOVED_TO | IN_CREATE)
        if wd < 0:
            raise _error("inotify on", directory)
        self.callbacks.setdefault(wd, []).append(callback)
        return wd

    def remove(self, wd: int, callback: Callable[[], None]) -> None:
        callbacks = self.callbacks.get(wd, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks and wd in self.callbacks:
            del self.callbacks[wd]
            _libc.inotify_rm_watch(self.fd, wd)  # EINVAL when the directory is gone: fine
        if not self.callbacks:
            self.close()  # nothing watched: no descriptor kept

    def _readable(self) -> None:
        woken: set[int] = set()
        try:
            while data := os.read(self.fd, 65536):
                pos = 0
                while pos + _HEADER.size <= len(data):
                    wd, _mask, _cookie, size = _HEADER.unpack_from(data, pos)
                    woken.add(wd)
                    pos += _HEADER.size + size
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        for wd in woken:
            for callback in list(self.callbacks.get(wd, [])):
                callback()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
            if _watchers.get(self.loop) is self:
                del _watchers[self.loop]
