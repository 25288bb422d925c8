"""The extvisor_container_stats hook and the stats collector (host-process double backend).

The double runs services as plain host processes; the real backends answer the hook in
tests/server/test_stats.py (runc, containerd, podman with busybox containers).
"""

from __future__ import annotations

import asyncio
import os
import time

from runtime.test_supervisor import make_sup, spec, until  # noqa: F401  (make_sup is a fixture)

import extvisor_conditions
from extvisor import hookimpl
from extvisor.oci.cgroups import Cgroup, read_stats
from extvisor.plugins import PluginManager
from extvisor.protocols import ContainerStats
from extvisor.state import State


class Answers:
    """A backend plugin's answers: ext-half burns half a core, ext-async answers with a coroutine."""

    def __init__(self):
        self.asked = []

    @hookimpl
    def extvisor_container_stats(self, service_id, container):
        self.asked.append(service_id)
        if service_id == "ext-half":
            return ContainerStats(cpu_seconds=time.monotonic() * 0.5, memory_bytes=42 << 20, rss_bytes=40 << 20,
                                  pids=(container.pid,), source="test")  # fmt: skip
        if service_id == "ext-async":
            async def later():
                await asyncio.sleep(0)
                return ContainerStats(cpu_seconds=1.5, memory_bytes=7, rss_bytes=5, processes=3, source="async")
            return later()
        if service_id == "ext-broken":
            raise RuntimeError("runtime said no")
        return None  # not ours: the core reads the cgroup


async def test_hook_extvisor_container_stats_firstresult_awaitable_and_fallback(make_sup):
    pm = PluginManager()
    pm.register_module(extvisor_conditions, "conditions")
    answers = Answers()
    pm.register(answers, name="answers")
    sleeper = "while :; do sleep 1; done"
    sup = make_sup(spec("half", sleeper), spec("async", sleeper), spec("plain", sleeper), spec("broken", sleeper),
                   spec("once", "exit 0"), pm=pm)  # fmt: skip
    sup.stats.interval = 0.1
    sup.start_all()
    running = ("ext-half", "ext-async", "ext-plain", "ext-broken")
    await until(lambda: all(sup.services[s].state is State.Running for s in running))
    await until(lambda: sup.services["ext-once"].state is State.Finished)  # not running: never asked
    assert sup.stats.history() == {}  # nobody has asked: nothing is sampled
    await sup.stats.fresh()  # what every reader calls first
    await until(lambda: len(sup.stats.history().get("ext-half", [])) >= 4)
    items = {i["id"]: i for i in sup.stats.items()}

    half = items["ext-half"]
    assert 40 <= half["cpu_percent"] <= 60, half  # percent of one core over the last interval
    assert (half["memory_bytes"], half["rss_bytes"], half["processes"], half["source"]) == (42 << 20, 40 << 20, 1, "test")
    assert items["ext-async"]["cpu_seconds"] == 1.5 and items["ext-async"]["processes"] == 3
    # unanswered and failing answers: the cgroup the process really is in (here the test's own)
    for sid in ("ext-plain", "ext-broken"):
        assert items[sid]["source"].startswith("cgroup v"), items[sid]
        assert sup.services[sid].pid in read_stats(pid=sup.services[sid].pid).pids
    assert items["ext-once"]["pid"] is None and items["ext-once"]["processes"] == 0
    assert all(i["uptime_seconds"] > 0 for i in items.values() if i["pid"])
    assert "ext-once" not in answers.asked  # not running: nobody is asked
    starts = sup.stats.starts["ext-half"]
    assert sum(starts.counts) == 1 and starts.total > 0

    procs = await sup.stats.processes("ext-half")
    assert [p["pid"] for p in procs] == [sup.services["ext-half"].pid]
    assert procs[0]["command"].startswith("/bin/sh -c") and procs[0]["state"] in ("sleeping", "running")
    await sup.shutdown()


def test_cgroup_reader_on_this_process():
    group = Cgroup.of_pid(os.getpid())
    stats = group.stats()
    assert stats.source == f"cgroup v{group.version}"
    assert stats.cpu_seconds > 0 and os.getpid() in stats.pids
    assert read_stats(pid=2**22 + 7) is None  # no such process: nothing, not an error
