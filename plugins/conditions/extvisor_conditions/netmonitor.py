"""One kernel reader per network namespace, shared by every waiting ``network`` condition.

A netlink dump costs a few milliseconds of Python decoding; fifty services each reading
once a second would keep a core busy. So one task per namespace reads the addresses and
routes, again on every netlink notification and at least once a second while anyone
waits, and every waiting condition gets the same result. It stops with its last user.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .netstatus import NetlinkHint, read_kernel

RECHECK = 1.0  # notifications have been seen to go missing here: re-read at least this often
MIN_GAP = 0.1  # coalesce a burst of notifications into one read

_monitors: dict[tuple[int, str | None], KernelMonitor] = {}


class KernelMonitor:
    def __init__(self, netns: str | None):
        self.netns = netns
        self.version = 0
        self.result: dict[str, bool] | BaseException | None = None
        self.users = 0
        self._published = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"extvisor-netmonitor-{self.netns or 'host'}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # never let a waiting service's stop hang on this task
            await asyncio.wait({self._task}, timeout=2)
            self._task = None

    def _publish(self, result: dict[str, bool] | BaseException) -> None:
        self.result = result
        self.version += 1
        published, self._published = self._published, asyncio.Event()
        published.set()

    async def _run(self) -> None:
        hint = await NetlinkHint.open(self.netns)  # subscribe before the first read
        try:
            while True:
                try:
                    result: dict[str, bool] | BaseException = await asyncio.to_thread(read_kernel, self.netns)
                except Exception as exc:  # e.g. the namespace is gone: the waiting conditions fail
                    result = exc
                self._publish(result)
                if hint is None:
                    await asyncio.sleep(RECHECK)
                elif await hint.wait(RECHECK):
                    await asyncio.sleep(MIN_GAP)
        finally:
            if hint is not None:
                hint.close()

    async def next(self, after: int) -> tuple[int, dict[str, bool]]:
        """The first result newer than version *after*; raises what the read raised."""
        while self.version <= after:
            await self._published.wait()
        if isinstance(self.result, BaseException):
            raise self.result
        assert self.result is not None
        return self.version, self.result


@asynccontextmanager
async def kernel_monitor(netns: str | None) -> AsyncIterator[KernelMonitor]:
    key = (id(asyncio.get_running_loop()), netns)
    monitor = _monitors.get(key)
    if monitor is None:
        monitor = _monitors[key] = KernelMonitor(netns)
        monitor.start()
    monitor.users += 1
    try:
        yield monitor
    finally:
        monitor.users -= 1
        if monitor.users == 0 and _monitors.get(key) is monitor:
            del _monitors[key]
            await monitor.stop()
