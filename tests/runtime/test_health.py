"""Health checks in the supervisor, with the host-process double (an exec runs on the host).

The real backends run the same checks in tests/server/test_daemon_health.py; the exec itself
is in the backend contract (``test_exec_*``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from procbackend import ProcBackend

import extvisor_conditions
from extvisor import ExecResult
from extvisor.documents.models import Dependency, Restart, ServiceSpec
from extvisor.plugins import PluginManager
from extvisor.protocols import EXEC_OUTPUT_MAX
from extvisor.runtime.host import Launched
from extvisor.runtime.probes import NOTIFY_DIR
from extvisor.runtime.supervisor import Options, Supervisor
from extvisor.state import State


class ExecBackend(ProcBackend):
    """The double with ``exec`` (the command runs on the host) and NOTIFY_SOCKET's host path."""

    def __init__(self) -> None:
        super().__init__()
        self.execs = 0

    async def launch(self, request):  # type: ignore[no-untyped-def]
        env = request.oci["process"]["env"]
        mount = next((m for m in request.oci.get("mounts", []) if m["destination"] == NOTIFY_DIR), None)
        if mount is not None:  # no container here: the socket's host path
            request.oci["process"]["env"] = [e for e in env if not e.startswith("NOTIFY_SOCKET=")] + [
                f"NOTIFY_SOCKET={mount['source']}/notify.sock"
            ]
        return await super().launch(request)

    async def exec(self, container, argv, timeout):  # type: ignore[no-untyped-def]
        self.execs += 1
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return ExecResult(None, b"", timed_out=True)
        return ExecResult(proc.returncode, out[:EXEC_OUTPUT_MAX])


def spec(name: str, script: str, check: dict | None, restart: str = "always", deps=()) -> ServiceSpec:
    return ServiceSpec.model_validate({
        "name": name, "restart": Restart(restart),
        "container": {"entrypoint": "/bin/sh", "args": ["-c", script]},
        "depends": [Dependency(kind="service", value=d) for d in deps] or None,
        "healthcheck": check,
    })  # fmt: skip


@pytest.fixture
def make_sup(tmp_path: Path):
    sups: list[Supervisor] = []

    def make(*specs: ServiceSpec, backend=None) -> Supervisor:
        pm = PluginManager()
        pm.register_module(extvisor_conditions, "conditions")
        for s in specs:
            (tmp_path / "rootfs" / s.name / "bin").mkdir(parents=True, exist_ok=True)
            shutil.copy("/bin/sh", tmp_path / "rootfs" / s.name / "bin" / "sh")
        options = Options(rootfs_dir=tmp_path / "rootfs", state_dir=tmp_path / "state", log_dir=tmp_path / "logs",
                          restart_delay=0.05, restart_max_delay=0.4, stop_timeout=1.0, recheck=0.05)  # fmt: skip
        sup = Supervisor(pm, backend if backend is not None else ExecBackend(), options, pm.condition_kinds())
        for s in specs:
            sup.add(s)
        sups.append(sup)
        return sup

    yield make
    for sup in sups:
        for s in sup.services.values():
            if s.running and s._task is not None:
                s._task.cancel()
            s.health.close()


async def until(predicate, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def msgs(sup: Supervisor, sid: str) -> list[str]:
    return [e.msg for e in sup.services[sid].history.get()]


FAST = {"interval": "50ms", "timeout": "1s", "retries": 2}


async def test_no_check_is_unknown_and_up_when_running(make_sup):
    sup = make_sup(spec("a", "sleep 100", None))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Running)
    info = sup.services["ext-a"].info()
    assert info.health.unknown and info.health.check == "" and info.health.checks == []
    assert sup.health("ext-a") is None and sup.is_up("ext-a")
    await sup.shutdown()


