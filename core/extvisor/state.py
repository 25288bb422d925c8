"""Service states and events, as Talos names them."""

from __future__ import annotations

import enum
import time
from collections import deque

from pydantic import BaseModel, Field


class State(str, enum.Enum):
    Initialized = "Initialized"
    Preparing = "Preparing"
    Waiting = "Waiting"
    Starting = "Starting"
    Running = "Running"
    Stopping = "Stopping"
    Finished = "Finished"
    Failed = "Failed"
    Skipped = "Skipped"

    @property
    def down(self) -> bool:
        return self in (State.Finished, State.Failed, State.Skipped)


class CheckResult(BaseModel):
    """One health check's outcome (the last five are kept, as Docker keeps them)."""

    time: float  #: when it started, Unix time
    duration: float = 0.0  #: seconds
    exit_code: int | None = None  #: the command's; tcp/http/notify: 0 passed, 1 failed; None: timed out
    output: str = ""  #: the first 4 KiB of its output, or what a tcp/http/notify check saw


class Health(BaseModel):
    """Talos's ``ServiceHealth``: unknown (no check, or none finished yet), else healthy or not."""

    unknown: bool = True
    healthy: bool = False
    last_message: str = ""
    last_change: float | None = None  #: when ``healthy`` last flipped (or became known), Unix time
    check: str = ""  #: ``exec``, ``tcp``, ``http`` or ``notify``; empty without a health check
    failing_streak: int = 0  #: consecutive failed checks
    checks: list[CheckResult] = Field(default_factory=list)  #: the last five, oldest first


class ServiceEvent(BaseModel):
    """One entry of a service's history; also what the event stream sends."""

    service: str = ""
    state: State
    msg: str
    ts: float = Field(default_factory=time.time)


class ServiceInfo(BaseModel):
    """A service as the API shows it."""

    id: str
    state: State
    health: Health = Field(default_factory=Health)
    events: list[ServiceEvent] = Field(default_factory=list)
    restarts: int = 0  #: runs started again by the restart policy (an operator restart is not counted)
    pid: int | None = None
    started_at: float | None = None  #: when the current run reached Running
    changed_at: float | None = None  #: time of the last event
    source: str = ""
    depends_on: list[str] = Field(default_factory=list)
    log_to_console: bool = False


MAX_EVENTS = 64


class History:
    """The last 64 events of a service, oldest first."""

    def __init__(self, size: int = MAX_EVENTS):
        self._events: deque[ServiceEvent] = deque(maxlen=size)

    def push(self, event: ServiceEvent) -> None:
        self._events.append(event)

    def get(self, n: int = MAX_EVENTS) -> list[ServiceEvent]:
        if n <= 0:
            return []
        return list(self._events)[-n:]

    @property
    def last(self) -> ServiceEvent | None:
        return self._events[-1] if self._events else None
