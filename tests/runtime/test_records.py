"""Service records: what adoption reads is on disk at once; other events are written soon after."""

from __future__ import annotations

import asyncio
import json

from extvisor.runtime.adoption import Records, record_path
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
