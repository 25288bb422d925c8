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
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extvisor import BackendError, ExecResult
from extvisor.protocols import EXEC_OUTPUT_MAX

from . import client as c
from .fifo import FifoReader

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
KILL_TIMEOUT = 5.0
DRAIN = 0.5  # after the exit, for output still in the FIFO
_serial = itertools.count(1)


class _Capped:
    """Keeps the first EXEC_OUTPUT_MAX bytes written."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        room = EXEC_OUTPUT_MAX - len(self.data)
        if room > 0:
            self.data += data[:room]


async def container_process(client: c.Client, cid: str) -> dict[str, Any]:
    """The ``process`` of the container's OCI spec, as containerd holds it."""
    got = await client.call(client.containers.Get, c.containers_pb2.GetContainerRequest(id=cid))
    return dict(json.loads(got.container.spec.value or b"{}").get("process") or {})


async def task_exec(client: c.Client, cid: str, process: dict[str, Any], fifo_dir: Path, argv: Sequence[str],
                    timeout: float) -> ExecResult:  # fmt: skip
    exec_id = f"health-{next(_serial)}"
    spec = {**process, "args": list(argv), "terminal": False}
    spec.pop("consoleSize", None)
    sink = _Capped()
    path = fifo_dir / f"{cid}.{exec_id}.stdio"
    fifo = FifoReader(path, sink)
    tasks = client.tasks
    waiting: asyncio.Future[Any] | None = None
    created = False
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
            await client.call(tasks.Start, c.tasks_pb2.StartRequest(container_id=cid, exec_id=exec_id))
        except c.grpc.aio.AioRpcError as exc:
            if c.is_gone(exc):
                raise
            return ExecResult(127, (exc.details() or exc.code().name).encode())  # not startable (no such file...)
        try:
            async with asyncio.timeout(timeout):
                reply = await asyncio.shield(waiting)
        except TimeoutError:
            kill = c.tasks_pb2.KillRequest(container_id=cid, exec_id=exec_id, signal=signal.SIGKILL)
            with contextlib.suppress(c.grpc.aio.AioRpcError):
                await client.call(tasks.Kill, kill)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(waiting), KILL_TIMEOUT)
            await fifo.drained(DRAIN)
            return ExecResult(None, bytes(sink.data), timed_out=True)
        await fifo.drained(DRAIN)  # the command's last output, before we close
        return ExecResult(int(reply.exit_status), bytes(sink.data))
    except c.grpc.aio.AioRpcError as exc:
        raise BackendError(c.describe(exc, f"{cid}: exec")) from None
    finally:
        if waiting is not None and not waiting.done():
            waiting.cancel()
        if created:
            delete = c.tasks_pb2.DeleteProcessRequest(container_id=cid, exec_id=exec_id)
            with contextlib.suppress(Exception):
                await client.call(tasks.DeleteProcess, delete)
        fifo.close()
