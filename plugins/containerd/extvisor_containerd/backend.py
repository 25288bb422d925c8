"""Services as containerd containers: no image, no snapshotter, runtime io.containerd.runc.v2.

Each run is a container whose spec is the core's OCI spec (root.path = the rootfs dir)
and one task. Output goes through a FIFO under the service's state dir; the exit code
comes from Tasks.Wait, which is re-issued after containerd restarts (the shim keeps the
task and its exit status meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import signal
from pathlib import Path
from typing import Any

from extvisor import BackendConfig, BackendError, BackendUnavailable, ExecResult, ExitStatus, LaunchRequest
from extvisor.oci import fit_to_host
from extvisor.oci.cgroups import daemon_parent, remove_cgroup_dirs
from extvisor.oci.procs import watch_kill

from . import client as c
from .execs import container_process, task_exec
from .fifo import FifoReader, remove_fifo

log = logging.getLogger("extvisor.containerd")

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = ""  # empty: extvisor-<instance>, one namespace per daemon
LABEL = "io.extvisor.service"  # value: the service id; marks the container as extvisor's
FIFO_LABEL = "io.extvisor.stdio"  # the FIFO path, so a later daemon can remove it
PATIENCE = 60.0  # how long signal/delete/cleanup retry while containerd is away
DRAIN_TIMEOUT = 5.0  # output still in flight after the exit


def _option(config: BackendConfig, key: str, default: str) -> str:
    value = config.options.get(key.replace("-", "_"), config.options.get(key))
    return str(value) if value else default


class ContainerdBackend:
    """A :class:`extvisor.Backend` over containerd's gRPC API (grpc.aio)."""

    name = "containerd"

    def __init__(self, config: BackendConfig) -> None:
        self.address = _option(config, "containerd-address", DEFAULT_ADDRESS)
        # Two daemons in one namespace would see (and remove) each other's containers.
        self.namespace = _option(config, "containerd-namespace", DEFAULT_NAMESPACE) or f"extvisor-{config.scope}"
        self.runc_root = Path(config.state_dir) / "runc"  # runc state kept private to us
        self.client: c.Client | None = None
        self._cgroup_parents: set[str] = set()  # daemon_parent: the shim removes only a task's own

    def _client(self) -> c.Client:
        if self.client is None:
            raise BackendError("the containerd backend is not open")
        return self.client

    async def open(self) -> None:
        c.check_imports()
        if self.client is None:
            self.client = c.Client(self.address, self.namespace)
        try:
            version = await self.client.check()
        except BackendUnavailable:
            await self.close()
            raise
        self.runc_root.mkdir(parents=True, exist_ok=True)
        log.info("containerd %s at %s, namespace %r", version, self.address, self.namespace)

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
        for parent in self._cgroup_parents:  # only empty ones go: a detached task keeps its own
            remove_cgroup_dirs(parent)

    def _remember_parent(self, oci: dict[str, Any]) -> None:
        self._cgroup_parents.add(daemon_parent(str((oci.get("linux") or {}).get("cgroupsPath") or "")))

    async def cleanup(self, keep: frozenset[str] = frozenset()) -> list[str]:
        client = self._client()
        try:
            found = await client.retrying("list containers", lambda: client.list_containers(LABEL), PATIENCE)
        except c.grpc.aio.AioRpcError as exc:
            raise BackendError(c.describe(exc, "cleanup: listing containers")) from None
        removed = []
        for container in found:
            if container.id in keep:
                continue
            try:
                await remove(client, container.id, fifo=container.labels.get(FIFO_LABEL))
            except BackendError as exc:  # the others are still removed; a launch will say more
                log.warning("cleanup: %s", exc)
                continue
            removed.append(container.id)
        return sorted(removed)

    async def adopt(self, request: LaunchRequest) -> ContainerdHandle | None:
        """The running task of our container *request.service_id*, its FIFO reopened; or None."""
        client = self._client()
        cid = request.service_id
        self._remember_parent(request.oci)
        try:
            got = await client.call(client.containers.Get, c.containers_pb2.GetContainerRequest(id=cid))
            labels = got.container.labels
            if labels.get(LABEL) != cid or not labels.get(FIFO_LABEL):
                return None
            task = await client.call(client.tasks.Get, c.tasks_pb2.GetRequest(container_id=cid))
        except c.grpc.aio.AioRpcError as exc:
            if c.is_not_found(exc):
                return None
            raise BackendError(c.describe(exc, f"{cid}: adopting")) from None
        if task.process.status not in (c.task_pb2.Status.RUNNING, c.task_pb2.Status.STOPPED):
            return None  # neither running nor ended (created, paused): cleanup removes it
        # One that ended while no daemon watched is adopted too: the shim keeps its exit status
        # (Tasks.Wait answers at once) and what its FIFO still holds is read to the end.
        try:
            fifo = FifoReader(Path(labels[FIFO_LABEL]), request.log, reopen=True)
        except OSError as exc:
            log.warning("%s: cannot reopen its output %s: %s", cid, labels[FIFO_LABEL], exc)
            return None
        return ContainerdHandle(client, cid, int(task.process.pid), fifo)

    async def exec(self, container: ContainerdHandle, argv: list[str], timeout: float) -> ExecResult:
        """Run *argv* in the running *container* (``Tasks.Exec``; health checks)."""
        return await container.exec(argv, timeout)

    async def _remove_stale(self, cid: str) -> bool:
        """Remove our own container *cid* if no task of it runs (a launch cut short by a
        containerd restart leaves one); another daemon's, or a running one, stays."""
        client = self._client()
        got = await client.call(client.containers.Get, c.containers_pb2.GetContainerRequest(id=cid))
        labels = got.container.labels
        if labels.get(LABEL) != cid:
            return False
        try:
            task = await client.call(client.tasks.Get, c.tasks_pb2.GetRequest(container_id=cid))
            if task.process.status != c.task_pb2.Status.STOPPED:
                return False
        except c.grpc.aio.AioRpcError as exc:
            if not c.is_not_found(exc):
                raise
        log.warning("%s: removing a stale container left by an interrupted launch", cid)
        await remove(client, cid, fifo=labels.get(FIFO_LABEL))
        return True

    async def launch(self, request: LaunchRequest) -> ContainerdHandle:
        client = self._client()
        cid = request.service_id
        oci = copy.deepcopy(request.oci)  # our copy: fit_to_host changes it
        for note in fit_to_host(oci):
            log.info("%s: %s", cid, note)
        self._remember_parent(oci)
        fifo_path = request.state_dir / f"{cid}.stdio"
        labels = {LABEL: cid, FIFO_LABEL: str(fifo_path)}
        create = client.container(cid, oci, labels, str(self.runc_root))
        try:
            try:
                await client.call(client.containers.Create, create)
            except c.grpc.aio.AioRpcError as exc:
                if exc.code() != c.grpc.StatusCode.ALREADY_EXISTS or not await self._remove_stale(cid):
                    raise
                await client.call(client.containers.Create, create)
        except BaseException as exc:
            if c.code_of(exc) == c.grpc.StatusCode.DEADLINE_EXCEEDED:
                with contextlib.suppress(Exception):  # it may have been made after all
                    await client.delete_container(cid)
            raise _launch_error(exc, cid, "creating the container", client.namespace) from None
        fifo: FifoReader | None = None
        try:
            fifo = FifoReader(fifo_path, request.log)  # before the task: the shim opens it
            created = await client.create_task(cid, str(fifo_path))
            await client.start_task(cid)
        except BaseException as exc:
            # Remove the half-made container so that the next try can use the id.
            with contextlib.suppress(Exception):
                await remove(client, cid, fifo=None, patience=0)
            if fifo is not None:
                fifo.close()
            raise _launch_error(exc, cid, "starting the task") from None
        return ContainerdHandle(client, cid, int(created.pid), fifo)


