"""Every hook extvisor calls. Plugins implement them with ``@extvisor.hookimpl``.

Registration hooks yield typed records (:mod:`extvisor.records`); the plugin manager
collects, checks and sorts them. The other hooks are notifications around a service's
life, called by the supervisor. The hooks that decide one thing stop at the first
non-``None`` result (``firstresult``): ``extvisor_stop_signal`` and
``extvisor_container_stats``.

docs/hooks.md documents each hook; tests/test_meta.py fails when one is not documented
or not tested.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from extvisor.documents.models import ServiceSpec
    from extvisor.protocols import ContainerHandle, ContainerStats, ExitStatus
    from extvisor.records import BackendType, ConditionKind, LoadContext, LoadedService
    from extvisor.state import ServiceEvent

_hookspec = pluggy.HookspecMarker("extvisor")


# -- registration --------------------------------------------------------------------


@_hookspec
def extvisor_register_backends() -> Iterable[BackendType]:
    """Offer container runtimes.

    Called once, when the daemon starts or ``extvisor plugins`` lists plugins. Not
    firstresult: every plugin's records are collected, a name given twice is reported
    with both plugins and the later one is skipped, and the result is sorted by name.

    :returns: an iterable of :class:`~extvisor.records.BackendType`.

    **Example:**

    .. code-block:: python

        @hookimpl
        def extvisor_register_backends():
            yield BackendType(name="runc", factory=RuncBackend, description="runc, no daemon")
    """
    return ()


@_hookspec
def extvisor_register_conditions() -> Iterable[ConditionKind]:
    """Offer ``depends`` keys: what a service can wait for.

    Called once, before any service file is read, because each kind's ``value_type``
    validates its key. Not firstresult: collected from every plugin, duplicates reported,
    sorted by key. A key no plugin offers is an error that lists the keys known.

    :returns: an iterable of :class:`~extvisor.records.ConditionKind`.

    **Example:**

    .. code-block:: python

        @hookimpl
        def extvisor_register_conditions():
            yield ConditionKind(key="tcp", value_type=str, factory=TcpCondition)
    """
    return ()


# -- loading -------------------------------------------------------------------------


@_hookspec
def extvisor_load_services(context: LoadContext) -> Iterable[LoadedService]:
    """Read service specs from a source: the config directory, or anything else.

    Called when the daemon starts. Not firstresult: the results of every plugin are
    joined, in plugin-name order; when two sources declare one ``name`` the first wins
    and the other is reported, as Talos does for files.

    :param context: the daemon's config directory and strictness.
    :returns: an iterable of :class:`~extvisor.records.LoadedService`, one per source,
        with ``spec=None`` and findings when the source is unusable.
    """
    return ()


# -- a service's life ----------------------------------------------------------------


@_hookspec
def extvisor_prepare_container(service_id: str, spec: ServiceSpec, oci: dict[str, Any]) -> None:
    """Adjust a container's OCI spec just before it is launched.

    Called before every launch, restarts included, after the core built the spec (mounts,
    environment, ExtensionServiceConfig files). Not firstresult: every plugin may change
    *oci* in place. An exception fails this run of the service, with the error as event.

    :param service_id: ``ext-<name>``.
    :param spec: the service's validated spec (do not change it).
    :param oci: the OCI runtime spec as a dict, to be changed in place.
    :returns: nothing.
    """


@_hookspec(firstresult=True)
def extvisor_stop_signal(service_id: str, spec: ServiceSpec) -> int | None:
    """Choose the signal that asks a service to stop.

    Called each time a running service is stopped, before the signal is sent; SIGKILL
    follows after the grace period whatever is chosen. firstresult: the first non-``None``
    answer wins; with none, SIGTERM is sent.

    :param service_id: ``ext-<name>``.
    :param spec: the service's spec.
    :returns: a signal number, or ``None`` to leave the choice to others.
    """


@_hookspec
def extvisor_container_exited(service_id: str, status: ExitStatus, stopped: bool) -> None:
    """Learn that a service's container ended.

    Called once per run, after the container's init exited and before the restart policy
    acts. Not firstresult: every plugin is told.

    :param service_id: ``ext-<name>``.
    :param status: exit code or signal.
    :param stopped: ``True`` when extvisor stopped it (operator or shutdown).
    :returns: nothing.
    """


@_hookspec
def extvisor_log_lines(service_id: str, lines: list[bytes]) -> None:
    """Receive a service's output, line by line, as it is written to its log file.

    Called from the daemon's event loop for each batch of complete lines (a batch holds
    what one read returned), in order. Not firstresult. Keep it fast: a slow hook slows
    the service's log. ``logToConsole`` is implemented with this hook.

    :param service_id: ``ext-<name>``.
    :param lines: complete lines, each ending with ``b"\\n"``.
    :returns: nothing.
    """


@_hookspec
def extvisor_service_event(event: ServiceEvent) -> None:
    """Receive every state change of every service (for consoles, metrics, dashboards).

    Called for each event the supervisor records, in order. Not firstresult. An exception
    is logged and ignored.

    :param event: service id, state, message and time.
    :returns: nothing.
    """


# -- what a service costs --------------------------------------------------------------


@_hookspec(firstresult=True)
def extvisor_container_stats(service_id: str, container: ContainerHandle) -> ContainerStats | None:
    """Read a running container's CPU time, memory and processes.

    Called every few seconds for each running service (``extvisor stats``, the dashboard's
    Monitor screen and ``/metrics`` read the result), from the daemon's event loop.
    firstresult: the backend that launched *container* answers, the others return
    ``None``; with no answer the core reads the cgroup of ``container.pid`` itself
    (:func:`extvisor.oci.cgroups.read_stats`), which suits any backend whose containers
    run on this host. A coroutine may be returned (it is awaited) for runtimes with an
    async API. An exception is logged and the core's reading is used.

    :param service_id: ``ext-<name>``.
    :param container: the handle :meth:`Backend.launch` returned for this run.
    :returns: a :class:`~extvisor.protocols.ContainerStats`, an awaitable of one, or
        ``None`` to leave it to others.
    """
