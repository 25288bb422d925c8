"""The backend contract, run against a private containerd on busybox rootfs dirs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd_daemon import ContainerdDaemon, containerd_daemon

from extvisor import BackendConfig
from extvisor.testing import BackendContract, Harness
from extvisor_containerd import ContainerdBackend

pytestmark = pytest.mark.containerd

NAMESPACE = "extvisor-test"


@pytest.fixture(scope="module")
def daemon() -> Iterator[ContainerdDaemon]:
    with containerd_daemon() as d:
        yield d


def leftovers_of(daemon: ContainerdDaemon, runc_root: Path, state_dir: Path, service_id: str) -> list[str]:
    """Containers, tasks, shims, runc state, cgroups and FIFOs left of *service_id*."""
    found = [f"container {service_id}" for cid in daemon.containers(NAMESPACE) if cid == service_id]
    tasks = daemon.ctr("tasks", "list", "-q", namespace=NAMESPACE, check=False).stdout.split()
    found += [f"task {service_id}" for tid in tasks if tid == service_id]
    if (runc_root / NAMESPACE / service_id).exists():
        found.append(f"runc state {runc_root / NAMESPACE / service_id}")
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if (hierarchy / "extvisor" / service_id).exists():
            found.append(f"cgroup {hierarchy / 'extvisor' / service_id}")
    found += [f"fifo {p}" for p in state_dir.rglob(f"{service_id}.stdio")]
    return found


async def settled(check, timeout: float = 3.0) -> list[str]:  # type: ignore[no-untyped-def]
    """A shim exits shortly after its task is deleted: give it a moment."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (found := check()) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return found


class TestContainerd(BackendContract):
    @pytest.fixture
    def backend_factory(self, daemon: ContainerdDaemon, tmp_path: Path):  # type: ignore[no-untyped-def]
        self.daemon = daemon
        self.state_dir = tmp_path / "backend-state"
        self.tmp_path = tmp_path
        options = {"containerd_address": daemon.address, "containerd_namespace": NAMESPACE}
        return lambda: ContainerdBackend(BackendConfig(state_dir=self.state_dir, options=options))

    async def leftovers(self, service_id: str) -> list[str]:  # type: ignore[override]
        def check() -> list[str]:
            found = leftovers_of(self.daemon, self.state_dir / "runc", self.tmp_path, service_id)
            shims = [p for p in self.daemon.shims() if service_id.encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
            return found + [f"shim pid {p}" for p in shims]

        return await settled(check)

    async def test_stdout_and_stderr_in_order(self, harness: Harness) -> None:
        """Overrides the contract: containerd's shim reads stdout and stderr from two pipes.

        The runc shim (io.containerd.runc.v2) always gives a non-terminal task one pipe
        per stream and copies each into the FIFO on its own; writes to the two streams
        in quick succession (under a millisecond apart here) may come out grouped by stream
        (Talos, which also runs services through containerd, has the same property). Each
        stream keeps its order and nothing is lost; writes further apart keep their order.
        """
        script = "echo a; echo b >&2; echo c; echo d >&2"
        status, out = await harness.run(harness.spec("order", script))
        assert status.success
        assert sorted(out.splitlines()) == ["a", "b", "c", "d"]
        assert [x for x in out.splitlines() if x in "ac"] == ["a", "c"]
        assert [x for x in out.splitlines() if x in "bd"] == ["b", "d"]
        spaced = "echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c; sleep 0.05; echo d >&2"
        for i in range(3):
            status, out = await harness.run(harness.spec(f"spaced{i}", spaced))
            assert status.success and out == "a\nb\nc\nd\n"
