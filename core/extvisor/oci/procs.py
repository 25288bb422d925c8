"""Killing a container's init without its runtime, for backends (plugin-facing).

When the runtime does not answer a stop (runc failing, containerd or podman hanging),
the supervisor asks the container handle to kill directly (``kill_hard``). The init has
its own PID namespace, so SIGKILL to it ends every process of the container.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable


def watch_kill(pid: int, gone: Callable[[], None]) -> None:
    """SIGKILL *pid* through a pidfd and call *gone* (in the loop) once it has exited.

    The pidfd is opened first: a PID reused since the container started is never hit
    (if *pid* is already gone, *gone* is called at once).
    """
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        loop.call_soon(gone)
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass

    def ready() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        gone()

    loop.add_reader(pidfd, ready)  # readable once the process has exited