def _launch_error(exc: BaseException, cid: str, what: str, namespace: str = "") -> BaseException:
    if not isinstance(exc, Exception) or c.code_of(exc) is None:
        return exc
    if c.is_gone(exc):
        return BackendUnavailable(c.describe(exc, f"{cid}: {what}"))
    if c.code_of(exc) == c.grpc.StatusCode.ALREADY_EXISTS:
        return BackendError(
            f"{cid}: {what}: containerd already has a container {cid!r} in namespace {namespace!r} "
            "(is another extvisor daemon using this namespace?)"
        )
    return BackendError(c.describe(exc, f"{cid}: {what}"))


async def remove(client: c.Client, cid: str, fifo: str | None, patience: float = PATIENCE) -> None:
    """Kill, then delete the task and the container *cid* (what cleanup() and delete() do)."""

    async def kill_and_wait() -> None:
        await client.kill_task(cid, signal.SIGKILL)
        try:
            await client.call(client.tasks.Wait, c.tasks_pb2.WaitRequest(container_id=cid))
        except c.grpc.aio.AioRpcError as exc:
            if not c.is_not_found(exc):
                raise

    try:
        await client.retrying(f"{cid}: kill", kill_and_wait, patience)
        await client.retrying(f"{cid}: delete task", lambda: client.delete_task(cid), patience)
        await client.retrying(f"{cid}: delete container", lambda: client.delete_container(cid), patience)
    except c.grpc.aio.AioRpcError as exc:
        raise BackendError(c.describe(exc, f"{cid}: removing the container")) from None
    if fifo:
        remove_fifo(Path(fifo))


