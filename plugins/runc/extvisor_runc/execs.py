"""A command inside a running container, for health checks: ``runc exec``.

Without ``--process``, runc builds the process from the bundle's ``config.json`` with the
arguments replaced, so the command gets the service's environment, user, working directory,
capabilities and ``noNewPrivileges``, joins every namespace and the container's cgroup. Its
stdout and stderr come back through runc (one pipe, in order). At the timeout the command is
killed by the PID runc wrote (``--pid-file``): runc forwards signals, but not SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from pathlib import Path

from extvisor import ExecResult
from extvisor.oci.procs import kill_tree
from extvisor.protocols import EXEC_OUTPUT_MAX

READ = 65536
REAP_TIMEOUT = 5.0  # after the kill, for runc to go
_serial = itertools.count(1)


async def read_capped(stream: asyncio.StreamReader, keep: bytearray) -> None:
    """Read to EOF, keeping the first EXEC_OUTPUT_MAX bytes (the rest is read and dropped)."""
    while True:
        data = await stream.read(READ)
        if not data:
            return
        room = EXEC_OUTPUT_MAX - len(keep)
        if room > 0:
            keep += data[:room]


def _kill(pid_file: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        kill_tree(int(pid_file.read_text().strip()))  # the command and what it started


async def runc_exec(binary: str, root: Path, cid: str, scratch: Path, argv: Sequence[str], timeout: float) -> ExecResult:
    """``runc --root ROOT exec CID -- ARGV`` within *timeout* seconds."""
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid_file = scratch / f"{cid}.{next(_serial)}.pid"
    proc = await asyncio.create_subprocess_exec(
        binary, "--root", str(root), "--log", "/dev/null", "exec", "--pid-file", str(pid_file), cid, *argv,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = bytearray()
    reading = asyncio.ensure_future(read_capped(proc.stdout, output))
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(reading)
                code = await proc.wait()
        except TimeoutError:
            timed_out = True
            _kill(pid_file)  # the command (and with it runc exec, which waits for it)
            try:
                code = await asyncio.wait_for(proc.wait(), REAP_TIMEOUT)
            except TimeoutError:
                proc.kill()
                code = await proc.wait()
    except BaseException:  # cancelled: leave nothing running
        _kill(pid_file)
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), REAP_TIMEOUT)
        raise
    finally:
        reading.cancel()
        pid_file.unlink(missing_ok=True)
    if timed_out:
        return ExecResult(None, bytes(output), timed_out=True)
    # 255 with runc's message when runc itself failed (no such executable, the container gone)
    return ExecResult(code, bytes(output))
