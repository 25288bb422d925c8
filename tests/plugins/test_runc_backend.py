"""The backend contract, run against real runc on busybox rootfs dirs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from extvisor import BackendConfig
from extvisor.testing import BackendContract
from extvisor_runc import RuncBackend

pytestmark = pytest.mark.runc


def _require_runc() -> None:
    missing = []
    if shutil.which("runc") is None:
        missing.append("runc is not installed (apt-get install runc)")
    if os.geteuid() != 0:
        missing.append("runc tests need root")
    if not Path("/bin/busybox").is_file():
        missing.append("/bin/busybox is missing (apt-get install busybox-static)")
    if missing:
        if os.environ.get("EXTVISOR_ALLOW_SKIP") == "1":
            pytest.skip("; ".join(missing))
        pytest.fail("; ".join(missing) + " (set EXTVISOR_ALLOW_SKIP=1 to skip)")


class TestRunc(BackendContract):
    @pytest.fixture
    def backend_factory(self, tmp_path: Path):
        _require_runc()
        self.state_dir = tmp_path / "backend-state"
        return lambda: RuncBackend(BackendConfig(state_dir=self.state_dir))

    def leftovers(self, service_id: str) -> list[str]:
        found = []
        root = self.state_dir / "runc"
        out = subprocess.run(
            ["runc", "--root", str(root), "list", "--format", "json"], capture_output=True, text=True, timeout=10
        )
        for container in json.loads(out.stdout or "null") or []:
            if container["id"] == service_id:
                found.append(f"runc container {service_id} ({container['status']}, pid {container['pid']})")
        marker = f"/extvisor/{service_id}\n"
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if marker in (proc / "cgroup").read_text():
                        found.append(f"process {proc.name} in cgroup {marker.strip()}")
                except OSError:
                    pass  # exited while we looked
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if (hierarchy / "extvisor" / service_id).exists():
                found.append(f"cgroup {hierarchy / 'extvisor' / service_id}")
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if str(self.state_dir) in line or f"/{service_id}/" in line:
                found.append(f"mount {line}")
        return found


async def test_registered_as_a_plugin() -> None:
    from extvisor.plugins import get_plugin_manager

    backends = get_plugin_manager().backends()
    assert "runc" in backends
    kind = backends["runc"]
    assert kind.factory is RuncBackend
    assert [o.flag for o in kind.options] == ["runc-binary"]


async def test_missing_binary_is_unavailable(tmp_path: Path) -> None:
    from extvisor import BackendUnavailable

    backend = RuncBackend(BackendConfig(state_dir=tmp_path, options={"runc_binary": "/nonexistent/runc"}))
    with pytest.raises(BackendUnavailable, match="/nonexistent/runc"):
        await backend.open()


async def test_no_zombies_and_never_a_subreaper(tmp_path: Path) -> None:
    """The monitor, not the daemon, is the inits' parent: no zombie here, never a subreaper."""
    _require_runc()
    import ctypes

    from extvisor.testing import Harness

    backend = RuncBackend(BackendConfig(state_dir=tmp_path / "state"))
    await backend.open()
    harness = Harness(backend, tmp_path / "rootfs", tmp_path / "svc")
    (tmp_path / "rootfs").mkdir()
    try:
        for i in range(3):
            status, out = await harness.run(harness.spec(f"z{i}", "echo hi"))
            assert status.success and out == "hi\n"
        running, _ = await harness.launch(harness.spec("detached", ["/bin/sleep", "1000"]))
        await backend.close()  # stops watching, the container runs on
        assert (await backend.runc("list", "-q")).split() == [running.id]
        await running.delete()
    finally:
        await harness.close()
        await backend.close()
    flag = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
    assert flag.value == 0
    assert _zombie_children() == []


