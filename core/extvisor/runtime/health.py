"""One service's health: its checks while it runs, and its health as Talos reports it.

Talos's model (``health.Status``): unknown until a check says otherwise, then healthy or
unhealthy with the last message and the time of the last flip; a flip while the service
is Running is an event, "Health check successful" or "Health check failed: ...". A service
that stops running with a check is "service not running" (unhealthy), as Talos says it.

Compose's rules decide the flips: any passed check is healthy; ``retries`` consecutive
failures are unhealthy, but failures inside ``start_period`` do not count while the service
has never passed one. The first check comes ``interval`` after the start (``start_interval``
during the start period), the next ``interval`` after the previous one ended, so one check
at most is in flight. Once unhealthy, ``on_failure`` acts: the run's :meth:`begin` future
resolves and the service ends the run (restart: the restart policy decides; stop: Failed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extvisor.documents.health import HealthCheck, OnFailure, format_duration
from extvisor.documents.models import Restart, ServiceSpec
from extvisor.protocols import ContainerHandle
from extvisor.runtime.probes import NotifySocket, Outcome, add_notify_socket, exec_check, http_check, tcp_check
from extvisor.state import CheckResult, Health, State

if TYPE_CHECKING:
    from extvisor.runtime.service import Service

log = logging.getLogger("extvisor.health")

KEEP = 5  # results kept (Docker's maxLogEntries)
RESULTS = ("success", "failure", "timeout", "error")


def refusal(spec: ServiceSpec, backend: Any) -> str | None:
    """Why *backend* cannot run *spec*'s check, or None. Said when the service is loaded."""
    check = spec.health
    if check is None or check.kind != "exec" or hasattr(backend, "exec"):
        return None
    name = getattr(backend, "name", type(backend).__name__)
    return (f"health checks need a backend that can run a command in a running container "
            f"(Backend.exec): the {name} backend cannot; use a tcp, http or notify check, "
            f"or another backend")  # fmt: skip


