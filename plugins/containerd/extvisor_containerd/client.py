"""A grpc.aio connection to containerd: the stubs, the namespace, and error translation.

The stubs in ``extvisor_containerd.api`` are generated at build time (hatch_build.py);
they and grpcio are imported here only, so the plugin still registers, and says what
is missing, when the ``containerd`` extra is not installed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from extvisor import BackendError, BackendUnavailable

T = TypeVar("T")

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
# containerd looks the options type up by this exact URL; Any.Pack() would prefix
# "type.googleapis.com/" and the shim would answer "type ... not found".
RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options"
RUNTIME = "io.containerd.runc.v2"
RETRY_INTERVAL = 1.0  # seconds between tries while containerd is away
CALL_TIMEOUT = 30.0  # a single RPC; Tasks.Wait has none

try:
    import grpc
    import grpc.aio
    from google.protobuf import any_pb2

    from .api.runc.options import oci_pb2
    from .api.services.containers.v1 import containers_pb2, containers_pb2_grpc
    from .api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
    from .api.services.version.v1 import version_pb2_grpc
    from .api.types.task import task_pb2

    IMPORT_ERROR: str | None = None
except Exception as exc:  # no grpcio, stubs not generated, protobuf too old
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def check_imports() -> None:
    if IMPORT_ERROR is not None:
        raise BackendError(
            f"the containerd backend cannot load its gRPC modules ({IMPORT_ERROR}); "
            "install it with: pip install 'extvisor[containerd]'"
        )


def code_of(exc: BaseException) -> Any:
    return exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None


def is_gone(exc: BaseException) -> bool:
    """containerd is not there (stopped, restarting, socket missing)."""
    return code_of(exc) == grpc.StatusCode.UNAVAILABLE


def is_not_found(exc: BaseException) -> bool:
    return code_of(exc) == grpc.StatusCode.NOT_FOUND


def describe(exc: BaseException, what: str) -> str:
    """A readable one-line message for a failed call."""
    if isinstance(exc, grpc.aio.AioRpcError):
        details = (exc.details() or "").strip()
        # containerd passes our deadline on to the shim and may answer UNKNOWN for it.
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED or "deadline exceeded" in details:
            return f"{what}: containerd or the task's shim did not answer in time ({details or 'deadline exceeded'})"
        if exc.code() == grpc.StatusCode.UNKNOWN:  # containerd's own errors: the text says it all
            return f"{what}: {details}"
        return f"{what}: {exc.code().name}: {details}"
    return f"{what}: {exc}"


class Client:
    """One channel to containerd's socket, in one containerd namespace."""

    def __init__(self, address: str, namespace: str) -> None:
        check_imports()
        self.address = address
        self.namespace = namespace
        self.metadata = (("containerd-namespace", namespace),)
        # Reconnect within a second of containerd coming back (gRPC's default backoff
        # grows to two minutes).
        options = [
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self.channel = grpc.aio.insecure_channel(f"unix://{address}", options=options)
        self.containers = containers_pb2_grpc.ContainersStub(self.channel)
        self.tasks = tasks_pb2_grpc.TasksStub(self.channel)
        self.version = version_pb2_grpc.VersionStub(self.channel)

    async def check(self, timeout: float = 5.0) -> str:
        """The daemon's version, or :class:`BackendUnavailable` saying why not."""
        from google.protobuf import empty_pb2

        try:
            reply = await self.version.Version(empty_pb2.Empty(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise BackendUnavailable(
                f"containerd is not reachable at {self.address}: {(exc.details() or exc.code().name).strip()}"
            ) from None
        return str(reply.version)

    async def close(self) -> None:
        await self.channel.close()

    async def call(self, method: Callable[..., Any], request: Any, timeout: float | None = 0.0) -> Any:
        """One RPC in our namespace; *timeout* 0 = :data:`CALL_TIMEOUT`, ``None`` = no deadline."""
        return await method(request, metadata=self.metadata, timeout=CALL_TIMEOUT if timeout == 0.0 else timeout)

    async def retrying(self, what: str, op: Callable[[], Awaitable[T]], patience: float | None) -> T:
        """Run *op*, again every second while containerd is unavailable (for *patience* s)."""
        loop = asyncio.get_running_loop()
        deadline = None if patience is None else loop.time() + patience
        while True:
            try:
                return await op()
            except grpc.aio.AioRpcError as exc:
                if not is_gone(exc):
                    raise
                if deadline is not None and loop.time() >= deadline:
                    raise BackendUnavailable(describe(exc, what)) from None
            await asyncio.sleep(RETRY_INTERVAL)

    # -- requests ------------------------------------------------------------------

    def container(self, cid: str, oci: dict[str, Any], labels: dict[str, str], runc_root: str) -> Any:
        options = oci_pb2.Options(root=runc_root)
        runtime = containers_pb2.Container.Runtime(
            name=RUNTIME,
            options=any_pb2.Any(type_url=RUNC_OPTIONS_TYPE_URL, value=options.SerializeToString()),
        )
        spec = any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(oci).encode())
        # No image, snapshotter or snapshot key: the spec's root.path is the rootfs dir.
        return containers_pb2.CreateContainerRequest(
            container=containers_pb2.Container(id=cid, labels=labels, runtime=runtime, spec=spec)
        )

    async def list_containers(self, label: str) -> list[Any]:
        req = containers_pb2.ListContainersRequest(filters=[f'labels."{label}"'])
        reply = await self.call(self.containers.List, req)
        return list(reply.containers)

    async def create_task(self, cid: str, stdio: str) -> Any:
        # One FIFO for stdout and stderr: the shim copies both into it as they come.
        req = tasks_pb2.CreateTaskRequest(container_id=cid, stdout=stdio, stderr=stdio, terminal=False)
        return await self.call(self.tasks.Create, req)

    async def start_task(self, cid: str) -> Any:
        return await self.call(self.tasks.Start, tasks_pb2.StartRequest(container_id=cid))

    async def wait_task(self, cid: str) -> int:
        reply = await self.call(self.tasks.Wait, tasks_pb2.WaitRequest(container_id=cid), timeout=None)
        return int(reply.exit_status)

    async def kill_task(self, cid: str, signum: int) -> None:
        """Signal every process of the task; a task already gone is not an error."""
        try:
            await self.call(self.tasks.Kill, tasks_pb2.KillRequest(container_id=cid, signal=signum, all=True))
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise

    async def delete_task(self, cid: str) -> None:
        try:
            await self.call(self.tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=cid))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    async def delete_container(self, cid: str) -> None:
        try:
            await self.call(self.containers.Delete, containers_pb2.DeleteContainerRequest(id=cid))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
