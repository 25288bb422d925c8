"""Service records: what adoption reads is on disk at once; other events are written soon after."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from extvisor.runtime.adoption import Records, load, record_path
from extvisor.state import ServiceEvent, State


class History:
    def __init__(self) -> None:
        self.events: list[ServiceEvent] = []

    def get(self) -> list[ServiceEvent]:
        return list(self.events)


class FakeService:
    id = "ext-a"

    def __init__(self) -> None:
        self.pid: int | None = None
        self.launched_hash = "h1"
        self.restarts = 0
        self.history = History()

    def event(self, state: State, msg: str) -> None:
        self.history.events.append(ServiceEvent(service=self.id, state=state, msg=msg))


def on_disk(tmp_path) -> dict:
    return json.loads(record_path(tmp_path, "ext-a").read_text())


def test_a_start_costs_one_write_for_its_events_and_the_pid_is_never_late(tmp_path):
    async def main() -> None:
        records = Records(tmp_path)
        records.DELAY = 0.2
        svc = FakeService()
        svc.event(State.Starting, "Starting service")
        records.changed(svc)  # a service never run: nothing adoption reads, it waits
        svc.event(State.Preparing, "Running pre state")
        records.changed(svc)
        assert not record_path(tmp_path, "ext-a").exists()
        svc.pid = 1234
        svc.event(State.Running, "Started")
        records.changed(svc)  # the pid: at once, with what waited
        record = on_disk(tmp_path)
        assert (record["pid"], record["spec"]) == (1234, "h1")
        assert [e["msg"] for e in record["events"]] == ["Starting service", "Running pre state", "Started"]

        svc.event(State.Running, "a log problem")
        records.changed(svc)
        assert len(on_disk(tmp_path)["events"]) == 3
        await asyncio.sleep(0.4)  # ... and is written within DELAY
        assert len(on_disk(tmp_path)["events"]) == 4

    asyncio.run(main())


def test_flush_writes_what_waits_and_a_restart_count_is_written_at_once(tmp_path):
    async def main() -> None:
        records = Records(tmp_path)
        svc = FakeService()
        svc.event(State.Waiting, "Waiting for network")
        records.changed(svc)
        assert not record_path(tmp_path, "ext-a").exists()
        records.flush()
        assert len(on_disk(tmp_path)["events"]) == 1
        svc.restarts = 1
        records.changed(svc)
        assert on_disk(tmp_path)["restarts"] == 1

    asyncio.run(main())


def test_a_removed_service_keeps_its_last_events(tmp_path):
    async def main() -> None:
        records = Records(tmp_path)
        svc = FakeService()
        svc.event(State.Finished, "Service finished")
        records.changed(svc)
        records.forget(svc.id)
        assert [e["msg"] for e in on_disk(tmp_path)["events"]] == ["Service finished"]
        await asyncio.sleep(0)

    asyncio.run(main())


# Issue 24, item 7: a record of the wrong shape is taken as missing, and the log says which and why.
MALFORMED = [
    ("[]", "Input should be an object"),
    ('{"restarts": "abc"}', "restarts: "),
    ('{"events": 5}', "events: "),
    ('{"restarts": 1e999}', "restarts: "),
    ('{"restarts": -1}', "restarts: "),
    ('{"restarts": NaN}', "restarts: "),
    ('{"spec": 5}', "spec: "),
    ('{"events": [5]}', "events.0: "),
    ('{"events": [{"service": "ext-a", "state": "Dreaming", "msg": "x", "ts": 1}]}', "events.0.state: "),
    ('{"events": [{"service": "ext-a", "state": "Running", "msg": 7, "ts": 1}]}', "events.0.msg: "),
    ('{"events": [{"service": "ext-a", "state": "Running", "msg": "x", "ts": 1e999}]}', "events.0.ts: "),
    ('{"events": [{"service": "ext-b", "state": "Running", "msg": "x", "ts": 1}]}', "events of ext-b"),
    ("not json", "Invalid JSON"),
    ("\udcff", "Invalid JSON"),
]


@pytest.fixture
def warnings(monkeypatch):
    """What the adoption logger says, whatever an earlier test did to logging (dictConfig disables loggers)."""
    said: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = said.append  # type: ignore[method-assign]
    logger = logging.getLogger("extvisor.adoption")
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "level", logging.WARNING)
    logger.addHandler(handler)
    yield said
    logger.removeHandler(handler)


@pytest.mark.parametrize(("text", "what"), MALFORMED)
def test_a_malformed_record_counts_as_missing(tmp_path, warnings, text: str, what: str) -> None:
    path = record_path(tmp_path, "ext-a")
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode(errors="surrogateescape"))
    assert load(tmp_path, "ext-a") is None
    assert len(warnings) == 1
    said = warnings[0].getMessage()
    assert said.startswith(f"{path}: malformed record, taken as missing: ") and what in said, said


def test_a_sound_record_is_read_and_a_missing_one_is_quietly_none(tmp_path, warnings) -> None:
    assert load(tmp_path, "ext-a") is None
    path = record_path(tmp_path, "ext-a")
    path.parent.mkdir(parents=True)
    event = {"service": "ext-a", "state": "Running", "msg": "Started", "ts": 12.5}
    path.write_text(json.dumps({"restarts": 3, "spec": "h1", "pid": 42, "events": [event], "later": "ignored"}))
    record = load(tmp_path, "ext-a")
    assert warnings == []
    assert record is not None and (record.restarts, record.spec, record.pid) == (3, "h1", 42)
    assert [e.model_dump() for e in record.history()] == [event]
    assert all(type(e) is ServiceEvent for e in record.history())
