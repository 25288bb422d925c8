"""The backend contract and podman specifics, against a private rootful podman service."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from podman_service import PodmanService, listing, podman_service  # noqa: F401  (fixture)

from extvisor import BackendConfig, BackendUnavailable
from extvisor.testing import BackendContract, CollectingSink, Harness
from extvisor_podman import PodmanBackend
from extvisor_podman.translate import LABEL, translate

pytestmark = pytest.mark.podman


def leftovers_of(svc: PodmanService, service_id: str) -> list[str]:
    out = svc.podman("ps", "-a", "--filter", f"label={LABEL}={service_id}", "--format", "{{.Names}}").stdout
    return [f"container {name}" for name in out.split()]


class TestPodman(BackendContract):
    @pytest.fixture
    def backend_factory(self, podman_service: PodmanService, tmp_path: Path) -> Callable[[], PodmanBackend]:
        options = {"podman_url": podman_service.url}
        return lambda: PodmanBackend(BackendConfig(state_dir=tmp_path / "state", options=options))

    @pytest.fixture(autouse=True)
    def _service(self, podman_service: PodmanService) -> None:
        self.svc = podman_service

    def leftovers(self, service_id: str) -> list[str]:
        return leftovers_of(self.svc, service_id)

    async def test_stdout_and_stderr_in_order(self, harness: Harness) -> None:
        """Weaker than the contract: conmon reads stdout and stderr from two pipes.

        Lines of each stream keep their order and are never split by the other stream;
        the order between streams is the order conmon read them in (README.md).
        """
        status, out = await harness.run(harness.spec("order", "echo a; echo b >&2; echo c; echo d >&2"))
        assert status.success
        lines = out.splitlines(keepends=True)
        assert sorted(lines) == ["a\n", "b\n", "c\n", "d\n"]
        assert [x for x in lines if x in ("a\n", "c\n")] == ["a\n", "c\n"]
        assert [x for x in lines if x in ("b\n", "d\n")] == ["b\n", "d\n"]

    async def test_streams_interleaved_by_line(self, harness: Harness) -> None:
        script = "i=0; while [ $i -lt 3000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
        status, out = await harness.run(harness.spec("both", script), timeout=30)
        assert status.success
        lines = out.splitlines()
        assert [x for x in lines if x.startswith("out")] == [f"out{i}" for i in range(3000)]
        assert [x for x in lines if x.startswith("err")] == [f"err{i}" for i in range(3000)]
        assert len(lines) == 6000

    async def test_rootfs_is_left_unmodified(self, harness: Harness) -> None:
        spec = harness.spec("pristine", "cat /etc/hostname; ls /run; touch /tmp/x 2>/dev/null; echo done")
        rootfs = harness.rootfs(spec)
        before = listing(rootfs)
        status, out = await harness.run(spec)
        assert status.success, out
        assert listing(rootfs) == before

    async def test_writeable_rootfs_only_gains_what_the_service_wrote(self, harness: Harness) -> None:
        spec = harness.spec("rwclean", "touch /made-by-service", security={"writeableRootfs": True})
        rootfs = harness.rootfs(spec)
        before = {p for p, *_ in listing(rootfs)}
        status, out = await harness.run(spec)
        assert status.success, out
        assert {p for p, *_ in listing(rootfs)} - before == {"made-by-service"}

    async def test_labels_and_settings(self, harness: Harness) -> None:
        spec = harness.spec("labels", ["/bin/sleep", "1000"])
        handle, _ = await harness.launch(spec)
        ct = handle.container
        await asyncio.to_thread(ct.reload)
        assert ct.labels[LABEL] == spec.id
        assert ct.name == f"{spec.id}.{harness.backend.scope}"
        host = ct.attrs["HostConfig"]
        assert host["NetworkMode"] == "host"
        assert host["ReadonlyRootfs"] is True
        assert ct.attrs["OCIRuntime"] == "runc"
        await handle.delete()

    async def test_host_network_and_ipc(self, harness: Harness) -> None:
        script = "for n in net ipc pid; do readlink /proc/self/ns/$n; done"
        status, out = await harness.run(harness.spec("ns", script))
        assert status.success, out
        net, ipc, pid = out.split()
        assert net == _ns("net") and ipc == _ns("ipc") and pid != _ns("pid")

    async def test_notes_name_what_podman_cannot_express(self, harness: Harness) -> None:
        spec = harness.spec("notes", "true", security={"readonlyPaths": ["/proc/sys", "/etc"]})
        handle, _ = await harness.launch(spec)
        await handle.wait()
        assert "readonlyPaths /etc" in handle.notes
        await handle.delete()


    async def test_adoption_reads_on_exactly_where_the_first_instance_stopped(
        self, harness: Harness, backend_factory: Callable[[], PodmanBackend]
    ) -> None:
        """Not the contract's way out (adopt() returning None): podman adopts. A counter on
        both streams goes on writing while nobody reads; the new instance reads on from the
        recorded position: every line once, in order, same PID. The adopted container is
        then stopped and removed like any other."""
        script = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo out $i; echo err $i >&2; done; echo end; sleep 1000"
        spec = harness.spec("adoptflood", script)
        request = harness.request(spec)
        first = await harness.backend.launch(request)
        harness.handles.append(first)
        await request.log.wait_for(b"out 50\n")
        first.detach()  # as a daemon leaving with SIGUSR1 or SIGUSR2, while the counter runs
        before = len(request.log.data)
        other = backend_factory()
        await other.open()
        try:
            sink = CollectingSink()
            handle = await other.adopt(harness.request(spec, sink))
            assert handle is not None and handle.pid == first.pid
            await sink.wait_for(b"end\n", timeout=60)
            assert len(request.log.data) == before  # the first instance stopped reading
            lines = (request.log.text() + sink.text()).splitlines()
            assert [x for x in lines if x.startswith("out ")] == [f"out {i}" for i in range(1, 20001)]
            assert [x for x in lines if x.startswith("err ")] == [f"err {i}" for i in range(1, 20001)]
            assert len(lines) == 40001
            assert await other.cleanup(keep=frozenset({spec.id})) == []
            await handle.signal(signal.SIGKILL)
            assert (await asyncio.wait_for(handle.wait(), 30)).signal == signal.SIGKILL
            await handle.delete()
            assert leftovers_of(self.svc, spec.id) == []
        finally:
            await other.close()


def _ns(kind: str) -> str:
    import os

    return os.readlink(f"/proc/self/ns/{kind}")


async def test_unreachable_socket(tmp_path: Path) -> None:
    backend = PodmanBackend(BackendConfig(tmp_path, {"podman_url": f"unix://{tmp_path}/none.sock"}))
    with pytest.raises(BackendUnavailable, match="not reachable"):
        await backend.open()
    (tmp_path / "dead.sock").touch()  # a path that exists but nobody listens on
    backend = PodmanBackend(BackendConfig(tmp_path, {"podman_url": f"unix://{tmp_path}/dead.sock"}))
    with pytest.raises(BackendUnavailable, match="not reachable"):
        await backend.open()


def test_translate_masks_and_readonly_paths() -> None:
    oci = {
        "process": {"args": ["/bin/true"], "env": ["A=1"], "oomScoreAdj": -600},
        "root": {"path": "/r", "readonly": True},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}], "maskedPaths": ["/proc/keys"],
                  "readonlyPaths": ["/proc/sys"], "resources": {"memory": {"limit": 1}}},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["strictatime", "size=1k"]},
                   {"destination": "/x", "type": "bind", "source": "/y", "options": ["rbind", "ro", "sync"]}],
        "hooks": {},
    }  # fmt: skip
    body, notes = translate(oci, "ext-a")
    assert body["mask"] == ["/proc/keys"]
    assert "/proc/sys" not in body["unmask"] and "/proc/keys" not in body["unmask"] and "/proc/fs" in body["unmask"]
    assert [m["destination"] for m in body["mounts"]] == ["/run", "/x"]
    assert body["mounts"][0]["options"] == ["size=1k"]
    assert body["oom_score_adj"] == -600 and body["env"] == {"A": "1"}
    assert body["netns"] == {"nsmode": "host"} and body["utsns"] == {"nsmode": "host"}
    assert body["pidns"] == {"nsmode": "private"}
    assert notes == ["hooks", "mount /x options sync", "linux.resources.memory"]


async def test_two_daemons_on_one_podman_leave_each_other_alone(podman_service: PodmanService, tmp_path: Path):
    from extvisor.testing import make_busybox_rootfs, make_service
    from extvisor.oci import build_oci_spec
    from extvisor import LaunchRequest

    class Sink:
        def write(self, data: bytes) -> None:
            pass

    ours = PodmanBackend(BackendConfig(state_dir=tmp_path / "a", options={"podman_url": podman_service.url}))
    theirs = PodmanBackend(BackendConfig(state_dir=tmp_path / "b", options={"podman_url": podman_service.url}))
    await ours.open()
    await theirs.open()
    spec = make_service("shared-pod", "sleep 1000")
    rootfs = make_busybox_rootfs(tmp_path / "rootfs" / spec.name)
    request = LaunchRequest(spec.id, spec, build_oci_spec(spec, rootfs), rootfs, Sink(), tmp_path / "svc")
    handle = await ours.launch(request)
    twin = None
    try:
        assert await theirs.cleanup() == []  # not theirs to remove
        # The same service name under another daemon runs beside ours (issue 17, item 4).
        twin = await theirs.launch(LaunchRequest(spec.id, spec, build_oci_spec(spec, rootfs), rootfs, Sink(), tmp_path / "svc2"))
        assert sorted(leftovers_of(podman_service, spec.id)) == sorted(
            [f"container {spec.id}.{ours.scope}", f"container {spec.id}.{theirs.scope}"])
        await twin.signal(9)
        assert not (await asyncio.wait_for(twin.wait(), 30)).success
        assert handle.container.id != twin.container.id
        await asyncio.to_thread(handle.container.reload)
        assert handle.container.status == "running"  # stopping theirs left ours alone
    finally:
        await handle.delete()
        if twin is not None:
            await twin.delete()
        await ours.close()
        await theirs.close()
    assert leftovers_of(podman_service, spec.id) == []


def test_translate_hostname_and_seccomp() -> None:
    oci = {
        "process": {"args": ["/bin/true"]},
        "root": {"path": "/r", "readonly": True},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}],
                  "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}},
    }  # fmt: skip
    body, notes = translate(oci, "ext-a", node_hostname="node1", seccomp_path="/s/seccomp.json")
    assert body["hostname"] == "node1" and body["utsns"] == {"nsmode": "private"}
    assert body["seccomp_profile_path"] == "/s/seccomp.json" and not notes
    body, notes = translate(oci, "ext-a")  # a remote podman: its host's name, no file for the profile
    assert body["hostname"] == "" and body["utsns"] == {"nsmode": "host"}
    assert body["seccomp_profile_path"] == "unconfined" and notes == ["linux.seccomp"]