class ContainerdHandle:
    """One task of one container."""

    def __init__(self, client: c.Client, cid: str, pid: int, fifo: FifoReader) -> None:
        self.client = client
        self.id = cid
        self.pid = pid
        self.fifo = fifo
        self.deleted = False
        self._forced: ExitStatus | None = None  # set when kill_hard() saw the init die
        self._process: dict[str, Any] | None = None  # the spec's process, for exec
        # Waiting starts now, so an exit is never missed whoever calls wait() when.
        self._exit: asyncio.Future[ExitStatus] = asyncio.ensure_future(self._wait_exit())

    async def _wait_exit(self) -> ExitStatus:
        try:
            code = await self.client.retrying(f"{self.id}: wait", lambda: self.client.wait_task(self.id), None)
        except c.grpc.aio.AioRpcError as exc:
            if c.is_not_found(exc):
                # The task was deleted by someone else (a cleanup) before we saw its end.
                log.warning("%s: task vanished; its exit status is unknown", self.id)
                return ExitStatus(signal=signal.SIGKILL)
            raise BackendError(c.describe(exc, f"{self.id}: waiting for the exit")) from None
        return ExitStatus.from_wait_status(code)

    async def wait(self) -> ExitStatus:
        try:
            status = await asyncio.shield(self._exit)
        except asyncio.CancelledError:
            if not self._exit.cancelled():
                raise  # our caller was cancelled
            if self._forced is not None:
                return self._forced
            raise BackendError(f"{self.id}: deleted before its exit status was known") from None
        if not await self.fifo.drained(DRAIN_TIMEOUT):
            log.warning("%s: output still open %.0fs after the exit; closing it", self.id, DRAIN_TIMEOUT)
        return status

    async def signal(self, signum: int) -> None:
        try:
            await self.client.retrying(f"{self.id}: signal", lambda: self.client.kill_task(self.id, signum), PATIENCE)
        except c.grpc.aio.AioRpcError as exc:
            raise BackendError(c.describe(exc, f"{self.id}: signal {signum}")) from None

    async def exec(self, argv: list[str], timeout: float) -> ExecResult:
        """*argv* as an exec process of this task, killed at *timeout* (execs.py)."""
        if self._process is None:  # the container's process, read once per run
            try:
                self._process = await container_process(self.client, self.id)
            except c.grpc.aio.AioRpcError as exc:
                raise BackendError(c.describe(exc, f"{self.id}: reading its spec")) from None
        return await task_exec(self.client, self.id, self._process, self.fifo.path.parent, argv, timeout)

    def kill_hard(self) -> None:
        """SIGKILL the task's init ourselves (containerd not answering); its exit is seen by pidfd."""
        if self._exit.done():
            return

        def gone() -> None:
            if self._forced is None:
                self._forced = ExitStatus(signal=signal.SIGKILL)
                self._exit.cancel()

        watch_kill(self.pid, gone)

    async def delete(self) -> None:
        if self.deleted:
            return
        await remove(self.client, self.id, fifo=None)
        # remove() saw the task end, so our own Wait returns at once (status or NOT_FOUND).
        if not self._exit.done():  # (cancelled by kill_hard(): nothing to wait for)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._exit), DRAIN_TIMEOUT)
        exited = self._exit.done()
        if not exited:
            self._exit.cancel()
        await self.fifo.drained(DRAIN_TIMEOUT if exited else 0)
        self.fifo.close()
        self.deleted = True

    def detach(self) -> None:
        """The daemon exits leaving the task running: stop waiting and reading, keep the FIFO."""
        if not self._exit.done():
            self._exit.cancel()
        self.fifo.detach()

    def __repr__(self) -> str:
        return f"ContainerdHandle({self.id!r}, pid={self.pid})"

