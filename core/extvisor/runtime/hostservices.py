"""Services of the host that extvisor does not run but specs depend on (Talos's ``cri``, ``udevd``).

An operator declares each one as assumed up (``--host-service cri``) or up once a path
exists (``--host-service udevd=/run/udev/control``). An undeclared one is simply not
registered, and its dependents wait with ``service "cri" to be "registered"``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from extvisor.state import History, ServiceEvent, ServiceInfo, State

if TYPE_CHECKING:
    from extvisor.runtime.host import ServiceHost

log = logging.getLogger("extvisor.hostservices")


class HostService:
    def __init__(self, id: str, path: str | None = None):
        self.id = id
        self.path = path
        self.state = State.Initialized.value
        self.history = History()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def parse(cls, text: str) -> HostService:
        """``NAME`` or ``NAME=/path``."""
        name, _, path = text.partition("=")
        if not name or (path and not path.startswith("/")):
            raise ValueError(f"host service {text!r}: expected NAME or NAME=/absolute/path")
        return cls(name, path or None)

    def _set(self, sup: ServiceHost, state: State, msg: str) -> None:
        self.state = state.value
        event = ServiceEvent(service=self.id, state=state, msg=msg)
        self.history.push(event)
        sup.publish(event)

    def start(self, sup: ServiceHost) -> None:
        if self.path is None:
            self._set(sup, State.Running, "Host service, assumed up")
            return
        kind = sup.kinds.get("path")
        if kind is None:
            self._set(sup, State.Failed, "no plugin provides the path condition")
            return
        from extvisor.protocols import ConditionContext
        from extvisor.documents.models import ServiceSpec

        ctx = ConditionContext(self.id, ServiceSpec(name=self.id), sup, sup.configs, sup.options.condition_options)
        condition = kind.factory(self.path, ctx)
        self._set(sup, State.Waiting, f"Waiting for {condition.describe()}")

        async def wait() -> None:
            try:
                await condition.wait()
                self._set(sup, State.Running, f"Host service, up: {self.path} exists")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set(sup, State.Failed, f"Condition failed: {exc}")

        self._task = asyncio.create_task(wait())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def info(self) -> ServiceInfo:
        last = self.history.last
        return ServiceInfo(id=self.id, state=State(self.state), events=self.history.get(),
                           changed_at=last.ts if last else None, source="host")
