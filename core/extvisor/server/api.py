"""The daemon's HTTP/JSON API, served on a Unix socket (mode 0600).

Each handler serves a route of the table in ``extvisor.shared.routes`` (which also says who
may call it and what it answers):

    GET  /v1/daemon                         the daemon: backend, uptime, counts by state
    GET  /v1/services                       every service (ServiceInfo)
    GET  /v1/services/{id}                  one service, with its events
    POST /v1/services/{id}/start|stop|restart
    GET  /v1/services/{id}/logs?tail=N&follow=true   the log, streamed (since=INODE:OFFSET resumes)
    GET  /v1/events?follow=true&tail=N      state changes of every service, as NDJSON (since=TS resumes)
    GET  /v1/stats..., /metrics             the numbers: see server/metrics.py
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from extvisor.shared import routes
from extvisor.state import ServiceEvent, ServiceInfo
from extvisor.runtime.supervisor import Supervisor
from extvisor.server.netaddr import global_addresses


LOG_POSITION = "X-Extvisor-Log-Position"


class DaemonInfo(BaseModel):
    version: str
    backend: str
    pid: int
    started_at: float
    uptime: float
    hostname: str
    addresses: list[str]
    config_dir: str
    log_dir: str
    services: int
    states: dict[str, int]


class ActionResult(BaseModel):
    id: str
    action: str
    message: str


def create_app(sup: Supervisor, info: Callable[[], dict]) -> FastAPI:
    app = FastAPI(title="extvisor", version="1", summary="Supervise containerized extension services")

    def all_infos(events: int = 64) -> list[ServiceInfo]:
        infos = [s.info(events) for s in sup.services.values()]
        infos += [h.info() for h in sup.host_services.values()]
        return sorted(infos, key=lambda i: i.id)

    def find(service_id: str):  # type: ignore[no-untyped-def]
        service = sup.services.get(service_id)
        if service is None:
            known = ", ".join(sorted(sup.services)) or "none"
            raise HTTPException(404, f'service "{service_id}" is not registered (known: {known})')
        return service

    @routes.DAEMON.serve(app, response_model=DaemonInfo)
    async def daemon() -> DaemonInfo:
        states: dict[str, int] = {}
        for i in all_infos(0):
            states[i.state.value] = states.get(i.state.value, 0) + 1
        base = info()
        return DaemonInfo(
            **base,
            pid=os.getpid(),
            started_at=sup.started_at,
            uptime=time.time() - sup.started_at,
            hostname=socket.gethostname(),
            addresses=global_addresses(),
            services=len(sup.services),
            states=states,
        )

    @routes.SERVICES.serve(app, response_model=list[ServiceInfo])
    async def services(events: int = Query(64, ge=0, le=64)) -> list[ServiceInfo]:
        return all_infos(events)

    @routes.SERVICE_ONE.serve(app, response_model=ServiceInfo)
    async def service(service_id: str) -> ServiceInfo:
        if service_id in sup.host_services:
            return sup.host_services[service_id].info()
        return find(service_id).info()

    @routes.ACTION.serve(app, response_model=ActionResult)
    async def act(service_id: str, action: Literal["start", "stop", "restart"]) -> ActionResult:
        svc = find(service_id)
        if action == "start":
            svc.start()
            word = "started"
        elif action == "stop":
            await svc.stop()
            word = "stopped"
        else:
            await svc.stop()
            svc.start()
            word = "restarted"
        return ActionResult(id=service_id, action=action, message=f'Service "{service_id}" {word}')

    @routes.LOGS.serve(app)
    async def logs(service_id: str, tail: int = -1, follow: bool = False,
                   since: str | None = Query(None, pattern=r"^\d+:\d+$")) -> StreamingResponse:  # fmt: skip
        find(service_id)
        service_log = sup.logs[service_id]
        if not follow and not service_log.exists():
            raise HTTPException(404, f"no log kept for {service_id}: {service_log.path} and its rotated files "
                                     "do not exist (deleted?); it is recreated at the service's next output")
        # The stream's first byte is at X-Extvisor-Log-Position (inode:offset); a reader that
        # counts what it got resumes with since= after a daemon restart.
        start = tuple(int(x) for x in since.split(":")) if since else await service_log.locate(tail)
        headers = {LOG_POSITION: "%d:%d" % start} if start else None
        return StreamingResponse(service_log.read(tail=tail, follow=follow, since=start),  # type: ignore[arg-type]
                                 media_type="text/plain", headers=headers)

    @routes.EVENTS.serve(app)
    async def events(follow: bool = True, tail: int = Query(0, ge=0), since: float | None = None) -> StreamingResponse:
        queue = sup.subscribe()  # subscribe first, so nothing falls between history and stream

        async def stream() -> AsyncIterator[bytes]:
            try:
                if tail or since is not None:
                    # since: every kept event at or after that time (a reader resuming after a
                    # daemon restart; it drops those of that instant it has already seen)
                    past: list[ServiceEvent] = []
                    for i in all_infos(64 if since is not None else tail):
                        past += [e for e in i.events if since is None or e.ts >= since]
                    past.sort(key=lambda e: e.ts)
                    for event in past if since is not None else past[-tail:]:
                        yield event.model_dump_json().encode() + b"\n"
                while follow:
                    event = await queue.get()
                    yield event.model_dump_json().encode() + b"\n"
            finally:
                sup.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    from extvisor.server import metrics

    metrics.install(app, sup, info)
    return app
