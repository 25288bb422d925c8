"""A test double of a backend: runs the entrypoint as a plain host process, no container.

For unit tests of the supervisor only (restart policies, ordering, stop); the real
backends have their own tests against runc, containerd and podman.
"""

from __future__ import annotations

import asyncio
import os
import signal

from extvisor import BackendError, ExitStatus, LaunchRequest


class ProcHandle:
    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.Task, id: str):
        self.proc = proc
        self.pid = proc.pid
        self.id = id
        self._reader = reader

    async def wait(self) -> ExitStatus:
        rc = await self.proc.wait()
        await self._reader
        return ExitStatus(signal=-rc) if rc < 0 else ExitStatus(code=rc)

    async def signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    async def delete(self) -> None:
        if self.proc.returncode is None:
            await self.signal(signal.SIGKILL)
            await self.proc.wait()


class ProcBackend:
    name = "proc"

    def __init__(self, config=None):
        self.launched: list[LaunchRequest] = []
        self.opened = False
        self.unavailable = False

    async def open(self) -> None:
        if self.unavailable:
            from extvisor import BackendUnavailable

            raise BackendUnavailable("proc backend switched off")
        self.opened = True

    async def cleanup(self, keep=frozenset()) -> list[str]:
        return []

    async def launch(self, request: LaunchRequest) -> ProcHandle:
        if self.unavailable:
            from extvisor import BackendUnavailable

            raise BackendUnavailable("proc backend switched off")
        self.launched.append(request)
        args = request.oci["process"]["args"]
        env = dict(e.split("=", 1) for e in request.oci["process"]["env"])
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", **env}, start_new_session=True,
            )
        except OSError as exc:
            raise BackendError(f"exec {args[0]!r}: {exc.strerror}") from None

        async def pump() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                request.log.write(chunk)

        return ProcHandle(proc, asyncio.create_task(pump()), request.service_id)

    async def close(self) -> None:
        pass