async def test_passing_exec_check_turns_healthy_once(make_sup, tmp_path: Path):
    sup = make_sup(spec("a", "sleep 100", {"test": ["CMD", "/bin/echo", "fine"], **FAST}))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Running)
    assert not sup.is_up("ext-a"), "up before its first check passed"
    await until(lambda: len(sup.services["ext-a"].info().health.checks) == 5)
    health = sup.services["ext-a"].info().health
    assert not health.unknown and health.healthy and health.last_message == "fine"
    assert health.checks[-1].exit_code == 0 and health.checks[-1].output == "fine\n"
    assert msgs(sup, "ext-a").count("Health check successful") == 1  # an event per flip, not per check
    assert sup.is_up("ext-a")
    await sup.shutdown()
    after = sup.services["ext-a"].info().health
    assert after.healthy is False and after.last_message == "service not running"


async def test_failures_count_after_retries_and_recover(make_sup, tmp_path: Path):
    flag = tmp_path / "ok"
    check = {"test": ["CMD-SHELL", f"test -e {flag} || {{ echo missing; exit 4; }}"], **FAST, "on_failure": "none"}
    sup = make_sup(spec("a", "sleep 100", check))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].info().health.failing_streak >= 2)
    health = sup.services["ext-a"].info().health
    assert not health.unknown and not health.healthy and health.last_message == "exit code 4: missing"
    assert "Health check failed: exit code 4: missing" in msgs(sup, "ext-a")
    flag.touch()
    await until(lambda: sup.services["ext-a"].info().health.healthy)
    assert msgs(sup, "ext-a")[-1] == "Health check successful"
    assert sup.services["ext-a"].state is State.Running and sup.services["ext-a"].restarts == 0
    await sup.shutdown()


async def test_timeout_is_a_failure(make_sup):
    check = {"test": ["CMD", "/bin/sleep", "30"], "interval": "50ms", "timeout": "200ms", "retries": 1,
             "on_failure": "none"}  # fmt: skip
    sup = make_sup(spec("a", "sleep 100", check))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].info().health.failing_streak >= 1)
    health = sup.services["ext-a"].info().health
    assert health.last_message == "Health check exceeded timeout (200ms)" and health.checks[-1].exit_code is None
    await sup.shutdown()


async def test_start_period_failures_do_not_count(make_sup):
    check = {"test": ["CMD", "/bin/false"], "interval": "50ms", "start_interval": "50ms", "start_period": "600ms",
             "retries": 1, "on_failure": "none"}  # fmt: skip
    sup = make_sup(spec("a", "sleep 100", check))
    sup.start_all()
    await until(lambda: len(sup.services["ext-a"].info().health.checks) >= 3)
    early = sup.services["ext-a"].info().health
    assert early.unknown and early.failing_streak == 0  # failed, but inside the start period
    await until(lambda: not sup.services["ext-a"].info().health.unknown)
    assert not sup.services["ext-a"].info().health.healthy
    await sup.shutdown()


async def test_on_failure_restart_restarts_under_the_policy(make_sup):
    sup = make_sup(spec("a", "sleep 100", {"test": ["CMD", "/bin/false"], **FAST}))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].restarts >= 1)
    said = msgs(sup, "ext-a")
    assert "Health check failed 2 times in a row, restarting it (on_failure: restart)" in said
    assert any("going to restart forever: unhealthy after 2 consecutive failed health checks: exit code 1" in m
               for m in said), said  # fmt: skip
    await sup.shutdown()


async def test_on_failure_restart_with_restart_never_fails(make_sup):
    sup = make_sup(spec("a", "sleep 100", {"test": ["CMD", "/bin/false"], **FAST}, restart="never"))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Failed)
    assert "unhealthy after 2 consecutive failed health checks" in msgs(sup, "ext-a")[-1]
    assert "Health check failed 2 times in a row, stopping it (restart: never) (on_failure: restart)" in msgs(sup, "ext-a")


async def test_on_failure_stop_stops(make_sup):
    sup = make_sup(spec("a", "sleep 100", {"test": ["CMD", "/bin/false"], **FAST, "on_failure": "stop"}))
    sup.start_all()
    await until(lambda: sup.services["ext-a"].state is State.Failed)
    assert msgs(sup, "ext-a")[-1].startswith("Stopped: unhealthy after 2 consecutive failed health checks")
    assert sup.services["ext-a"].restarts == 0


