"""A command inside a running container, for health checks: podman's exec API.

``POST /containers/{id}/exec`` makes a session (the container's environment, user and
working directory apply, as ``podman exec``), ``POST /exec/{id}/start`` runs it and streams
its output (Docker's multiplexed frames) until it ends, ``GET /exec/{id}/json`` has the exit
code. The blocking calls run in a thread of their own, so checks of many services never
queue behind each other. At the timeout the command is killed by its host PID (podman on
this host; a remote one has no kill for an exec session, and the result says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from extvisor import BackendError, ExecResult
from extvisor.oci.procs import kill_tree
from extvisor.protocols import EXEC_OUTPUT_MAX

from .stream import _frames

T = TypeVar("T")
KILL_TIMEOUT = 5.0


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "explanation", None) or exc).strip()


async def in_thread(fn: Callable[[], T]) -> T:
    """Run *fn* in a new thread (not the loop's small default pool)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: done.done() or done.set_exception(exc))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(result))

    threading.Thread(target=run, name="podman-exec", daemon=True).start()
    return await done


def _run_session(api: Any, exec_id: str) -> bytes:
    """Start the session and read its output to the end, keeping the first 4 KiB."""
    body = json.dumps({"Detach": False, "Tty": False})
    resp = api.post(f"/exec/{exec_id}/start", data=body, headers={"content-type": "application/json"}, stream=True)
    try:
        resp.raise_for_status()
        kept = bytearray()
        for _, payload in _frames(resp.raw):
            room = EXEC_OUTPUT_MAX - len(kept)
            if room > 0:
                kept += payload[:room]
        return bytes(kept)
    finally:
        resp.close()


async def podman_exec(api: Any, container_id: str, argv: Sequence[str], timeout: float, local: bool) -> ExecResult:
    def create() -> str:
        body = {"Cmd": list(argv), "AttachStdout": True, "AttachStderr": True, "AttachStdin": False, "Tty": False}
        resp = api.post(f"/containers/{container_id}/exec", data=json.dumps(body),
                        headers={"content-type": "application/json"})  # fmt: skip
        resp.raise_for_status()
        return str(resp.json()["Id"])

    def inspect(exec_id: str) -> dict[str, Any]:
        resp = api.get(f"/exec/{exec_id}/json")
        resp.raise_for_status()
        return dict(resp.json())

    try:
        exec_id = await in_thread(create)
    except Exception as exc:
        raise BackendError(f"podman could not exec in {container_id}: {_message(exc)}") from exc
    running = asyncio.ensure_future(in_thread(lambda: _run_session(api, exec_id)))
    try:
        async with asyncio.timeout(timeout):
            output = await asyncio.shield(running)
    except TimeoutError:
        killed = False
        with contextlib.suppress(Exception):
            pid = int((await in_thread(lambda: inspect(exec_id))).get("Pid") or 0)
            if local and pid > 0:
                killed = kill_tree(pid) > 0  # the command and what it started
        output = b""
        if killed:
            with contextlib.suppress(Exception):
                output = await asyncio.wait_for(asyncio.shield(running), KILL_TIMEOUT)
        return ExecResult(None, output if killed else b"(podman is remote: the command could not be killed)",
                          timed_out=True)  # fmt: skip
    except Exception as exc:
        raise BackendError(f"podman exec in {container_id}: {_message(exc)}") from exc
    try:
        info = await in_thread(lambda: inspect(exec_id))
    except Exception as exc:
        raise BackendError(f"podman exec in {container_id}: {_message(exc)}") from exc
    code = info.get("ExitCode")
    return ExecResult(int(code) if code is not None else 255, output)
