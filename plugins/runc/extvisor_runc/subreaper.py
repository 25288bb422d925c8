"""The child-subreaper flag, on only while a ``runc create`` is in flight.

With it, the container's init is re-parented to this process when ``runc create`` exits,
so ``waitid`` can give its exit status (runc keeps none). Off the rest of the time, so the
orphans of the daemon's other children (containerd shims, conmon) go to PID 1 as usual
and never become zombies here.
"""

from __future__ import annotations

import ctypes
import os
import threading

from extvisor import BackendError

PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37


class Subreaper:
    """Counts creates in flight; the process is a child subreaper while any runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._was_set = False
        self._libc = ctypes.CDLL(None, use_errno=True)

    def _prctl(self, *args: int) -> int:
        if self._libc.prctl(*args, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise BackendError(f"prctl({args[0]}): {os.strerror(err)}")
        return 0

    def is_set(self) -> bool:
        value = ctypes.c_int(0)
        if self._libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) != 0:
            return False
        return bool(value.value)

    def __enter__(self) -> None:
        with self._lock:
            if self._count == 0:
                self._was_set = self.is_set()  # someone else's flag is left alone
                if not self._was_set:
                    self._prctl(PR_SET_CHILD_SUBREAPER, 1)
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0 and not self._was_set:
                self._prctl(PR_SET_CHILD_SUBREAPER, 0)


_INSTANCE: Subreaper | None = None


def subreaper() -> Subreaper:
    global _INSTANCE
    if _INSTANCE is None:
        _INSTANCE = Subreaper()
    return _INSTANCE
