"""The health gate of an apply: the changed services Running, and healthy where they have a check.

A service counts once it has been Running (and, with a health check, healthy) for ``STABLE``
seconds without a new run; a service that ends ``Failed``, or whose runs end ``CRASHES`` times
after the apply, fails the gate at once (a crash loop would otherwise look Running now and
then). A one-shot service (``restart: never`` or ``untilSuccess``) that finished successfully
counts too. Health is the service's own (``state.Health``, docs/health.md): with a
``healthcheck``, unknown until its first check, then healthy or not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from extvisor.state import State

STABLE = 1.0  #: seconds a changed service must stay Running (and healthy) to count
CRASHES = 3  #: runs ended since the apply that fail it at once


async def wait_ready(sup: Any, ids: list[str], timeout: float) -> tuple[bool, str]:
    """Every service of *ids* Running (and healthy, where it has a check) for STABLE seconds."""
    assert sup is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    base = {sid: sup.services[sid].restarts for sid in ids if sid in sup.services}
    since: dict[str, tuple[float, int, int | None]] = {}
    while True:
        now = loop.time()
        waiting: list[str] = []
        for sid in ids:
            service = sup.services.get(sid)
            if service is None:
                continue
            verdict, why = _judge(service, base.get(sid, 0))
            if verdict == "bad":
                return False, f"{sid} {why}{_last_log(sup, sid)}"
            mark = (now, service.restarts, service.pid)
            if verdict == "ok":
                first = since.setdefault(sid, mark)
                if first[1:] != mark[1:]:
                    since[sid] = mark
                if now - since[sid][0] < STABLE:
                    waiting.append(f"{sid} (settling)")
            else:
                since.pop(sid, None)
                waiting.append(f"{sid} ({why})")
        if not waiting:
            return True, ""
        if now >= deadline:
            return False, f"not ready within {_duration(timeout)}: {'; '.join(waiting)}{_last_log(sup, waiting[0].split()[0])}"
        changed = asyncio.ensure_future(sup.changed())
        try:
            await asyncio.wait_for(changed, min(0.2, max(deadline - now, 0.01)))
        except TimeoutError:
            pass


def _judge(service: Any, base_restarts: int) -> tuple[str, str]:
    """ok, wait or bad, and what is awaited or wrong."""
    last = service.history.last
    msg = last.msg if last else ""
    if service.state == State.Failed:
        return "bad", f"failed: {msg}"
    if service.restarts - base_restarts >= CRASHES:
        return "bad", f"exited {service.restarts - base_restarts} times since the apply: {msg}"
    restart = getattr(service.spec.restart, "value", service.spec.restart)
    if service.state == State.Finished and restart in ("never", "untilSuccess") and "successfully" in msg:
        return "ok", ""
    if service.state != State.Running:
        return "wait", f"{service.state.value}: {msg}" if msg else service.state.value
    if service.spec.health is None:  # no health check (or test: [NONE]): Running is enough
        return "ok", ""
    health = service.info(0).health
    if health.unknown:
        return "wait", "waiting for its first health check"
    return ("ok", "") if health.healthy else ("wait", f"unhealthy: {health.last_message}")


def _last_log(sup: Any, sid: str) -> str:
    text = sup.last_log(sid).strip().splitlines() if sid in sup.services else []
    return f"; last log: {text[-1][:200]}" if text else ""


def _duration(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60)}s"
