"""A following node in the API: its status, its refusal of hand changes, its metrics.

    GET /v1/follow     what the node follows: source, the digest running, the last check and
                       error, refused digests (readers too); ``{"source": null}`` when it follows nothing

While the node follows a reference, ``apply``, ``rollback`` and ``extensions install/remove``
are refused (409) with a message naming the reference: a followed node has one source of truth.

``/metrics`` gains (docs/metrics.md) ``extvisor_config_generation``,
``extvisor_config_apply_total{result}`` and ``extvisor_config_last_check_timestamp_seconds``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from extvisor.server.follow import RESULTS, Follower
from extvisor.shared import routes

#: the hand changes refused while following
HAND_CHANGES = (routes.DECLARED_APPLY, routes.DECLARED_ROLLBACK, routes.INSTALL, routes.REMOVE)


def refusal(ref: str) -> str:
    return (f"this node follows {ref}: hand changes (apply, rollback, extensions install and remove) are refused; "
            "publish the change there, or stop following (restart the daemon without --follow)")  # fmt: skip


class RefuseHandChanges:
    """Pure ASGI: the routes' own code never runs for a refused call (streams stay untouched)."""

    def __init__(self, app: Any, follower: Follower):
        self.app = app
        self.follower = follower

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and any(r.matches(scope.get("method", ""), scope.get("path", "")) for r in HAND_CHANGES):
            body = json.dumps({"detail": refusal(self.follower.ref)}).encode()
            await send({"type": "http.response.start", "status": 409,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def add_follow_routes(app: Any, follower: Follower | None) -> None:
    @routes.FOLLOW.serve(app)
    async def follow() -> dict[str, Any]:
        return follower.status() if follower is not None else {"source": None}

    if follower is not None:
        app.add_middleware(RefuseHandChanges, follower=follower)


class ConfigCollector:
    """The declared state's series, read at scrape time (prometheus-client imported lazily)."""

    def __init__(self, generation: Callable[[], int | None], follower: Follower | None):
        self.generation = generation
        self.follower = follower

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gen = GaugeMetricFamily("extvisor_config_generation", "The node's current declared-state generation (0: none).")
        gen.add_metric([], self.generation() or 0)
        yield gen
        if self.follower is None:
            return
        total = CounterMetricFamily("extvisor_config_apply", "Followed documents taken, by result.", labels=["result"])
        for result in RESULTS:
            total.add_metric([result], self.follower.counts[result])
        yield total
        checked = GaugeMetricFamily("extvisor_config_last_check_timestamp_seconds",
                                    "When the followed reference was last read from the registry, Unix time (0: never).")  # fmt: skip
        checked.add_metric([], self.follower.record.get("checked_at") or 0)
        yield checked
