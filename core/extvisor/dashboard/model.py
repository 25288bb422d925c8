"""What the dashboard knows of the daemon, kept current from the event stream."""

from __future__ import annotations

import time
from typing import Any

MAX_EVENTS = 64


class Model:
    """Services by id (the API's ServiceInfo as dicts) and the daemon's info."""

    def __init__(self) -> None:
        self.daemon: dict[str, Any] = {}
        self.services: dict[str, dict[str, Any]] = {}

    def load(self, daemon: dict[str, Any], services: list[dict[str, Any]]) -> None:
        self.daemon = daemon
        self.services = {s["id"]: s for s in services}

    def put(self, service: dict[str, Any]) -> None:
        """A service as just read from the API. Events that reached us by the stream after
        the daemon answered are newer than the answer: keep them."""
        old = self.services.get(service["id"])
        events = service.setdefault("events", [])
        if old and old.get("events"):
            last = events[-1]["ts"] if events else 0.0
            newer = [e for e in old["events"] if e["ts"] > last]
            if newer:
                events.extend(newer)
                del events[:-MAX_EVENTS]
                service["state"] = newer[-1]["state"]
                service["changed_at"] = newer[-1]["ts"]
        self.services[service["id"]] = service

    def apply(self, event: dict[str, Any]) -> bool:
        """Record one event of the stream; False when it was already known (or is for no service we know)."""
        service = self.services.get(event.get("service", ""))
        if service is None:
            return False
        events = service.setdefault("events", [])
        key = (event["ts"], event["state"], event["msg"])
        # The whole history (≤64), not a window: a refetch during a burst (a restart is ~7
        # events) can hold more new events than a window would cover.
        if any((e["ts"], e["state"], e["msg"]) == key for e in events):
            return False  # already in the snapshot taken after the stream opened
        events.append(event)
        del events[:-MAX_EVENTS]
        if event["state"] == "Running" and service.get("state") != "Running":
            service["started_at"] = event["ts"]  # until the refetch brings the daemon's own value
        elif event["state"] != "Running":
            service["pid"] = None
        service["state"] = event["state"]
        service["changed_at"] = event["ts"]
        return True

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.services.values():
            out[s["state"]] = out.get(s["state"], 0) + 1
        return out

    def uptime(self, now: float | None = None) -> float | None:
        started = self.daemon.get("started_at")
        if started is None:
            return None
        return (now or time.time()) - started
