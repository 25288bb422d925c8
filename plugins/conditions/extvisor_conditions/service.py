"""``service: ID``: wait until another service is up (Talos's ``WaitForService(StateEventUp)``).

Up means ``Running`` and, when the service has a ``healthcheck``, healthy; a ``Finished``
service is not up. The supervisor's view decides that; this condition only waits for its
changes. It is checked once, at start: a provider that turns unhealthy later stops no
dependent, but a service that starts afterwards waits again.
"""

from __future__ import annotations

from typing import Annotated

from extvisor import ConditionContext
from pydantic import AfterValidator

from .text import goquote


def _not_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("service id must not be empty")
    return value


ServiceValue = Annotated[str, AfterValidator(_not_empty)]


class ServiceCondition:
    def __init__(self, target: str, ctx: ConditionContext):
        self.target = target
        self.services = ctx.services

    def describe(self) -> str:
        # Talos: "registered" while the id is not loaded, then the awaited event.
        state = self.services.state(self.target)
        if state is None:
            return f"service {goquote(self.target)} to be {goquote('registered')}"
        health = self.services.health(self.target) if hasattr(self.services, "health") else None
        if health is not None and state == "Running":  # up, but its health check has not passed
            said = "unknown" if health.unknown else "unhealthy"
            return f"service {goquote(self.target)} to be {goquote('healthy')} (health {said})"
        return f"service {goquote(self.target)} to be {goquote('up')}"

    def __repr__(self) -> str:
        return f"ServiceCondition({self.target!r})"

    async def wait(self) -> None:
        # No await between the check and subscribing, so no change can slip through.
        while not self.services.is_up(self.target):
            await self.services.changed()


def factory(value: str, ctx: ConditionContext) -> ServiceCondition:
    return ServiceCondition(value, ctx)
