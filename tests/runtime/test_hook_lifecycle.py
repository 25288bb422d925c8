"""The supervisor's notification hooks, seen from a plugin (host-process double backend)."""

from __future__ import annotations

import signal

import extvisor_conditions
from runtime.test_supervisor import make_sup, spec, until  # noqa: F401  (make_sup is a fixture)

from extvisor import hookimpl
from extvisor.plugins import PluginManager
from extvisor.state import State


class Recorder:
    """A plugin implementing the supervisor's notification hooks."""

    def __init__(self):
        self.events, self.lines, self.exits, self.prepared = [], [], [], []

    @hookimpl
    def extvisor_service_event(self, event):
        self.events.append((event.service, event.state.value))

    @hookimpl
    def extvisor_log_lines(self, service_id, lines):
        self.lines.extend((service_id, line) for line in lines)

    @hookimpl
    def extvisor_container_exited(self, service_id, status, stopped):
        self.exits.append((service_id, status.code, stopped))

    @hookimpl
    def extvisor_prepare_container(self, service_id, spec, oci):
        self.prepared.append(service_id)
        oci["process"]["env"].append("ADDED_BY_HOOK=1")

    @hookimpl
    def extvisor_stop_signal(self, service_id, spec):
        return signal.SIGINT if service_id == "ext-int" else None


async def test_hooks_extvisor_service_event_log_lines_container_exited_prepare_container(make_sup):
    pm = PluginManager()
    pm.register_module(extvisor_conditions, "conditions")
    rec = Recorder()
    pm.register(rec, name="recorder")
    sup = make_sup(spec("a", 'echo "one"; echo "two $ADDED_BY_HOOK"; exit 2'), pm=pm)
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Failed)
    assert ("ext-a", "Running") in rec.events and rec.events[-1] == ("ext-a", "Failed")
    assert rec.lines == [("ext-a", b"one\n"), ("ext-a", b"two 1\n")]
    assert rec.exits == [("ext-a", 2, False)]
    assert rec.prepared == ["ext-a"]


async def test_hook_extvisor_stop_signal_chooses_the_signal(make_sup):
    pm = PluginManager()
    pm.register_module(extvisor_conditions, "conditions")
    pm.register(Recorder(), name="recorder")
    sup = make_sup(spec("int", "trap 'exit 7' INT; trap '' TERM; while :; do sleep 0.05; done"), pm=pm)
    sup.start_all()
    await until(lambda: sup.services["ext-int"].state is State.Running)
    await sup.services["ext-int"].stop()
    assert any(e.msg.startswith("Sending SIGINT to task ext-int") for e in sup.services["ext-int"].history.get())
    assert not any("SIGKILL" in e.msg for e in sup.services["ext-int"].history.get())