async def test_dependent_waits_for_healthy(make_sup, tmp_path: Path):
    flag = tmp_path / "ready"
    provider = spec("db", "sleep 100", {"test": ["CMD", "/bin/sh", "-c", f"test -e {flag}"], **FAST,
                                        "on_failure": "none"})  # fmt: skip
    sup = make_sup(provider, spec("app", "sleep 100", None, deps=["ext-db"]))
    sup.start_all()
    await until(lambda: sup.services["ext-db"].state is State.Running)
    await until(lambda: 'Waiting for service "ext-db" to be "healthy"' in msgs(sup, "ext-app")[-1])
    await asyncio.sleep(0.3)
    assert sup.services["ext-app"].state is State.Waiting
    flag.touch()
    await until(lambda: sup.services["ext-app"].state is State.Running)
    healthy_at = sup.services["ext-db"].info().health.last_change
    assert sup.services["ext-app"].started_at >= healthy_at
    # Unhealthy later: the dependent runs on, but a service starting now waits again.
    flag.unlink()
    await until(lambda: not sup.services["ext-db"].info().health.healthy)
    await asyncio.sleep(0.2)
    assert sup.services["ext-app"].state is State.Running
    late = await sup.apply(spec("late", "sleep 100", None, deps=["ext-db"]))
    await until(lambda: late.state is State.Waiting)
    assert '"healthy" (health unhealthy)' in msgs(sup, "ext-late")[-1]
    await sup.shutdown()


async def test_tcp_and_http_checks(make_sup):
    async def answer(reader, writer):  # type: ignore[no-untyped-def]
        line = await reader.readline()
        status = "200 OK" if b" /ok " in line else "503 Service Unavailable"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sup = make_sup(
        spec("tcp", "sleep 100", {"tcp": f"127.0.0.1:{port}", **FAST}),
        spec("web", "sleep 100", {"http": f"http://127.0.0.1:{port}/ok", **FAST}),
        spec("bad", "sleep 100", {"http": f"http://127.0.0.1:{port}/nope", **FAST, "on_failure": "none"}),
    )
    sup.start_all()
    await until(lambda: sup.is_up("ext-tcp") and sup.is_up("ext-web"))
    await until(lambda: sup.services["ext-bad"].info().health.failing_streak >= 2)
    assert sup.services["ext-web"].info().health.last_message == f"GET http://127.0.0.1:{port}/ok: 200 OK"
    assert "503 Service Unavailable" in sup.services["ext-bad"].info().health.last_message
    server.close()
    await server.wait_closed()
    await until(lambda: "connection refused" in sup.services["ext-tcp"].info().health.last_message.lower())
    await sup.shutdown()


NOTIFIER = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.3)
s.sendto(b"READY=1\\nSTATUS=serving", os.environ["NOTIFY_SOCKET"])
for _ in range(int(sys.argv[1])):
    time.sleep(0.05)
    s.sendto(b"WATCHDOG=1", os.environ["NOTIFY_SOCKET"])
