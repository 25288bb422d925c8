"""Services that outlive their daemon: what a daemon records, and how the next one adopts them.

Each service's record, ``<state-dir>/services/<id>/service.json``, holds its restart counter,
its last events and a hash of the OCI spec its container was launched with. What adoption
reads (pid, spec, counter) is written the moment it changes, so it is current when the daemon
is killed; an event that changes none of it is written within a second, with whatever
followed it (a start's four events cost one write, not four). A new daemon on the same state
dir reads it back (counter and history carried over), and offers the backend every service
whose spec hashes the same as the one recorded (``Backend.adopt``); what is not adopted is
removed by ``Backend.cleanup`` and starts afresh, and its first event says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from extvisor.runtime.host import Launched
from extvisor.state import ServiceEvent, State

if TYPE_CHECKING:
    from extvisor.runtime.service import Service
    from extvisor.runtime.supervisor import Supervisor

log = logging.getLogger("extvisor.adoption")

RECORD = "service.json"


def spec_hash(oci: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(oci, sort_keys=True).encode()).hexdigest()


def record_path(state_dir: Path, service_id: str) -> Path:
    return state_dir / "services" / service_id / RECORD


def save(state_dir: Path, service: Service) -> None:
    """Write *service*'s record atomically (a killed daemon leaves the old or the new one)."""
    path = record_path(state_dir, service.id)
    data = {
        "restarts": service.restarts,
        "spec": service.launched_hash if service.pid else None,  # only a running container is adoptable
        "pid": service.pid,
        "events": [e.model_dump(mode="json") for e in service.history.get()],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("%s: cannot record the service in %s: %s", service.id, path, exc)


class Records:
    """Writes the services' records: at once when what adoption reads changes, else soon."""

    DELAY = 1.0  #: seconds an event that adoption does not read may wait for the next one

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self._written: dict[str, tuple[Any, ...]] = {}
        self._pending: dict[str, tuple[asyncio.TimerHandle, Service]] = {}

    def changed(self, service: Service) -> None:
        # Until its first write, a service is taken as never run: its first Starting waits too.
        if self._written.get(service.id, NEVER_RUN) != _adoptable(service):
            self.write(service)
            return
        if service.id in self._pending:
            return
        try:
            handle = asyncio.get_running_loop().call_later(self.DELAY, self.write, service)
        except RuntimeError:  # no loop (a test driving the supervisor by hand): write now
            self.write(service)
            return
        self._pending[service.id] = (handle, service)

    def write(self, service: Service) -> None:
        pending = self._pending.pop(service.id, None)
        if pending is not None:
            pending[0].cancel()
        save(self.state_dir, service)
        self._written[service.id] = _adoptable(service)

    def flush(self) -> None:
        """Write every record that waits (the daemon is about to exit)."""
        for _, service in list(self._pending.values()):
            self.write(service)

    def forget(self, service_id: str) -> None:
        """The service is removed: write what waits of it, then keep nothing."""
        pending = self._pending.get(service_id)
        if pending is not None:
            self.write(pending[1])
        self._written.pop(service_id, None)


NEVER_RUN: tuple[Any, ...] = (None, None, 0)


def _adoptable(service: Service) -> tuple[Any, ...]:
    return service.pid, service.launched_hash if service.pid else None, service.restarts


class RecordedEvent(ServiceEvent):
    """An event as a record holds it: the types exactly, a finite time."""

    model_config = ConfigDict(strict=True)
    service: str
    ts: float = Field(allow_inf_nan=False)


class Record(BaseModel):
    """What ``service.json`` holds; a daemon of an older version may have left keys this one ignores."""

    model_config = ConfigDict(strict=True)
    restarts: int = Field(0, ge=0)
    spec: str | None = None  #: the hash of the OCI spec of the running container
    pid: int | None = None
    events: list[RecordedEvent] = Field(default_factory=list)

    def history(self) -> list[ServiceEvent]:
        return [ServiceEvent.model_construct(**e.model_dump()) for e in self.events]


def load(state_dir: Path, service_id: str) -> Record | None:
    """The service's record; None when there is none, or it cannot be read (said in the log)."""
    path = record_path(state_dir, service_id)
    try:
        record = Record.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: cannot read the record, taken as missing: %s", path, exc.strerror or exc)
        return None
    except ValidationError as exc:
        log.warning("%s: malformed record, taken as missing: %s", path, _what(exc))
        return None
    strangers = {e.service for e in record.events} - {service_id}
    if strangers:
        log.warning("%s: malformed record, taken as missing: events of %s", path, ", ".join(sorted(strangers)))
        return None
    return record


def _what(exc: ValidationError) -> str:
    """The first few problems of a record, as ``events.0.ts: Input should be a finite number``."""
    errors = exc.errors(include_url=False, include_input=False)
    said = [(".".join(map(str, e["loc"])) + ": " if e["loc"] else "") + e["msg"] for e in errors[:3]]
    return "; ".join(said) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")


async def adopt_all(sup: Supervisor) -> list[str]:
    """Carry over every service's record, adopt what matches, remove the rest; return adopted ids."""
    state_dir = sup.options.state_dir
    adopt = getattr(sup.backend, "adopt", None)
    adopted: dict[str, Launched] = {}
    reasons: dict[str, str] = {}
    for service in sup.services.values():
        record = load(state_dir, service.id)
        if record is None:
            continue
        service.carry_over(record.restarts, record.history())
        if not record.spec:
            continue
        try:
            request = sup.request_for(service.spec, service.rootfs)
        except Exception as exc:  # an environment file gone, a config that does not load
            reasons[service.id] = f"its container could not be checked ({exc})"
            continue
        if spec_hash(request.oci) != record.spec:
            reasons[service.id] = "its spec changed"
            continue
        if adopt is None:
            reasons[service.id] = f"the {sup.backend_name} backend cannot adopt containers"
            continue
        handle = await adopt(request)
        if handle is None:
            reasons[service.id] = f"{sup.backend_name} cannot adopt it (it is gone, or its output or exit status is lost)"
            continue
        adopted[service.id] = Launched(handle, record.spec)
    removed = await sup.backend.cleanup(keep=frozenset(adopted))
    for cid in removed:
        service = sup.services.get(cid)
        if service is None:
            log.warning("stopped and removed %s, left by an earlier daemon: its service file is gone", cid)
        else:
            why = reasons.get(service.id, "it was not recorded as running")
            service.push(State.Initialized, f"Replacing the container an earlier daemon left running: {why}")
    for sid, launched in adopted.items():
        sup.services[sid].adopt(launched)
    return sorted(adopted)