class HealthMonitor:
    """The health of one :class:`~extvisor.runtime.service.Service`, across its runs."""

    def __init__(self, service: Service):
        self.service = service
        self.refused: str | None = None  #: set at load when the backend cannot run the check
        self.healthy: bool | None = None
        self.last_message = ""
        self.last_change: float | None = None
        self.streak = 0
        self.results: deque[CheckResult] = deque(maxlen=KEEP)
        self.counts: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._verdict: asyncio.Future[tuple[OnFailure, str]] | None = None
        self._notify: NotifySocket | None = None

    @property
    def check(self) -> HealthCheck | None:
        return self.service.spec.health

    # -- what the API, the metrics and conditions read ------------------------------------

    def view(self) -> Health | None:
        """Talos's ServiceHealth with the kept results; None without a check."""
        check = self.check
        if check is None:
            return None
        return Health(unknown=self.healthy is None, healthy=bool(self.healthy), last_message=self.last_message,
                      last_change=self.last_change, check=check.kind, failing_streak=self.streak,
                      checks=list(self.results))  # fmt: skip

    # -- a run -------------------------------------------------------------------------------

    def prepare(self, oci: dict[str, Any], state_dir: Path) -> None:
        """Before each launch: a notify check gets its socket in the container."""
        check = self.check
        if check is None or check.kind != "notify":
            self.close()
            return
        if self._notify is None:
            self._notify = NotifySocket(state_dir / "notify")
        self._notify.open()
        add_notify_socket(oci, self._notify.directory)

    def begin(self, container: ContainerHandle, adopted: bool = False) -> asyncio.Future[tuple[OnFailure, str]]:
        """The run reached Running: check it until :meth:`end`. The future resolves when
        ``on_failure`` wants the run ended, with the action and the reason. An *adopted*
        container said READY=1 to an earlier daemon already."""
        self.pause()
        loop = asyncio.get_running_loop()
        self._verdict = loop.create_future()
        check = self.check
        if check is None:
            return self._verdict
        self._set(None, "Unknown")  # Talos's Init(): every run starts unknown
        self.streak = 0
        runner = self._notify_loop(check, adopted) if check.kind == "notify" else self._loop(check, container)
        self._task = asyncio.create_task(runner, name=f"health {self.service.id}")
        return self._verdict

    def pause(self) -> None:
        """Stop checking (the container is being stopped, or the daemon detaches from it)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def end(self) -> None:
        """The run ended: stop checking; a service with a check is "service not running"."""
        self.pause()
        if self._verdict is not None and not self._verdict.done():
            self._verdict.cancel()
        if self._notify is not None:  # what this run said is not the next one's (READY=1 may come early)
            self._notify.drain()
        if self.check is not None:
            self._set(False, "service not running")

    def close(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    # -- checking ----------------------------------------------------------------------------

    async def _loop(self, check: HealthCheck, container: ContainerHandle) -> None:
        began = time.monotonic()
        passed = False
        while True:
            starting = not passed and time.monotonic() - began < check.start_period
            await asyncio.sleep(check.start_interval if starting else check.interval)
            at, t0 = time.time(), time.monotonic()
            outcome = await self._probe(check, container)
            starting = not passed and time.monotonic() - began < check.start_period
            passed = passed or outcome.ok
            self._record(check, outcome, at, time.monotonic() - t0, counts=not starting)

    async def _probe(self, check: HealthCheck, container: ContainerHandle) -> Outcome:
        try:
            if check.kind == "tcp":
                return await tcp_check(check.tcp or "", check.timeout)
            if check.kind == "http":
                return await http_check(check.http or "", check.timeout)
            return await exec_check(self.service.sup.backend, container, check.argv, check.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a check must never take the service down
            log.exception("%s: health check crashed", self.service.id)
            return Outcome(False, "error", f"health check failed to run: {exc!r}", None)

    async def _notify_loop(self, check: HealthCheck, adopted: bool) -> None:
        """READY=1 within ``start_period + timeout``; then, with ``interval`` set in the file,
        WATCHDOG=1 (or READY=1) at least every interval. STATUS= is the last message."""
        if self._notify is None:  # prepare() was not called for this run: nothing to listen on
            self._record(check, Outcome(False, "error", "no notify socket for this run", 1), time.time(), 0.0)
            return
        messages = self._notify.messages
        ready = adopted
        said_status = ""  # STATUS= stays the message until the next one
        if adopted:
            self._record(check, Outcome(True, "success", "READY=1 (said to an earlier daemon)", 0), time.time(), 0.0)
        deadline = check.start_period + check.timeout
        began = time.monotonic()
        while True:
            wait = check.interval if ready else max(0.0, began + deadline - time.monotonic())
            if ready and not check.watchdog:
                wait = None  # type: ignore[assignment]
            try:
                fields = await asyncio.wait_for(messages.get(), wait)
            except TimeoutError:
                at = time.time()
                if ready:
                    text = f"no WATCHDOG=1 in {format_duration(check.interval)}"
                    self._record(check, Outcome(False, "timeout", text, 1), at, check.interval)
                else:  # never became ready: unhealthy at once, as systemd's start timeout
                    text = f"no READY=1 in {format_duration(deadline)}"
                    self.streak = check.retries - 1
                    self._record(check, Outcome(False, "timeout", text, 1), at, deadline)
                    began = time.monotonic()  # and again after each further deadline
                continue
            said_status = status = fields.get("STATUS", said_status)
            if fields.get("WATCHDOG") == "trigger":
                self.streak = check.retries - 1
                self._record(check, Outcome(False, "failure", status or "WATCHDOG=trigger", 1), time.time(), 0.0)
            elif fields.get("READY") == "1" or (ready and fields.get("WATCHDOG") == "1"):
                ready = True
                said = "READY=1" if fields.get("READY") == "1" else "WATCHDOG=1"
                self._record(check, Outcome(True, "success", status or said, 0), time.time(), 0.0)
            elif status:
                self.last_message = status

    # -- the outcome ---------------------------------------------------------------------------

    def _record(self, check: HealthCheck, outcome: Outcome, at: float, took: float, counts: bool = True) -> None:
        self.results.append(CheckResult(time=at, duration=round(took, 6), exit_code=outcome.exit_code,
                                        output=outcome.output or outcome.message))  # fmt: skip
        self.counts[outcome.result] += 1
        if outcome.ok:
            self.streak = 0
            self._set(True, outcome.message)
            return
        if counts:
            self.streak += 1
        if self.streak < check.retries:
            self.last_message = outcome.message  # Talos: the message moves at every check
            return
        was = self.healthy
        self._set(False, outcome.message)
        if was is not False and check.on_failure is not OnFailure.none:
            reason = f"unhealthy after {self.streak} consecutive failed health checks: {outcome.message}"
            how = "stopping it"
            if check.on_failure is OnFailure.restart:
                never = (self.service.spec.restart or Restart.never) is Restart.never
                how = "stopping it (restart: never)" if never else "restarting it"
            self._event(f"Health check failed {self.streak} times in a row, {how} "
                        f"(on_failure: {check.on_failure.value})")
            if self._verdict is not None and not self._verdict.done():
                self._verdict.set_result((check.on_failure, reason))

    def _set(self, healthy: bool | None, message: str) -> None:
        flipped = healthy != self.healthy or self.last_change is None
        self.last_message = message
        if not flipped:  # only a flip changes what waiters see
            return
        self.healthy = healthy
        self.last_change = time.time()
        if healthy is True:
            self._event("Health check successful")
        elif healthy is False and message != "service not running":
            self._event(f"Health check failed: {message}")
        else:
            self.service.sup.publish_health(self.service.id)

    def _event(self, msg: str) -> None:
        # Only while Running (Talos): the event carries the state the service is in.
        if self.service.state is State.Running:
            self.service.push(State.Running, msg)
        else:
            self.service.sup.publish_health(self.service.id)
