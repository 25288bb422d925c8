"""The supervisor's state machine, restart policies, ordering and stop, with a host-process double.

Real containers are covered by tests/test_daemon_runc.py and the backend contract suites.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path

import pytest
from procbackend import ProcBackend

import extvisor_conditions
from extvisor.documents.models import Dependency, Restart, ServiceSpec
from extvisor.plugins import PluginManager
from extvisor.state import State
from extvisor.runtime import service as service_module
from extvisor.runtime.adoption import spec_hash
from extvisor.runtime.host import ServiceHost
from extvisor.runtime.supervisor import Options, Supervisor, find_cycles


def spec(name: str, script: str, restart: str = "never", deps: list[tuple[str, str]] = (), **container) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        container={"entrypoint": "/bin/sh", "args": ["-c", script], **container},
        depends=[Dependency(kind=k, value=v) for k, v in deps] or None,
        restart=Restart(restart),
    )


@pytest.fixture
def make_sup(tmp_path: Path):
    sups: list[Supervisor] = []

    def make(*specs: ServiceSpec, pm: PluginManager | None = None, **opts) -> Supervisor:
        if pm is None:
            pm = PluginManager()
            pm.register_module(extvisor_conditions, "conditions")
        for s in specs:
            # The double runs host processes, but the supervisor still checks the entrypoint exists.
            (tmp_path / "rootfs" / s.name / "bin").mkdir(parents=True, exist_ok=True)
            shutil.copy("/bin/sh", tmp_path / "rootfs" / s.name / "bin" / "sh")
        options = Options(
            rootfs_dir=tmp_path / "rootfs", state_dir=tmp_path / "state", log_dir=tmp_path / "logs",
            restart_delay=opts.pop("restart_delay", 0.05), restart_max_delay=opts.pop("restart_max_delay", 0.4),
            stop_timeout=opts.pop("stop_timeout", 1.0), recheck=0.05, **opts,
        )  # fmt: skip
        sup = Supervisor(pm, ProcBackend(), options, pm.condition_kinds())
        for s in specs:
            sup.add(s)
        sups.append(sup)
        return sup

    yield make
    for sup in sups:
        for s in sup.services.values():
            if s.running and s._task is not None:
                s._task.cancel()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def states(sup: Supervisor, sid: str) -> list[str]:
    return [e.state.value for e in sup.services[sid].history.get()]


async def test_never_success_finishes(make_sup):
    sup = make_sup(spec("a", "echo hi"))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Finished)
    assert states(sup, "ext-a") == ["Starting", "Preparing", "Preparing", "Running", "Finished"]
    assert sup.services["ext-a"].history.last.msg == "Service finished successfully"


async def test_never_failure_reports_exit_code_and_last_log(make_sup):
    sup = make_sup(spec("a", "echo boom; exit 3"))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Failed)
    msg = sup.services["ext-a"].history.last.msg
    assert msg == 'Failed running service: error running service: task "ext-a" failed: exit code 3 (last log \'boom\')'


async def test_until_success_retries_then_finishes(make_sup, tmp_path: Path):
    marker = tmp_path / "ok"
    sup = make_sup(spec("a", f"echo ran; test -f {marker}", "untilSuccess"))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].restarts >= 2)
    marker.touch()
    await until(lambda: sup.services["ext-a"].state is State.Finished)
    waits = [e.msg for e in sup.services["ext-a"].history.get() if e.state is State.Waiting]
    assert waits and "going to restart until it succeeds" in waits[0]
    assert "exit code 1" in waits[0]


async def test_always_restarts_after_success_and_failure(make_sup):
    sup = make_sup(spec("a", "exit 0", "always"))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].restarts >= 2)
    assert any("exited without error, going to restart it" in e.msg for e in sup.services["ext-a"].history.get())
    await sup.shutdown()
    assert sup.services["ext-a"].state is State.Finished


async def test_backoff_doubles_up_to_the_maximum(make_sup):
    sup = make_sup(spec("a", "exit 1", "always"), restart_delay=0.05, restart_max_delay=0.2)
    sup.start_all()
    await until(lambda: sup.services["ext-a"].restarts >= 4, timeout=10)
    await sup.shutdown()
    delays = [e.msg.rsplit("(in ", 1)[1] for e in sup.services["ext-a"].history.get() if e.state is State.Waiting]
    assert delays[:4] == ["0.05s)", "0.1s)", "0.2s)", "0.2s)"]


async def test_stop_sends_sigterm_then_sigkill(make_sup):
    sup = make_sup(spec("a", "trap '' TERM; while :; do sleep 0.05; done"), stop_timeout=0.3)
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Running)
    await sup.services["ext-a"].stop()
    msgs = [e.msg for e in sup.services["ext-a"].history.get()]
    assert msgs[-3].startswith("Sending SIGTERM to task ext-a (PID ")
    assert msgs[-2].startswith("Sending SIGKILL to task ext-a (PID ")
    assert msgs[-1] == "Service finished successfully"


async def test_stopped_service_is_not_restarted(make_sup):
    sup = make_sup(spec("a", "sleep 30", "always"))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Running)
    await sup.services["ext-a"].stop()
    await asyncio.sleep(0.3)
    assert sup.services["ext-a"].state is State.Finished
    assert sup.services["ext-a"].restarts == 0


async def test_stop_during_restart_wait_aborts_the_sequence(make_sup):
    sup = make_sup(spec("a", "exit 1", "always"), restart_delay=5, restart_max_delay=10)
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Waiting)
    await sup.services["ext-a"].stop()
    assert [e.msg for e in sup.services["ext-a"].history.get()][-2:] == [
        "Aborting restart sequence", "Service finished successfully"]  # fmt: skip


async def test_service_dependency_waits_for_up(make_sup):
    sup = make_sup(spec("b", "sleep 30", deps=[("service", "ext-a")]), spec("a", "sleep 30"))
    sup.services["ext-a"].start = sup.services["ext-a"].start  # start order: b first (sorted) -> b waits
    sup.start_all()
    await until(lambda: sup.services["ext-b"].state is State.Running)
    b = sup.services["ext-b"].history.get()
    assert any(e.msg == 'Waiting for service "ext-a" to be "up"' for e in b) or b[1].state is State.Preparing
    a_running = next(e.ts for e in sup.services["ext-a"].history.get() if e.state is State.Running)
    b_running = next(e.ts for e in b if e.state is State.Running)
    assert a_running <= b_running
    await sup.shutdown()


async def test_finished_dependency_is_not_up(make_sup):
    sup = make_sup(spec("a", "true"), spec("b", "sleep 30", deps=[("service", "ext-a")]))
    sup.services["ext-a"].start()
    await until(lambda: sup.services["ext-a"].state is State.Finished)
    sup.services["ext-b"].start()
    await asyncio.sleep(0.2)
    assert sup.services["ext-b"].state is State.Waiting
    await sup.shutdown()
    assert sup.services["ext-b"].state is State.Finished


async def test_missing_dependency_waits_and_says_registered(make_sup):
    sup = make_sup(spec("b", "sleep 30", deps=[("service", "cri")]))
    sup.start_all()
    await until(lambda: sup.services["ext-b"].state is State.Waiting)
    assert sup.services["ext-b"].history.last.msg == 'Waiting for service "cri" to be "registered"'
    await sup.shutdown()


async def test_path_dependency_and_combined_message(make_sup, tmp_path: Path):
    target = tmp_path / "later" / "x"
    sup = make_sup(spec("a", "sleep 30"), spec("b", "sleep 30", deps=[("path", str(target)), ("service", "ext-a")]))
    sup.services["ext-b"].start()  # before a is registered as running
    await until(lambda: sup.services["ext-b"].state is State.Waiting)
    assert sup.services["ext-b"].history.last.msg == f'Waiting for service "ext-a" to be "up", file "{target}" to exist'
    sup.services["ext-a"].start()
    await until(lambda: sup.services["ext-b"].history.last.msg == f'Waiting for file "{target}" to exist')
    target.parent.mkdir()
    target.touch()
    await until(lambda: sup.services["ext-b"].state is State.Running)
    await sup.shutdown()


async def test_cycle_is_failed_at_load_naming_it(make_sup):
    sup = make_sup(
        spec("a", "true", deps=[("service", "ext-b")]),
        spec("b", "true", deps=[("service", "ext-a")]),
        spec("c", "true"),
    )
    sup.start_all()
    await until(lambda: sup.services["ext-c"].state is State.Finished)
    for sid in ("ext-a", "ext-b"):
        assert sup.services[sid].state is State.Failed
        assert sup.services[sid].history.last.msg.startswith("Dependency cycle: ext-")
    assert "ext-a -> ext-b -> ext-a" in sup.services["ext-a"].history.last.msg


def test_find_cycles():
    assert find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": ["a"]}) == [["a", "a"]]
    assert find_cycles({"a": ["b"], "b": ["x"]}) == []


async def test_missing_rootfs_fails_naming_the_path(make_sup, tmp_path: Path):
    sup = make_sup(spec("a", "true"))
    shutil.rmtree(tmp_path / "rootfs" / "a")
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Failed)
    assert str(tmp_path / "rootfs" / "a") in sup.services["ext-a"].history.last.msg


async def test_shutdown_stops_dependents_first(make_sup):
    sup = make_sup(spec("a", "sleep 30"), spec("b", "sleep 30", deps=[("service", "ext-a")]),
                   spec("c", "sleep 30", deps=[("service", "ext-b")]))  # fmt: skip
    sup.start_all()
    await until(lambda: all(s.state is State.Running for s in sup.services.values()))
    await sup.shutdown()
    finished = {sid: s.history.last.ts for sid, s in sup.services.items()}
    assert finished["ext-c"] <= finished["ext-b"] <= finished["ext-a"]


async def test_history_keeps_64_events(make_sup):
    sup = make_sup(spec("a", "exit 1", "always"), restart_delay=0.001, restart_max_delay=0.001)
    sup.start_all()
    await until(lambda: sup.services["ext-a"].restarts >= 40, timeout=20)
    await sup.shutdown()
    assert len(sup.services["ext-a"].history.get()) == 64


async def test_stop_and_start_again_appends_a_new_sequence(make_sup):
    sup = make_sup(spec("a", "sleep 30"))
    for _ in range(2):
        sup.services["ext-a"].start()
        await until(lambda: sup.services["ext-a"].state is State.Running)
        await sup.services["ext-a"].stop()
    assert states(sup, "ext-a") == ["Starting", "Preparing", "Preparing", "Running", "Stopping", "Finished"] * 2


async def test_apply_replaces_a_spec_and_remove_forgets_a_service(make_sup, tmp_path: Path):
    sup = make_sup(spec("a", "echo one; sleep 30"))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Running)
    await sup.apply(spec("a", "echo two; sleep 30"))
    await until(lambda: b"two" in sup.logs["ext-a"].path.read_bytes())
    assert "Service spec changed" in [e.msg for e in sup.services["ext-a"].history.get()]
    (tmp_path / "rootfs" / "b" / "bin").mkdir(parents=True)
    shutil.copy("/bin/sh", tmp_path / "rootfs" / "b" / "bin" / "sh")
    await sup.apply(spec("b", "sleep 30"))
    await until(lambda: sup.services["ext-b"].state is State.Running)
    await sup.remove("ext-a")
    assert "ext-a" not in sup.services and "ext-a" not in sup.logs
    await sup.shutdown()


async def test_a_service_runs_on_the_rootfs_it_was_added_with(make_sup, tmp_path: Path):
    sup = make_sup()
    own = tmp_path / "elsewhere" / "a"  # an extension's, say: not <rootfs-dir>/<name>
    (own / "bin").mkdir(parents=True)
    shutil.copy("/bin/sh", own / "bin" / "sh")
    service = sup.add(spec("a", "sleep 30"), "ext", own)
    assert service.rootfs == own
    service.start()
    await until(lambda: service.state is State.Running)
    # What the launch gave back is on the service: the hash a later daemon adopts by.
    assert service.launched_hash == spec_hash(sup.request_for(service.spec, own).oci)
    assert service.launched_hash != spec_hash(sup.request_for(service.spec, tmp_path / "rootfs" / "a").oci)
    # apply without a rootfs: the options' rule, <rootfs-dir>/<name>, which holds nothing here.
    await sup.apply(spec("a", "sleep 30"), "file")
    assert service.rootfs == tmp_path / "rootfs" / "a"
    await until(lambda: service.state is State.Failed)
    assert str(tmp_path / "rootfs" / "a") in service.history.last.msg
    await sup.apply(spec("a", "sleep 30"), "ext", own)  # and back on its own
    await until(lambda: service.state is State.Running)
    await sup.shutdown()


def test_the_options_rule_gives_a_rootfs_to_a_service_that_brings_none(tmp_path: Path):
    options = Options(rootfs_dir=tmp_path, state_dir=tmp_path, log_dir=tmp_path)
    assert options.rootfs_for("a") == tmp_path / "a"
    options.rootfs_layout = lambda root, name: root / "rootfs" / name
    assert options.rootfs_for("a") == tmp_path / "rootfs" / "a"


def test_the_host_declares_all_a_service_uses_of_it():
    text = Path(service_module.__file__).read_text()
    used = set(re.findall(r"self\.sup\.(\w+)", text))
    declared = set(ServiceHost.__annotations__) | {n for n in vars(ServiceHost) if not n.startswith("_")}
    assert used and used <= declared, used - declared
    assert "getattr(self.sup" not in text
