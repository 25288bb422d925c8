"""Prometheus's ``/metrics``: series read from the supervisor at scrape time (docs/metrics.md).

Loaded at the first scrape: a daemon nobody scrapes does not carry prometheus-client.
Nothing is kept in a global registry, so two daemons in one process (tests, dev mode)
never share series.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from extvisor.runtime import stats as runtime_stats
from extvisor.runtime.health import RESULTS
from extvisor.runtime.supervisor import Supervisor
from extvisor.state import State

__all__ = ["CONTENT_TYPE_LATEST", "ServiceCollector", "generate_latest", "registry_for"]


class ServiceCollector:
    """Prometheus series for every service, read from the supervisor at scrape time."""

    def __init__(self, sup: Supervisor, info: Callable[[], dict]):
        self.sup = sup
        self.info = info

    def collect(self) -> Iterator[Any]:
        sup = self.sup
        base = self.info()
        build = GaugeMetricFamily("extvisor_build_info", "extvisor's version and backend; always 1.",
                                  labels=["version", "backend", "python"])  # fmt: skip
        build.add_metric([base.get("version", ""), base.get("backend", ""), platform.python_version()], 1)
        yield build
        started = GaugeMetricFamily("extvisor_daemon_start_time_seconds", "When the daemon started, Unix time.")
        started.add_metric([], sup.started_at)
        yield started

        up = GaugeMetricFamily("extvisor_service_up", "1 when the service is Running, else 0.", labels=["service"])
        state = GaugeMetricFamily("extvisor_service_state", "1 for the state the service is in.", labels=["service", "state"])
        restarts = CounterMetricFamily("extvisor_service_restarts", "Runs started again by the restart policy.",
                                       labels=["service"])  # fmt: skip
        cpu = CounterMetricFamily("extvisor_service_cpu_seconds", "CPU time used by the current run's processes.",
                                  labels=["service"])  # fmt: skip
        memory = GaugeMetricFamily("extvisor_service_memory_bytes", "Working set: memory in use minus inactive file cache.",
                                   labels=["service"])  # fmt: skip
        rss = GaugeMetricFamily("extvisor_service_rss_bytes", "Anonymous memory (RSS) of the service.", labels=["service"])
        procs = GaugeMetricFamily("extvisor_service_processes", "Processes in the service's container.", labels=["service"])
        uptime = GaugeMetricFamily("extvisor_service_uptime_seconds", "Seconds since the current run started.",
                                   labels=["service"])  # fmt: skip
        logs = CounterMetricFamily("extvisor_service_log_bytes", "Bytes the service wrote to its log since the daemon started.",
                                   labels=["service"])  # fmt: skip
        starts = HistogramMetricFamily("extvisor_service_start_duration_seconds",
                                       "Time to start a run: spec built and container launched by the backend.",
                                       labels=["service"])  # fmt: skip
        healthy = GaugeMetricFamily("extvisor_service_healthy",
                                    "1 when the service's health check passes, else 0; absent without a check.",
                                    labels=["service"])  # fmt: skip
        checks = CounterMetricFamily("extvisor_service_health_checks", "Health checks run, by result.",
                                     labels=["service", "result"])  # fmt: skip
        for item in sup.stats.items():
            sid = item["id"]
            service = sup.services.get(sid)
            health = service.health.view() if service is not None else None
            if health is not None and service is not None:
                healthy.add_metric([sid], 1 if health.healthy and not health.unknown else 0)
                for result in RESULTS:
                    checks.add_metric([sid, result], service.health.counts.get(result, 0))
            up.add_metric([sid], 1 if item["state"] == State.Running.value else 0)
            for s in State:
                state.add_metric([sid, s.value], 1 if item["state"] == s.value else 0)
            restarts.add_metric([sid], item["restarts"])
            cpu.add_metric([sid], item["cpu_seconds"])
            memory.add_metric([sid], item["memory_bytes"])
            rss.add_metric([sid], item["rss_bytes"])
            procs.add_metric([sid], item["processes"])
            uptime.add_metric([sid], item["uptime_seconds"])
            service_log = sup.logs.get(sid)
            logs.add_metric([sid], service_log.written if service_log is not None else 0)
            hist = sup.stats.starts.get(sid) or runtime_stats.Histogram()
            starts.add_metric([sid], hist.cumulative(), hist.total)
        yield from (up, state, restarts, cpu, memory, rss, procs, uptime, logs, starts, healthy, checks)


def registry_for(sup: Supervisor, info: Callable[[], dict]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(sup, info))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)  # the daemon's own process_cpu_seconds_total, memory, fds
    PlatformCollector(registry=registry)
    return registry
