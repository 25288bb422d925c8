"""What a service and a host service need from whoever runs them: a narrow interface.

The :class:`~extvisor.runtime.supervisor.Supervisor` implements :class:`ServiceHost`;
``service`` and ``hostservices`` depend on this Protocol only, never on the supervisor,
so the three modules import one way (supervisor -> service, hostservices -> host).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from extvisor.shared import defaults

if TYPE_CHECKING:
    from extvisor.protocols import Condition, ConfigView, ContainerHandle
    from extvisor.records import ConditionKind
    from extvisor.documents.models import ServiceSpec
    from extvisor.state import ServiceEvent


@dataclass
class Options:
    """The supervisor's settings, read by every service it runs."""

    rootfs_dir: Path
    state_dir: Path
    log_dir: Path
    restart_delay: float = defaults.RESTART_DELAY
    restart_max_delay: float = defaults.RESTART_MAX_DELAY
    stop_timeout: float = defaults.STOP_TIMEOUT
    kill_timeout: float = defaults.KILL_TIMEOUT  #: after SIGKILL (then after the backend's own kill) before giving up
    shutdown_timeout: float = defaults.SHUTDOWN_TIMEOUT  #: the daemon's whole shutdown
    backend_retry: float = 2.0
    recheck: float = 1.0  #: how often a waiting description is re-read (Talos: 1 s)
    log_max_bytes: int = defaults.LOG_MAX_BYTES
    log_backups: int = defaults.LOG_BACKUPS
    condition_options: dict[str, Any] = field(default_factory=dict)
    #: where this daemon's containers' cgroups go: ``/extvisor/<instance>`` (one per daemon)
    cgroup_parent: str = "/extvisor"
    #: the rootfs of a service that brings none of its own, from (rootfs_dir, name); None: ``rootfs_dir / name``
    rootfs_layout: Callable[[Path, str], Path] | None = None

    def rootfs_for(self, name: str) -> Path:
        """The root filesystem of service *name* when whoever adds it does not say: ``<rootfs-dir>/<name>``."""
        if self.rootfs_layout is not None:
            return self.rootfs_layout(self.rootfs_dir, name)
        return self.rootfs_dir / name


class Launched(NamedTuple):
    """What a launch tells the service: its container, and the hash of the OCI spec it runs."""

    container: ContainerHandle
    spec_hash: str  #: recorded: a later daemon adopts the container only while its spec hashes the same


class ServiceHost(Protocol):
    """The supervisor as one service sees it."""

    options: Options
    backend_name: str
    kinds: dict[str, ConditionKind]
    configs: ConfigView
    pm: Any  #: the plugin manager; services call ``pm.hook.extvisor_*``
    #: the daemon exits leaving containers running: a run that ends keeps its container (adopted later)
    detaching: bool
    backend: Any  #: the Backend; health checks call its optional ``exec``

    def publish_health(self, service_id: str) -> None:
        """A service's health changed without an event (runtime/health.py): wake its waiters."""

    def publish(self, event: ServiceEvent) -> None:
        """Record a state change in the event stream."""

    def conditions_of(self, spec: ServiceSpec) -> list[Condition]:
        """The conditions *spec* waits for, in Talos's order."""

    def last_log(self, service_id: str) -> str:
        """The end of the service's log, for a failure message."""

    def is_up(self, service_id: str) -> bool: ...

    def state(self, service_id: str) -> str | None: ...

    async def changed(self) -> None: ...

    async def launch(self, spec: ServiceSpec, rootfs: Path) -> Launched:
        """Build the container of *spec* on *rootfs* and start it through the backend."""
