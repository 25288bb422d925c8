"""The numbers: per-service stats, processes, the host, and Prometheus's ``/metrics``.

    GET /v1/stats                     every service's CPU, memory, processes, restarts, uptime
    GET /v1/stats/history?points=N    the last N samples per service (time, cpu %, working set)
    GET /v1/stats/processes?service=ID   processes of one service, or of all
    GET /v1/stats/host                the host's CPU, memory, load and uptime
    GET /metrics                      Prometheus text (docs/metrics.md)

Figures come from the supervisor's :class:`~extvisor.runtime.stats.StatsCollector`;
``/metrics`` is made by :mod:`extvisor.server.prometheus`, imported at the first scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response
from extvisor.runtime import stats as runtime_stats
from extvisor.runtime.supervisor import Supervisor
from extvisor.shared import routes


def install(app: FastAPI, sup: Supervisor, info: Callable[[], dict]) -> None:
    """Add the stats routes and ``/metrics`` to the API."""
    registry: Any = None  # made at the first scrape

    @routes.STATS_ALL.serve(app)
    async def stats() -> list[dict[str, Any]]:
        await sup.stats.fresh()
        return sup.stats.items()

    @routes.STATS_HISTORY.serve(app)
    async def history(points: int = Query(60, ge=1, le=3600)) -> dict[str, Any]:
        await sup.stats.fresh()
        return {"interval": sup.stats.interval, "services": sup.stats.history(points)}

    @routes.PROCESSES.serve(app)
    async def processes(service: str | None = None) -> list[dict[str, Any]]:
        if service is not None and service not in sup.services:
            known = ", ".join(sorted(sup.services)) or "none"
            raise HTTPException(404, f'service "{service}" is not registered (known: {known})')
        return await sup.stats.processes(service)

    @routes.STATS_HOST.serve(app)
    async def host() -> dict[str, Any]:
        await sup.stats.fresh()  # the dashboard's header polls this: its charts fill meanwhile
        data = await asyncio.to_thread(runtime_stats.host)
        data["time"] = time.time()
        return data

    @routes.METRICS.serve(app, include_in_schema=False)
    async def metrics() -> Response:
        nonlocal registry
        from extvisor.server import prometheus

        if registry is None:
            registry = prometheus.registry_for(sup, info)
            for collector in getattr(app.state, "collectors", ()):  # the declared state's (routes_follow)
                registry.register(collector)
        await sup.stats.fresh()
        body = prometheus.generate_latest(registry)  # in the loop: the collector reads live state
        return Response(body, media_type=prometheus.CONTENT_TYPE_LATEST)
