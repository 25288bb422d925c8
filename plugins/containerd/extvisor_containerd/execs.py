"""A command inside a running task, for health checks: ``Tasks.Exec`` with a FIFO.

The process is the container's own (its spec's ``process``: environment, user, working
directory, capabilities) with the arguments replaced, as ``ctr task exec`` builds it. The
shim runs ``runc exec``, so the command joins the task's namespaces and cgroup. stdout and
stderr go through one FIFO (opened before the shim opens it, see fifo.py); at the timeout
the process is killed through ``Tasks.Kill(exec_id)`` and always deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extvisor import BackendError, ExecResult
from extvisor.oci.procs import kill_tree
from extvisor.protocols import EXEC_OUTPUT_MAX

from . import client as c
from .fifo import remove_fifo

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
KILL_TIMEOUT = 5.0
_serial = itertools.count(1)


class _Output:
    """The exec's FIFO, read on the event loop; keeps the first EXEC_OUTPUT_MAX bytes.

    We hold a write end too: the shim may open and close its writers more than once (stdout
    and stderr are one path), and a reader that saw EOF in between and closed would leave
    the shim's next blocking open, and with it Tasks.Start and the whole shim, hanging.
    The end of the output is the process's exit (then DeleteProcess), not EOF.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = bytearray()
        remove_fifo(path)
        os.mkfifo(path, 0o600)
        self.rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.rfd, self.read)

    def read(self) -> None:
        while True:
            try:
                data = os.read(self.rfd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            room = EXEC_OUTPUT_MAX - len(self.data)
            if room > 0:
                self.data += data[:room]

    def close(self) -> None:
        self.loop.remove_reader(self.rfd)
        self.read()
        os.close(self.wfd)
        os.close(self.rfd)
        remove_fifo(self.path)


async def container_process(client: c.Client, cid: str) -> dict[str, Any]:
    """The ``process`` of the container's OCI spec, as containerd holds it."""
    got = await client.call(client.containers.Get, c.containers_pb2.GetContainerRequest(id=cid))
    return dict(json.loads(got.container.spec.value or b"{}").get("process") or {})


async def task_exec(client: c.Client, cid: str, process: dict[str, Any], fifo_dir: Path, argv: Sequence[str],
                    timeout: float) -> ExecResult:  # fmt: skip
    exec_id = f"health-{next(_serial)}"
    spec = {**process, "args": list(argv), "terminal": False}
    spec.pop("consoleSize", None)
    path = fifo_dir / f"{cid}.{exec_id}.stdio"
    out = _Output(path)
    tasks = client.tasks
    waiting: asyncio.Future[Any] | None = None
    created = False
    pid = 0
    try:
        request = c.tasks_pb2.ExecProcessRequest(
            container_id=cid, exec_id=exec_id, stdout=str(path), stderr=str(path), terminal=False,
            spec=c.any_pb2.Any(type_url=PROCESS_TYPE_URL, value=json.dumps(spec).encode()),
        )  # fmt: skip
        await client.call(tasks.Exec, request)
        created = True
        wait = c.tasks_pb2.WaitRequest(container_id=cid, exec_id=exec_id)
        waiting = asyncio.ensure_future(client.call(tasks.Wait, wait, timeout=None))
        try:
            async with asyncio.timeout(timeout):
                try:
                    start = c.tasks_pb2.StartRequest(container_id=cid, exec_id=exec_id)
                    pid = int((await client.call(tasks.Start, start)).pid)
                except c.grpc.aio.AioRpcError as exc:
                    if c.is_gone(exc):
                        raise
                    return ExecResult(127, (exc.details() or exc.code().name).encode())  # not startable: its reason
                reply = await asyncio.shield(waiting)
        except TimeoutError:
            if pid > 0:  # what the command started too (Tasks.Kill signals the command only)
                kill_tree(pid)
            kill = c.tasks_pb2.KillRequest(container_id=cid, exec_id=exec_id, signal=signal.SIGKILL)
            with contextlib.suppress(c.grpc.aio.AioRpcError):
                await client.call(tasks.Kill, kill)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(waiting), KILL_TIMEOUT)
            result = ExecResult(None, timed_out=True)
        else:
            result = ExecResult(int(reply.exit_status))
    except c.grpc.aio.AioRpcError as exc:
        raise BackendError(c.describe(exc, f"{cid}: exec")) from None
    finally:
        if waiting is not None and not waiting.done():
            waiting.cancel()
        if created:  # the shim has copied the last output when this returns
            delete = c.tasks_pb2.DeleteProcessRequest(container_id=cid, exec_id=exec_id)
            with contextlib.suppress(Exception):
                await client.call(tasks.DeleteProcess, delete)
        out.close()
    return ExecResult(result.exit_code, bytes(out.data), result.timed_out)
