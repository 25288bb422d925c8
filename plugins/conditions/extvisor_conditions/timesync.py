"""``time: true``: wait until the kernel says the clock is synchronised.

Talos waits for its own NTP client's status; a host running extvisor has its own time
daemon (chrony, systemd-timesyncd, ntpd), which sets the kernel's flags through
adjtimex. There is no event for it, so the flag is read once a second (~20 µs a read).
The daemon option ``assume_time_synced`` satisfies it at once, for machines without time
sync; ``time_reader`` (a callable returning ``(synced, detail)``) replaces the kernel read.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import Callable

from extvisor import ConditionContext

RECHECK = 1.0
STA_UNSYNC = 0x0040
TIME_ERROR = 5


class Timex(ctypes.Structure):
    """``struct timex`` (x86_64 and aarch64: 208 bytes, status at 40)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.adjtimex.argtypes = [ctypes.POINTER(Timex)]
_libc.adjtimex.restype = ctypes.c_int


def kernel_time_synced() -> tuple[bool, str]:
    """Read the kernel's clock state (modes=0: read only, no privilege needed)."""
    tx = Timex()
    rc = _libc.adjtimex(ctypes.byref(tx))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"adjtimex: {os.strerror(err)}")
    if tx.status & STA_UNSYNC:
        return False, "kernel clock not synchronised"
    if rc == TIME_ERROR:
        return False, "kernel clock in error state"
    return True, "kernel clock synchronised"


def is_set(value: bool) -> bool:
    return value is True


class TimeCondition:
    def __init__(self, ctx: ConditionContext):
        options = ctx.options or {}
        self.assume_synced = bool(options.get("assume_time_synced", False))
        self.reader: Callable[[], tuple[bool, str]] = options.get("time_reader") or kernel_time_synced
        self.detail: str | None = None  # why it is not synced; None before the first read

    def describe(self) -> str:
        if self.detail is None and not self.assume_synced:
            self._read()  # cheap; lets the first waiting event say what is pending
        return f"time sync ({self.detail})" if self.detail else "time sync"

    def __repr__(self) -> str:
        return "TimeCondition()"

    def _read(self) -> bool:
        synced, detail = self.reader()
        self.detail = "" if synced else detail
        return bool(synced)

    async def wait(self) -> None:
        if self.assume_synced:
            return
        while not self._read():
            await asyncio.sleep(RECHECK)


def factory(value: bool, ctx: ConditionContext) -> TimeCondition:
    return TimeCondition(ctx)