async def test_a_new_backend_adopts_what_the_monitor_holds(tmp_path: Path) -> None:
    """Closed (the daemon gone) and opened again: same PID, the output written meanwhile once,
    and a container that ended meanwhile with its exit code; a kill is reported as a signal."""
    _require_runc()
    import asyncio
    import signal

    from extvisor.testing import CollectingSink, Harness

    first = RuncBackend(BackendConfig(state_dir=tmp_path / "state"))
    await first.open()
    (tmp_path / "rootfs").mkdir()
    harness = Harness(first, tmp_path / "rootfs", tmp_path / "svc")
    counter = harness.spec("count", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done")
    quitter = harness.spec("quit", "trap 'echo bye; exit 7' USR1; while :; do sleep 0.02; done")
    # 4 MB while no daemon reads: far more than a pipe holds, and the service never blocks
    flood = harness.spec("flood", "sleep 0.5; yes 0123456789abcdef | head -c 4000000; echo; echo done; sleep 1000")
    try:
        running, sink = await harness.launch(counter)
        ending, _ = await harness.launch(quitter)
        flooding, flood_sink = await harness.launch(flood)
        await asyncio.sleep(0.3)
        await first.close()  # nothing reads now; the monitor goes on writing the output down
        assert flood_sink.text() == ""
        before = sink.text()
        os.kill(ending.pid, signal.SIGUSR1)
        await asyncio.sleep(0.5)
        second = RuncBackend(BackendConfig(state_dir=tmp_path / "state"))
        await second.open()
        try:
            again = CollectingSink()
            adopted = await second.adopt(harness.request(counter, again))
            ended_sink = CollectingSink()
            ended = await second.adopt(harness.request(quitter, ended_sink))
            assert adopted is not None and ended is not None
            assert adopted.pid == running.pid
            flood_again = CollectingSink()
            flooded = await second.adopt(harness.request(flood, flood_again))
            assert flooded is not None and flooded.pid == flooding.pid
            for _ in range(100):
                if flood_again.text().endswith("done\n"):
                    break
                await asyncio.sleep(0.05)
            assert flood_again.text() == "0123456789abcdef\n" * 235294 + "01\ndone\n"
            await flooded.delete()
            assert (await asyncio.wait_for(ended.wait(), 5)).code == 7
            assert ended_sink.text().endswith("bye\n")
            await ended.delete()
            await asyncio.sleep(0.2)
            await adopted.signal(signal.SIGKILL)
            status = await asyncio.wait_for(adopted.wait(), 10)
            assert status.signal == signal.SIGKILL
            numbers = [int(n) for n in (before + again.text()).split()]
            assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 20
            await adopted.delete()
        finally:
            await second.close()
    finally:
        await harness.close()
        await first.close()


def _zombie_children() -> list[str]:
    me, found = str(os.getpid()), []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and fields[1] == me:
                found.append(proc.name)
    return found


async def test_cancelled_launch_leaves_nothing(tmp_path: Path) -> None:
    """A launch cancelled at any point (create, start, done) leaves no container or zombie."""
    _require_runc()
    import asyncio

    from extvisor.testing import Harness

    backend = RuncBackend(BackendConfig(state_dir=tmp_path / "state"))
    await backend.open()
    (tmp_path / "rootfs").mkdir()
    harness = Harness(backend, tmp_path / "rootfs", tmp_path / "svc")
    try:
        for i, delay in enumerate([0.0, 0.005, 0.015, 0.03, 0.05, 0.2]):
            request = harness.request(harness.spec(f"cancel{i}", ["/bin/sleep", "1000"]))
            task = asyncio.ensure_future(backend.launch(request))
            await asyncio.sleep(delay)
            task.cancel()
            try:
                handle = await task
            except asyncio.CancelledError:
                pass
            else:
                await handle.delete()
            assert await backend.runc("list", "-q") == ""
            for hierarchy in Path("/sys/fs/cgroup").iterdir():
                assert not (hierarchy / "extvisor" / request.service_id).exists()
    finally:
        await harness.close()
        await backend.close()
    assert _zombie_children() == []


async def test_a_killed_monitor_loses_statuses_not_the_backend(tmp_path: Path) -> None:
    """The monitor SIGKILLed: its container's end is still seen (status unknown: 255, as containerd
    says of a dead shim), and the next launch starts a new monitor."""
    _require_runc()
    import asyncio
    import signal

    from extvisor.testing import Harness

    backend = RuncBackend(BackendConfig(state_dir=tmp_path / "state"))
    await backend.open()
    (tmp_path / "rootfs").mkdir()
    harness = Harness(backend, tmp_path / "rootfs", tmp_path / "svc")
    try:
        running, _ = await harness.launch(harness.spec("orphan", ["/bin/sleep", "1000"]))
        old_monitor = backend.link.monitor_pid
        os.kill(old_monitor, signal.SIGKILL)
        await asyncio.sleep(0.2)
        os.kill(running.pid, signal.SIGKILL)
        status = await asyncio.wait_for(running.wait(), 5)
        assert status.code == 255
        await running.delete()
        status, out = await harness.run(harness.spec("after", "echo still here; exit 3"))
        assert status.code == 3 and out == "still here\n"
        assert backend.link.monitor_pid not in (0, old_monitor)
    finally:
        await harness.close()
        await backend.close()


def test_a_chunk_in_flight_at_a_kill_is_neither_lost_nor_repeated(tmp_path: Path) -> None:
    """The position before the log's write says which chunk is in flight; the next reader looks
    whether the service log took it (also when that write rotated the log)."""
    from extvisor.runtime.logs import ServiceLog

    from extvisor_runc.output import OUTPUT, POSITION, load_position

    state = tmp_path / "svc"
    state.mkdir()
    (state / OUTPUT).write_bytes(b"1\n2\n3\n")
    log = ServiceLog(tmp_path / "ext-x.log", max_bytes=4, backups=2)
    log.write(b"1\n")
    before = os.stat(log.path)

    def in_flight(ino: int, size: int) -> None:
        (state / POSITION).write_text(f"{42:10d} {2:20d} {4:20d} {ino:20d} {size:20d}\n")

    in_flight(before.st_ino, before.st_size)
    assert load_position(state, log.path) == (42, 2)  # killed before the log took "2\n": read it again
    log.write(b"2\n")  # 4 bytes: the log rotates after this write
    assert os.stat(str(log.path) + ".1").st_ino == before.st_ino
    assert load_position(state, log.path) == (42, 4)  # it took it: go on after it
    in_flight(0, 0)
    assert load_position(state, log.path) == (42, 2)  # unknown: read again rather than skip
    log.close()