time.sleep(100)
"""


async def test_notify_ready_and_watchdog(make_sup, tmp_path: Path):
    script = tmp_path / "notifier.py"
    script.write_text(NOTIFIER)
    check = {"notify": True, "interval": "300ms", "retries": 1, "on_failure": "none"}
    sup = make_sup(spec("n", f"exec {sys.executable} {script} 10", check))
    sup.start_all()
    await until(lambda: sup.services["ext-n"].state is State.Running)
    assert sup.services["ext-n"].info().health.unknown
    await until(lambda: sup.is_up("ext-n"))
    assert sup.services["ext-n"].info().health.last_message == "serving"
    # The watchdog stops after ten pings: unhealthy one interval later.
    await until(lambda: not sup.services["ext-n"].info().health.healthy)
    assert sup.services["ext-n"].info().health.last_message == "no WATCHDOG=1 in 300ms"
    await sup.shutdown()


async def test_notify_ready_at_once_is_not_lost(make_sup, tmp_path: Path):
    """READY=1 sent the moment the service starts, before its run is watched, still counts."""
    script = tmp_path / "notifier.py"
    script.write_text(NOTIFIER)
    check = {"notify": True, "timeout": "2s", "retries": 1, "on_failure": "none"}
    sup = make_sup(spec("n", f"exec {sys.executable} {script} 0 0", check))
    sup.start_all()
    await until(lambda: sup.is_up("ext-n"), timeout=1.8)
    assert sup.services["ext-n"].info().health.last_message == "serving"
    await sup.shutdown()


async def test_an_adopted_notify_service_is_ready(make_sup, tmp_path: Path):
    """It said READY=1 to the daemon before this one; its watchdog pings reach the new socket."""
    script = tmp_path / "notifier.py"
    script.write_text(NOTIFIER)
    check = {"notify": True, "interval": "300ms", "retries": 1, "on_failure": "none"}
    sup = make_sup(spec("n", f"exec {sys.executable} {script} 1000", check))
    service = sup.services["ext-n"]
    handle = await sup.backend.launch(sup.request_for(service.spec, service.rootfs))
    service.adopt(Launched(handle, "adopted"))
    await until(lambda: service.state is State.Running)
    health = service.info().health
    assert health.healthy and health.checks[0].output == "READY=1 (said to an earlier daemon)"
    await asyncio.sleep(0.8)  # pings keep it healthy
    assert service.info().health.healthy
    await sup.shutdown()


async def test_backend_without_exec_is_refused_at_load(make_sup):
    sup = make_sup(spec("a", "sleep 100", {"test": ["CMD", "/bin/true"]}), spec("b", "sleep 100", {"tcp": "127.0.0.1:1"}),
                   backend=ProcBackend())  # fmt: skip
    assert sup.services["ext-a"].health.refused.startswith("health checks need a backend that can run a command")
    assert sup.services["ext-b"].health.refused is None
    sup.start_all()
    assert sup.services["ext-a"].state is State.Failed
    assert "health checks need" in msgs(sup, "ext-a")[-1]
    await until(lambda: sup.services["ext-b"].state is State.Running)
    await sup.shutdown()


async def test_disabled_check_is_no_check(make_sup):
    sup = make_sup(spec("a", "sleep 100", {"test": ["NONE"]}), backend=ProcBackend())
    sup.start_all()
    await until(lambda: sup.is_up("ext-a"))
    assert sup.health("ext-a") is None
    await sup.shutdown()


async def test_notify_socket_under_a_long_state_dir(tmp_path: Path):
    """A socket path is at most 107 bytes; a deep state dir still gets its socket."""
    import socket

    from extvisor.runtime.probes import NotifySocket

    notify = NotifySocket(tmp_path / ("x" * 60) / ("y" * 60) / "notify")
    notify.open()
    try:
        assert len(str(notify.path)) > 108 and notify.path.exists()
        fd = os.open(notify.directory, os.O_PATH)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendto(b"READY=1\nSTATUS=up", f"/proc/self/fd/{fd}/notify.sock")
        os.close(fd)
        got = await asyncio.wait_for(notify.messages.get(), 2)
        assert got["READY"] == "1" and got["STATUS"] == "up"
    finally:
        notify.close()
    assert not notify.path.exists()


async def test_detach_right_after_a_health_event_keeps_the_record_adoptable(make_sup):
    """A health flip is an event whose record write waits up to a second; a detach (SIGUSR1, SIGUSR2)
    within it must still record the running container, or the next daemon replaces it."""
    from extvisor.runtime.adoption import load

    sup = make_sup(spec("a", "sleep 100", {"test": ["CMD", "/bin/true"], "interval": "50ms"}))
    sup.start_all()
    await until(lambda: sup.is_up("ext-a"))
    pid = sup.services["ext-a"].pid
    handle = sup.services["ext-a"].container
    await sup.detach()
    record = load(sup.options.state_dir, "ext-a")
    assert record is not None and record.pid == pid and record.spec, record
    assert record.history()[-1].msg == "Health check successful"
    os.killpg(pid, signal.SIGKILL)  # the double's process: nobody adopts it here
    await handle.proc.wait()
