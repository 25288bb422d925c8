"""The containerd backend when containerd or extvisor restart, is away, or errs.

Each test has its own containerd (about 50 ms to start), since some stop it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from containerd_daemon import ContainerdDaemon

from extvisor import BackendConfig, BackendError, BackendUnavailable, ExitStatus
from extvisor.testing import Harness
from extvisor_containerd import ContainerdBackend
from extvisor_containerd import client as ctrd_client
from extvisor_containerd.backend import FIFO_LABEL, LABEL

pytestmark = pytest.mark.containerd

NS = "extvisor-rt"
TRAP = "trap 'echo got TERM; exit 42' TERM; echo ready; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"


@pytest.fixture
def daemon() -> Iterator[ContainerdDaemon]:
    d = ContainerdDaemon()
    yield d  # not started: each test starts it when it wants
    d.stop()


@pytest.fixture
def make_backend(daemon: ContainerdDaemon, tmp_path: Path) -> Callable[[], ContainerdBackend]:
    options = {"containerd_address": daemon.address, "containerd_namespace": NS}
    return lambda: ContainerdBackend(BackendConfig(state_dir=tmp_path / "backend-state", options=options))


@pytest.fixture
async def harness(
    daemon: ContainerdDaemon, make_backend: Callable[[], ContainerdBackend], tmp_path: Path
) -> AsyncIterator[Harness]:
    daemon.start()
    backend = make_backend()
    await backend.open()
    h = Harness(backend, tmp_path / "rootfs", tmp_path / "services")
    yield h
    await h.close()
    await backend.close()


async def test_containerd_restart_while_running(harness: Harness, daemon: ContainerdDaemon) -> None:
    handle, sink = await harness.launch(harness.spec("survivor", TRAP))
    await sink.wait_for(b"ready\n")
    waiting = asyncio.ensure_future(handle.wait())
    await asyncio.to_thread(daemon.restart)
    await asyncio.sleep(0.3)
    assert not waiting.done(), "wait() returned though the task still runs"
    seen = len(sink.data)
    await sink.wait_for(b"tick", timeout=5)
    while len(sink.data) == seen:  # output keeps flowing: the shim writes the FIFO, not containerd
        await asyncio.sleep(0.05)
    await handle.signal(signal.SIGTERM)  # reconnects to the new containerd
    assert await asyncio.wait_for(waiting, 10) == ExitStatus(code=42)
    assert "got TERM\n" in sink.text()
    await handle.delete()
    assert daemon.containers(NS) == []


async def test_exit_while_containerd_is_down(harness: Harness, daemon: ContainerdDaemon, tmp_path: Path) -> None:
    host = tmp_path / "flag"
    host.mkdir()
    mount = {"destination": "/data", "type": "bind", "source": str(host), "options": ["rbind", "rw"]}
    spec = harness.spec("downexit", "echo ready; while [ ! -e /data/go ]; do sleep 0.05; done; echo bye; exit 7",
                        mounts=[mount])  # fmt: skip
    handle, sink = await harness.launch(spec)
    await sink.wait_for(b"ready\n")
    waiting = asyncio.ensure_future(handle.wait())
    await asyncio.to_thread(daemon.terminate)
    (host / "go").touch()
    await sink.wait_for(b"bye\n")  # it ended while containerd was away
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await asyncio.to_thread(daemon.start)
    assert await asyncio.wait_for(waiting, 10) == ExitStatus(code=7)
    await handle.delete()
    assert daemon.containers(NS) == []


async def test_extvisor_restart_removes_old_containers(
    daemon: ContainerdDaemon, make_backend: Callable[[], ContainerdBackend], tmp_path: Path
) -> None:
    daemon.start()
    first = make_backend()
    await first.open()
    h = Harness(first, tmp_path / "rootfs", tmp_path / "services")
    spec = h.spec("old", ["/bin/sleep", "1000"])
    await h.launch(spec)
    fifo = tmp_path / "services" / spec.id / f"{spec.id}.stdio"
    assert fifo.exists()
    await first.close()  # the daemon died without deleting anything
    second = make_backend()
    await second.open()
    try:
        assert await second.cleanup() == [spec.id]
        assert await second.cleanup() == []
    finally:
        await second.close()
    assert daemon.containers(NS) == []
    assert not fifo.exists(), "the old run's FIFO (from its label) was not removed"
    for _ in range(60):
        if not daemon.shims():
            break
        await asyncio.sleep(0.05)
    assert daemon.shims() == []


async def test_unreachable_then_available(
    daemon: ContainerdDaemon, make_backend: Callable[[], ContainerdBackend], tmp_path: Path
) -> None:
    backend = make_backend()
    with pytest.raises(BackendUnavailable, match=f"containerd is not reachable at {daemon.address}"):
        await backend.open()
    daemon.start()
    await backend.open()
    assert await backend.cleanup() == []
    h = Harness(backend, tmp_path / "rootfs", tmp_path / "services")
    try:
        status, out = await h.run(h.spec("late", "echo hello"))
        assert status.success and out == "hello\n"
        await asyncio.to_thread(daemon.terminate)
        spec = h.spec("nodaemon", "echo never")
        with pytest.raises(BackendUnavailable, match="UNAVAILABLE"):
            await backend.launch(h.request(spec))
        assert list((tmp_path / "services" / spec.id).iterdir()) == []
    finally:
        await h.close()
        await backend.close()


async def test_duplicate_id_is_an_error_and_keeps_the_first(harness: Harness, daemon: ContainerdDaemon) -> None:
    spec = harness.spec("dup", ["/bin/sleep", "1000"])
    first, _ = await harness.launch(spec)
    with pytest.raises(BackendError, match=f"containerd already has a container '{spec.id}' in namespace '{NS}'"):
        await harness.backend.launch(harness.request(spec))
    assert daemon.containers(NS) == [spec.id]
    waiting = asyncio.ensure_future(first.wait())
    done, _ = await asyncio.wait([waiting], timeout=0.2)
    assert not done, "the failed second launch harmed the first container"
    await first.signal(signal.SIGKILL)
    assert await asyncio.wait_for(waiting, 10) == ExitStatus(signal=9)


async def test_a_stale_container_of_ours_is_replaced(harness: Harness, daemon: ContainerdDaemon) -> None:
    spec = harness.spec("stale", "echo fresh")
    client = harness.backend.client  # type: ignore[attr-defined]
    # What a launch cut short between Containers.Create and Tasks.Create leaves.
    stale = client.container(spec.id, harness.request(spec).oci, {LABEL: spec.id}, "/nonexistent")
    await client.call(client.containers.Create, stale)
    status, out = await harness.run(spec)
    assert status.success and out == "fresh\n"
    assert daemon.containers(NS) == []


async def test_timeout_is_a_readable_error(
    harness: Harness, daemon: ContainerdDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle, sink = await harness.launch(harness.spec("slow", TRAP))
    await sink.wait_for(b"ready\n")
    shim = next(p for p in daemon.shims() if handle.id.encode() in Path(f"/proc/{p}/cmdline").read_bytes())
    monkeypatch.setattr(ctrd_client, "CALL_TIMEOUT", 0.5)
    os.kill(shim, signal.SIGSTOP)  # containerd cannot reach the task's shim
    try:
        with pytest.raises(BackendError, match="did not answer in time"):
            await handle.signal(signal.SIGTERM)
    finally:
        os.kill(shim, signal.SIGCONT)
    monkeypatch.setattr(ctrd_client, "CALL_TIMEOUT", 30.0)
    await handle.signal(signal.SIGKILL)
    assert (await asyncio.wait_for(handle.wait(), 10)).signal in (signal.SIGKILL, None)
    await handle.delete()


async def test_labels_mark_containers(harness: Harness, daemon: ContainerdDaemon) -> None:
    spec = harness.spec("labels", ["/bin/sleep", "1000"])
    handle, _ = await harness.launch(spec)
    info = daemon.ctr("containers", "info", spec.id, namespace=NS).stdout
    assert f'"{LABEL}": "{spec.id}"' in info and FIFO_LABEL in info
    assert '"io.containerd.runc.v2"' in info and '"Image": ""' in info and '"Snapshotter": ""' in info
    # runc's state is under the backend's state dir, not /run/containerd/runc.
    assert not Path(f"/run/containerd/runc/{NS}/{spec.id}").exists()
    await handle.delete()


def test_registered_as_a_plugin(tmp_path: Path) -> None:
    import subprocess
    import sys

    from extvisor import BackendConfig
    from extvisor.plugins import get_plugin_manager

    kind = get_plugin_manager().backends()["containerd"]
    assert isinstance(kind.factory(BackendConfig(state_dir=tmp_path, options={})), ContainerdBackend)
    # Registering the plugin does not load gRPC: a daemon on runc does not pay for it.
    probe = "import sys; from extvisor.plugins import get_plugin_manager; get_plugin_manager(); print('grpc' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    assert [(o.flag, o.default) for o in kind.options] == [
        ("containerd-address", "/run/containerd/containerd.sock"),
        ("containerd-namespace", ""),  # empty: extvisor-<instance>, one namespace per daemon
    ]


def test_stubs_come_from_the_vendored_protos() -> None:
    import extvisor_containerd.api as api
    from extvisor_containerd.api.runc.options import oci_pb2

    proto = Path(__file__).parents[2] / "plugins" / "containerd" / "proto"
    assert (Path(api.__file__).parent / "VERSION").read_text() == (proto / "VERSION").read_text()
    assert "1.6.20" in (proto / "VERSION").read_text()
    assert oci_pb2.Options.DESCRIPTOR.full_name == ctrd_client.RUNC_OPTIONS_TYPE_URL
