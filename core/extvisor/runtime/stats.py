"""What each service costs: CPU, memory, processes, restarts, uptime, and a short history.

Every ``interval`` seconds the collector asks the backend for each running container's
figures (hook ``extvisor_container_stats``, firstresult) and falls back to reading the
container's cgroup itself. CPU percent is of one core, over the last interval, as
``talosctl stats`` and ``top`` count it (two busy cores = 200). The last ``keep`` samples
per service are kept for the dashboard's Monitor screen. Processes are read with psutil
from the PIDs of the container's cgroup.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from extvisor.oci.cgroups import read_stats
from extvisor.protocols import ContainerStats

if TYPE_CHECKING:
    from extvisor.runtime.service import Service

log = logging.getLogger("extvisor.stats")

#: Buckets of the start-duration histogram (seconds): a runc start is ~50 ms, podman ~300 ms.
START_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Histogram:
    """Cumulative-ready counts of observed values, per upper bound (plus +Inf)."""

    bounds: tuple[float, ...] = START_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(START_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        i = next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[i] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts):
            running += count
            out.append((bound, running))
        return out


@dataclass
class _Last:
    pid: int
    at: float  # time.monotonic() of the reading
    stats: ContainerStats
    cpu_percent: float = 0.0
    measured: bool = False  #: cpu_percent is over an interval, not the 0 of a first reading


WATCHED = 120.0  #: seconds of sampling after the last read (longer than Prometheus's scrape interval)
FIRST_GAP = 0.5  #: between the two samples of a first read


class StatsCollector:
    """Samples every running service of a supervisor (anything with ``services`` and ``pm``)."""

    def __init__(self, sup: Any, interval: float = 2.0, keep: int = 300):
        self.sup = sup
        self.interval = interval
        self.keep = keep
        self._last: dict[str, _Last] = {}
        self._history: dict[str, deque[tuple[float, float, int]]] = {}
        self.starts: dict[str, Histogram] = {}
        self._task: asyncio.Task[None] | None = None
        self._procs: dict[int, Any] = {}  # psutil.Process by PID, so cpu_percent has a baseline
        self._wanted_until = 0.0
        self._sampled_at = 0.0

    # -- running -------------------------------------------------------------------

    def start(self) -> None:
        """Nothing is sampled until someone reads the figures (:meth:`fresh`): idle CPU stays ~0."""

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def fresh(self) -> None:
        """Called by every reader (stats, history, /metrics, the dashboard): keeps sampling on
        for :data:`WATCHED` seconds, and makes sure the figures about to be read are current.

        A running service read once only (the first read, a new container) has no CPU
        percent yet: it is read again half a second later, so that every figure is real.
        """
        if not self._wanted_until:
            try:
                import psutil  # not at start-up: it costs every daemon ~20 ms before it answers

                psutil.cpu_percent(None)  # the baseline of host()'s "since the previous call"
            except ImportError:
                pass
        self._wanted_until = time.monotonic() + WATCHED
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="stats")
        if time.monotonic() - self._sampled_at > self.interval or self._unread():
            await self.sample()
        if self._unmeasured():
            await asyncio.sleep(FIRST_GAP)
            await self.sample()

    def _unread(self) -> bool:
        """A running container never sampled (started since the last sample)."""
        for s in self.sup.services.values():
            last = self._last.get(s.id)
            if s.pid is not None and (last is None or last.pid != s.pid):
                return True
        return False

    def _unmeasured(self) -> bool:
        """A running container sampled once only: its CPU percent needs a second reading."""
        for s in self.sup.services.values():
            last = self._last.get(s.id)
            if s.pid is not None and last is not None and last.pid == s.pid and not last.measured:
                return True
        return False

    async def _loop(self) -> None:
        while time.monotonic() < self._wanted_until:
            await asyncio.sleep(self.interval)
            try:
                await self.sample()
            except Exception:  # a bad reading must not end the sampling
                log.exception("sampling service stats failed")

    def observe_start(self, service_id: str, seconds: float) -> None:
        """A launch took *seconds* (spec built, backend started the container)."""
        self.starts.setdefault(service_id, Histogram()).observe(seconds)

    # -- reading -------------------------------------------------------------------

    async def read(self, service: Service) -> ContainerStats | None:
        container = service.container
        if container is None:
            return None
        result = None
        try:
            result = self.sup.pm.hook.extvisor_container_stats(service_id=service.id, container=container)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            log.warning("%s: extvisor_container_stats failed: %r", service.id, exc)
            result = None
        if result is None:
            result = read_stats(pid=container.pid)
        return result

    async def sample(self) -> None:
        now, wall = time.monotonic(), time.time()
        self._sampled_at = now
        services = list(self.sup.services.values())
        readings = await asyncio.gather(*(self.read(s) for s in services))
        for service, stats in zip(services, readings):
            history = self._history.setdefault(service.id, deque(maxlen=self.keep))
            pid = service.pid
            if stats is None or pid is None:
                self._last.pop(service.id, None)
                history.append((wall, 0.0, 0))
                continue
            before = self._last.get(service.id)
            percent = 0.0
            measured = before is not None and before.pid == pid and now > before.at
            if measured:
                percent = max(0.0, (stats.cpu_seconds - before.stats.cpu_seconds) / (now - before.at) * 100)
            self._last[service.id] = _Last(pid, now, stats, percent, measured)
            history.append((wall, round(percent, 2), stats.memory_bytes))
        for gone in set(self._history) - set(self.sup.services):
            self._history.pop(gone, None)
            self._last.pop(gone, None)

    # -- what the API shows --------------------------------------------------------

    def items(self) -> list[dict[str, Any]]:
        """One dict per service: the figures of ``extvisor stats -o json``."""
        out = []
        now = time.time()
        for service in sorted(self.sup.services.values(), key=lambda s: s.id):
            last = self._last.get(service.id)
            live = last is not None and last.pid == service.pid
            stats = last.stats if live else None
            out.append({
                "id": service.id,
                "state": service.state.value,
                "pid": service.pid,
                "cpu_percent": round(last.cpu_percent, 2) if live else 0.0,
                "cpu_seconds": round(stats.cpu_seconds, 3) if stats else 0.0,
                "memory_bytes": stats.memory_bytes if stats else 0,
                "rss_bytes": stats.rss_bytes if stats else 0,
                "processes": stats.process_count if stats else 0,
                "restarts": service.restarts,
                "uptime_seconds": round(now - service.started_at, 1) if service.started_at else 0.0,
                "source": stats.source if stats else "",
            })  # fmt: skip
        return out

    def history(self, points: int = 60) -> dict[str, list[tuple[float, float, int]]]:
        """service -> the last *points* samples as (time, cpu percent, working set bytes)."""
        return {sid: list(h)[-points:] for sid, h in sorted(self._history.items())}

    async def processes(self, service_id: str | None = None) -> list[dict[str, Any]]:
        """The processes of one service (or every running one), read with psutil."""
        import psutil

        services = [s for s in self.sup.services.values() if service_id in (None, s.id)]
        targets: list[tuple[str, int]] = []
        for service in sorted(services, key=lambda s: s.id):
            stats = await self.read(service)
            if stats is not None:
                targets += [(service.id, pid) for pid in stats.pids]
        fresh = False
        procs = {}
        for _, pid in targets:
            proc = self._procs.get(pid)
            try:
                if proc is None or not proc.is_running():
                    proc = psutil.Process(pid)
                    proc.cpu_percent(None)  # the baseline; the next call measures from here
                    fresh = True
                procs[pid] = proc
            except psutil.Error:
                continue
        self._procs = procs
        if fresh:
            await asyncio.sleep(0.25)
        out = []
        for sid, pid in targets:
            proc = procs.get(pid)
            if proc is None:
                continue
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    out.append({
                        "service": sid,
                        "pid": pid,
                        "ppid": proc.ppid(),
                        "command": " ".join(proc.cmdline()) or f"[{proc.name()}]",
                        "state": proc.status(),
                        "threads": proc.num_threads(),
                        "cpu_percent": round(proc.cpu_percent(None), 1),
                        "cpu_seconds": round(times.user + times.system, 2),
                        "rss_bytes": proc.memory_info().rss,
                        "vms_bytes": proc.memory_info().vms,
                    })  # fmt: skip
            except psutil.Error:
                continue  # ended between listing and reading
        return out


def host() -> dict[str, Any]:
    """The host's CPU, memory, load and uptime (the dashboard's Summary header)."""
    import psutil

    mem = psutil.virtual_memory()
    load = os.getloadavg()
    return {
        "cpu_percent": psutil.cpu_percent(None),  # since the previous call
        "cpus": psutil.cpu_count() or 1,
        "memory_total_bytes": mem.total,
        "memory_used_bytes": mem.total - mem.available,
        "load": [round(x, 2) for x in load],
        "uptime_seconds": round(time.time() - psutil.boot_time(), 1),
        "processes": len(psutil.pids()),
    }
