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


def kill_tree(pid: int, signum: int = signal.SIGKILL) -> int:
    """Send *signum* to *pid* and every process descended from it; return how many.

    For a health check killed at its timeout: ``sh -c "sleep 30"`` leaves its ``sleep``
    running if only the shell is killed. Descendants are found by their parent PIDs in
    /proc, all of them before any is killed (a killed parent's children move away).
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    killed = 0
    for member in tree:
        try:
            os.kill(member, signum)
            killed += 1
        except (ProcessLookupError, PermissionError):
            pass
    return killed
