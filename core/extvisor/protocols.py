"""What a backend or a condition implements, and what it is handed.

pluggy finds plugins; these Protocols are the runtime contract with the objects they
register. A backend launches one container per service run; a condition waits.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from extvisor.documents.models import ExtensionServiceConfig, ServiceSpec
    from extvisor.state import Health


class BackendError(Exception):
    """A backend could not do what was asked; the message is shown in the service's events."""


class BackendUnavailable(BackendError):
    """The runtime (a daemon socket, a binary) cannot be reached now; try again later."""


@dataclass(frozen=True)
class ExitStatus:
    """How a container's init process ended: an exit code, or the signal that killed it."""

    code: int | None = None
    signal: int | None = None

    @property
    def success(self) -> bool:
        return self.code == 0 and self.signal is None

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        """Decode a wait(2) status, or a shell-style 128+N code as runtimes report kills."""
        if status > 128 and status - 128 < 65:
            return cls(signal=status - 128)
        return cls(code=status)

    def __str__(self) -> str:
        if self.signal is not None:
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        return f"exit code {self.code}"


@dataclass(frozen=True)
class ContainerStats:
    """What a container costs now, as a backend reads it (hook ``extvisor_container_stats``)."""

    cpu_seconds: float  #: CPU time used by all its processes since it started, user + system
    memory_bytes: int  #: working set: memory in use minus inactive file cache
    rss_bytes: int  #: anonymous memory (RSS)
    pids: tuple[int, ...] = ()  #: its processes as host PIDs, when known
    processes: int | None = None  #: how many processes; ``len(pids)`` when not given
    source: str = ""  #: where the figures came from: ``cgroup v1``, ``containerd``, ``podman``...

    @property
    def process_count(self) -> int:
        return self.processes if self.processes is not None else len(self.pids)


#: how much of an exec's output is kept (Docker's ``maxOutputLen``)
EXEC_OUTPUT_MAX = 4096


@dataclass(frozen=True)
class ExecResult:
    """How a command run inside a running container ended (:meth:`Backend.exec`)."""

    exit_code: int | None  #: ``None`` when it was killed at its timeout
    output: bytes = b""  #: stdout and stderr together, the first :data:`EXEC_OUTPUT_MAX` bytes
    timed_out: bool = False


class LogSink(Protocol):
    """Where a backend writes a container's output (stdout and stderr, in the order produced)."""

    def write(self, data: bytes) -> None: ...


@dataclass
class LaunchRequest:
    """Everything a backend needs to start one run of a service."""

    service_id: str  #: ``ext-<name>``; also the container id
    spec: ServiceSpec
    oci: dict[str, Any]  #: the OCI runtime spec from :func:`extvisor.oci.build_oci_spec`
    rootfs: Path
    log: LogSink
    state_dir: Path  #: a directory the backend may use for this service (bundles, FIFOs)


@runtime_checkable
class ContainerHandle(Protocol):
    """One running container."""

    id: str
    pid: int

    async def wait(self) -> ExitStatus:
        """Return once the container's init process has exited, with its status."""
        ...

    async def signal(self, signum: int) -> None:
        """Send *signum* to every process of the container."""
        ...

    async def delete(self) -> None:
        """Remove the container and what it holds (cgroup, bundle); idempotent."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A container runtime. One instance serves the whole daemon."""

    name: str

    async def open(self) -> None:
        """Connect or check the runtime. Raise :class:`BackendUnavailable` if it is not there."""
        ...

    async def cleanup(self, keep: frozenset[str] = frozenset()) -> list[str]:
        """Remove containers a previous daemon left behind; return their ids.

        Called once after :meth:`open`, before any launch. Never two instances of a service.
        """
        ...

    async def launch(self, request: LaunchRequest) -> ContainerHandle:
        """Create and start the container; return once its process runs."""
        ...

    # Optional: ``async def adopt(self, request: LaunchRequest) -> ContainerHandle | None``.
    # Called after open() and before cleanup() by a daemon that finds, in its state dir, that
    # an earlier daemon ran request.service_id with this very spec. Return a handle on that
    # container if it still runs (same PID; its output from where the earlier daemon stopped
    # reading), or if it ended meanwhile with its status known (wait() answers at once, the
    # restart policy applies), or None (no such container, or the backend cannot adopt): cleanup() then
    # removes it and the service starts afresh. A backend without the method adopts nothing.

    # Optional: ``async def exec(self, container: ContainerHandle, argv: Sequence[str],
    # timeout: float) -> ExecResult``. Run *argv* inside the running *container* (the handle
    # launch() or adopt() returned): in its namespaces and cgroup, with its process's
    # environment, user, working directory and capabilities, stdin empty, stdout and stderr
    # merged (keep the first EXEC_OUTPUT_MAX bytes, read and drop the rest). At *timeout*
    # seconds kill it and what it started (extvisor.oci.procs.kill_tree) and return
    # ExecResult(None, output, timed_out=True); never leave it running. A command that cannot be started ends with the runtime's code for that (runc
    # 255, containerd and podman 127) and its message as output; when the runtime itself
    # fails, raise BackendError. Health checks (``healthcheck: test:``) call it;
    # a backend without it runs services whose check is ``tcp``, ``http`` or ``notify`` only.

    async def close(self) -> None:
        """Release connections. Containers are stopped by the supervisor before this."""
        ...


INSTANCE_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


def instance_name(state_dir: Path | str) -> str:
    """The name that keeps one daemon's cgroups and runtime objects apart from another's.

    Derived from the state directory (its real path), so a daemon restarted on the same
    state directory finds what it left, and two daemons on one host never share a name.
    """
    real = os.path.realpath(str(state_dir))
    return "s" + hashlib.sha256(real.encode()).hexdigest()[:10]


@dataclass
class BackendConfig:
    """What a backend factory is given."""

    state_dir: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    #: this daemon's instance name (``--instance``, else derived from its state directory):
    #: backends put it in what the runtime shares between daemons (namespaces, names).
    instance: str = ""

    @property
    def scope(self) -> str:
        return self.instance or instance_name(self.state_dir)


class ServiceView(Protocol):
    """Read-only view of the supervisor's services, for conditions."""

    def state(self, service_id: str) -> str | None:
        """The state name (``Running``, ...) or ``None`` when no such service is registered."""
        ...

    def is_up(self, service_id: str) -> bool:
        """Talos's "up": ``Running`` and, when the service has a health check, healthy."""
        ...

    def health(self, service_id: str) -> Health | None:
        """The service's health; ``None`` when it has no health check (or is not registered)."""
        ...

    async def changed(self) -> None:
        """Return at the next state change of any service (health changes included)."""
        ...


class ConfigView(Protocol):
    """The ExtensionServiceConfig documents the daemon knows, by service name."""

    def get(self, name: str) -> ExtensionServiceConfig | None: ...

    async def changed(self) -> None: ...


@dataclass
class ConditionContext:
    """Handed to a condition kind's factory."""

    service_id: str
    spec: ServiceSpec
    services: ServiceView
    configs: ConfigView
    options: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Condition(Protocol):
    """Something a service waits for before it starts (Talos's ``conditions.Condition``)."""

    def describe(self) -> str:
        """What is awaited, in Talos's words: ``file "/run/x" to exist``. May change over time."""
        ...

    async def wait(self) -> None:
        """Return once satisfied. Raise to fail the service; cancellation aborts the wait."""
        ...
