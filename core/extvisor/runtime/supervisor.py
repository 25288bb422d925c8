"""All services of a daemon: order, conditions, launch, events, logs and shutdown.

The supervisor owns one backend and one :class:`~extvisor.runtime.service.Service` per loaded spec.
Ordering is by conditions: a ``service:`` dependency waits until that service is up, so
services start as soon as what they need is there. Shutdown goes the other way: a service
is stopped only after every service depending on it has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from extvisor.runtime.adoption import Records
from extvisor.runtime.adoption import spec_hash
from extvisor.runtime.configstore import ConfigStore
from extvisor.runtime.health import refusal
from extvisor.runtime.hostservices import HostService
from extvisor.runtime.host import Launched, Options
from extvisor.runtime.logs import ServiceLog
from extvisor.documents.models import Dependency, ServiceSpec
from extvisor.oci import build_oci_spec
from extvisor.plugins import PluginManager
from extvisor.protocols import Backend, Condition, ConditionContext, LaunchRequest
from extvisor.records import ConditionKind
from extvisor.runtime.service import Service
from extvisor.runtime.stats import StatsCollector
from extvisor.state import Health, ServiceEvent, State

log = logging.getLogger("extvisor.supervisor")


def find_cycles(deps: dict[str, list[str]]) -> list[list[str]]:
    """Every dependency cycle among *deps* (id -> ids it depends on), each as a path a -> ... -> a."""
    cycles: list[list[str]] = []
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        color[node] = 1
        stack.append(node)
        for nxt in deps.get(node, ()):
            if nxt not in deps:
                continue
            if color.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in color:
                visit(nxt)
        stack.pop()
        color[node] = 2

    for node in sorted(deps):
        if node not in color:
            visit(node)
    return cycles


class Supervisor:
    def __init__(
        self,
        pm: PluginManager,
        backend: Backend,
        options: Options,
        kinds: dict[str, ConditionKind],
        configs: ConfigStore | None = None,
        host_services: Iterable[HostService] = (),
    ):
        self.pm = pm
        self.backend = backend
        self.backend_name = getattr(backend, "name", "backend")
        self.options = options
        self.kinds = kinds
        self.configs = configs or ConfigStore(None, options.state_dir / "configs")
        self.services: dict[str, Service] = {}
        self.host_services = {h.id: h for h in host_services}
        self.logs: dict[str, ServiceLog] = {}
        self._tails: dict[str, list[bytes]] = {}  # the last lines of each service, for "last log"
        self.started_at = time.time()
        self._changed = asyncio.Event()
        self._subscribers: set[asyncio.Queue[ServiceEvent]] = set()
        self.backend_ready = False
        self.detaching = False  #: the daemon exits leaving containers running (adopted later)
        self._backend_lock = asyncio.Lock()
        self.stats = StatsCollector(self)  #: CPU, memory, processes of each service
        self.records = Records(options.state_dir)  #: what the next daemon adopts from

    # -- loading -----------------------------------------------------------------------

    def add(self, spec: ServiceSpec, source: str = "", rootfs: Path | None = None) -> Service:
        """Add a service on *rootfs* (default: the options' rule, ``<rootfs-dir>/<name>``), not started."""
        service = Service(spec, self, source, rootfs or self.options.rootfs_for(spec.name))
        self.services[service.id] = service
        self.logs[service.id] = ServiceLog(
            self.options.log_dir / f"{service.id}.log",
            on_lines=self._line_sink(service),
            max_bytes=self.options.log_max_bytes,
            backups=self.options.log_backups,
            on_problem=lambda msg: self._log_problem(service, msg),
        )
        self._check_health(service)
        return service

    def _check_health(self, service: Service) -> None:
        service.health.refused = refusal(service.spec, self.backend)
        if service.health.refused:
            log.error("%s (%s): %s", service.id, service.source or "service", service.health.refused,
                      extra={"service": service.id})

    def _log_problem(self, service: Service, msg: str) -> None:
        """A log that cannot be written, or was deleted: an event of the service and a daemon warning."""
        log.warning("%s: %s", service.id, msg, extra={"service": service.id})
        event = ServiceEvent(service=service.id, state=service.state, msg=msg)
        service.history.push(event)  # the state does not change: the service runs on
        self.publish(event)

    def _line_sink(self, service: Service):  # type: ignore[no-untyped-def]
        hook = self.pm.hook.extvisor_log_lines
        tail = self._tails.setdefault(service.id, [])

        def sink(lines: list[bytes]) -> None:
            tail.extend(lines[-8:])
            del tail[:-8]
            try:
                hook(service_id=service.id, lines=lines)
            except Exception as exc:
                log.warning("extvisor_log_lines hook failed: %r", exc)

        return sink

    def last_log(self, service_id: str) -> str:
        """The end of the service's output (≤512 bytes of whole lines), as Talos reports it."""
        lines = self._tails.get(service_id, [])
        text = b"".join(lines)[-512:].decode(errors="replace")
        if len(text) == 512 and "\n" in text[:-1]:
            text = text[text.index("\n") + 1 :]
        return text.rstrip("\n")

    # -- events --------------------------------------------------------------------------

    def publish(self, event: ServiceEvent) -> None:
        log.info("service[%s](%s): %s", event.service, event.state.value, event.msg,
                 extra={"service": event.service, "state": event.state.value})
        service = self.services.get(event.service)
        if service is not None:
            self.records.changed(service)
        self._changed.set()
        self._changed = asyncio.Event()
        for queue in list(self._subscribers):
            queue.put_nowait(event)
        try:
            self.pm.hook.extvisor_service_event(event=event)
        except Exception as exc:
            log.warning("extvisor_service_event hook failed: %r", exc)

    def subscribe(self) -> asyncio.Queue[ServiceEvent]:
        queue: asyncio.Queue[ServiceEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[ServiceEvent]) -> None:
        self._subscribers.discard(queue)

    # ServiceView, for conditions
    def state(self, service_id: str) -> str | None:
        if service_id in self.host_services:
            return self.host_services[service_id].state
        service = self.services.get(service_id)
        return service.state.value if service else None

    def is_up(self, service_id: str) -> bool:
        # Talos: up = Running and, when it has a health check, healthy; Finished is not up.
        if self.state(service_id) not in (State.Running.value, State.Skipped.value):
            return False
        health = self.health(service_id)
        return health is None or (not health.unknown and health.healthy)

    def health(self, service_id: str) -> Health | None:
        service = self.services.get(service_id)
        return service.health.view() if service is not None else None

    def publish_health(self, service_id: str) -> None:
        """A service's health changed without an event: wake whoever waits on it."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    # -- conditions and launch -------------------------------------------------------------

    def conditions_of(self, spec: ServiceSpec) -> list[Condition]:
        ctx = ConditionContext(spec.id, spec, self, self.configs, self.options.condition_options)
        deps = list(spec.depends or [])
        if spec.container.environmentFile:
            deps.insert(0, Dependency(kind="path", value=spec.container.environmentFile))
        # Talos orders service conditions first, then the others in file order.
        deps.sort(key=lambda d: d.kind != "service")
        conditions = []
        for dep in deps:
            kind = self.kinds.get(dep.kind)
            if kind is None:
                raise RuntimeError(f"no plugin provides the dependency kind {dep.kind!r}")
            conditions.append(kind.factory(dep.value, ctx))
        return conditions

    async def _ensure_backend(self) -> None:
        # A backend that was unreachable when the daemon started is opened on first use.
        async with self._backend_lock:
            if not self.backend_ready:
                await self.backend.open()
                removed = await self.backend.cleanup()
                if removed:
                    log.warning("removed containers left by an earlier daemon: %s", ", ".join(removed))
                self.backend_ready = True

    async def launch(self, spec: ServiceSpec, rootfs: Path) -> Launched:
        await self._ensure_backend()
        self.logs[spec.id].ensure_open()  # Talos: "error creating log"
        request = self.request_for(spec, rootfs)
        hashed = spec_hash(request.oci)
        began = time.monotonic()
        launching = self.backend.launch(request)
        del request  # the backend keeps what it needs: fifty starts at once must not hold fifty specs
        handle = await launching
        self.stats.observe_start(spec.id, time.monotonic() - began)
        return Launched(handle, hashed)

    def request_for(self, spec: ServiceSpec, rootfs: Path) -> LaunchRequest:
        """What the backend is given to run *spec* on *rootfs* now (also compared with a running one's)."""
        env_file = self.configs.read_environment_file(spec)
        esc_env, esc_mounts = self.configs.materialize(spec.name)
        oci = build_oci_spec(spec, rootfs, env_file=env_file, extra_env=esc_env, extra_mounts=esc_mounts,
                             cgroup_parent=self.options.cgroup_parent)
        self.pm.hook.extvisor_prepare_container(service_id=spec.id, spec=spec, oci=oci)
        state_dir = self.options.state_dir / "services" / spec.id
        state_dir.mkdir(parents=True, exist_ok=True)
        if spec.id in self.services:  # a notify check: its socket in the container
            self.services[spec.id].health.prepare(oci, state_dir)
        return LaunchRequest(spec.id, spec, oci, rootfs, self.logs[spec.id], state_dir)

    # -- the whole set -------------------------------------------------------------------

    def start_all(self) -> None:
        graph = {s.id: s.spec.service_dependencies() for s in self.services.values()}
        in_cycle: dict[str, list[str]] = {}
        for cycle in find_cycles(graph):
            for member in cycle[:-1]:
                in_cycle.setdefault(member, cycle)
        for host in self.host_services.values():
            host.start(self)
        self.stats.start()
        for service in sorted(self.services.values(), key=lambda s: s.id):
            if service.id in in_cycle:
                service.fail("Dependency cycle: " + " -> ".join(in_cycle[service.id]))
            else:
                service.start()

    async def apply(self, spec: ServiceSpec, source: str = "", rootfs: Path | None = None) -> Service:
        """Add a service, or replace a service's spec and rootfs (keeping its history), and (re)start it.

        *rootfs* defaults to the options' rule, as in :meth:`add`.
        """
        rootfs = rootfs or self.options.rootfs_for(spec.name)
        service = self.services.get(spec.id)
        if service is None:
            service = self.add(spec, source, rootfs)
        else:
            await service.stop()
            service.spec, service.source, service.rootfs = spec, source, rootfs
            self._check_health(service)
            service.push(State.Initialized, "Service spec changed")
        service.start()
        return service

    async def remove(self, service_id: str) -> None:
        """Stop a service and forget it (its log file stays)."""
        service = self.services.get(service_id)
        if service is None:
            return
        await service.stop()
        service.health.close()
        del self.services[service_id]
        self.records.forget(service_id)
        self.logs.pop(service_id).close()
        self._tails.pop(service_id, None)
        self._changed.set()
        self._changed = asyncio.Event()

    async def detach(self) -> None:
        """Stop supervising, leaving every container running for the next daemon to adopt."""
        self.detaching = True
        for service in self.services.values():
            service.health.pause()  # no more events: the records written next are the last
        self.records.flush()  # while the pids are set: a pending record written later would say "not running"
        await asyncio.gather(*(s.detach() for s in self.services.values()))
        for service_log in self.logs.values():
            service_log.close()

    def dependents(self, service_id: str) -> list[str]:
        return [s.id for s in self.services.values() if service_id in s.spec.service_dependencies()]

    async def stop_with_dependents(self, service_id: str) -> None:
        """Stop *service_id* after every service that depends on it has stopped."""
        await self.shutdown([service_id, *self._transitive_dependents(service_id)])

    def _transitive_dependents(self, service_id: str) -> set[str]:
        seen: set[str] = set()
        todo = [service_id]
        while todo:
            for dep in self.dependents(todo.pop()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    async def shutdown(self, ids: Iterable[str] | None = None) -> None:
        """Stop services in reverse dependency order (dependents first), concurrently where free."""
        remaining = set(self.services if ids is None else ids)
        while remaining:
            # Those no remaining service depends on can go now.
            ready = [i for i in remaining if not any(d in remaining for d in self.dependents(i) if d != i)]
            if not ready:  # a cycle: nothing is free, stop them all together
                ready = list(remaining)
            await asyncio.gather(*(self.services[i].stop() for i in ready))
            remaining -= set(ready)
        if ids is None:
            self.records.flush()
            await self.stats.stop()
            for host in self.host_services.values():
                await host.stop()
            for service_log in self.logs.values():
                service_log.close()
            for service in self.services.values():
                service.health.close()  # notify sockets
