"""A daemon restart adopts the containers that still match their service files (containerd, podman),
replaces those whose spec changed, stops those whose file is gone; SIGTERM still stops everything."""

from __future__ import annotations

import re
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from containerd_daemon import ContainerdDaemon
from daemon_process import DaemonProcess
from podman_service import PodmanService, podman_service  # noqa: F401  (fixture)

from extvisor.protocols import instance_name
from extvisor.testing import make_busybox_rootfs

NS = "extvisor-adopt"
COUNTER = "i=0; trap 'echo bye; exit 0' TERM; while :; do i=$((i+1)); echo line $i; sleep 0.02; done"
BACKENDS = [pytest.param("containerd", marks=pytest.mark.containerd), pytest.param("podman", marks=pytest.mark.podman)]


def service(name: str, script: str, env: str = "A=1") -> str:
    return textwrap.dedent(f"""\
        name: {name}
        container: {{entrypoint: /bin/sh, args: ["-c", "{script}"], environment: ["{env}"]}}
        restart: always
    """)  # fmt: skip


def numbers(log: Path) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"^line (\d+)$", log.read_text(), re.M)]


class Node:
    """A daemon on one backend, and what that backend runs of it (service ids)."""

    def __init__(self, daemon: DaemonProcess, containers: Callable[[], list[str]]) -> None:
        self.daemon = daemon
        self.containers = lambda: sorted(containers())


def _podman_containers(svc: PodmanService, state_dir: Path) -> list[str]:
    """This daemon's containers (named ``<id>.<instance>``; other tests share the podman)."""
    suffix = "." + instance_name(state_dir)
    out = svc.podman("ps", "-a", "--format", "{{.Names}}").stdout
    return [name.removesuffix(suffix) for name in out.split() if name.endswith(suffix)]


@pytest.fixture(params=BACKENDS)
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    containerd = None
    if request.param == "containerd":
        containerd = ContainerdDaemon()
        containerd.start()
        extra = ["--containerd-address", containerd.address, "--containerd-namespace", NS]
        d = DaemonProcess(tmp_path, backend="containerd", extra=extra)
        listed = lambda: containerd.containers(NS)  # noqa: E731
    else:
        svc = request.getfixturevalue("podman_service")
        d = DaemonProcess(tmp_path, backend="podman", extra=["--podman-url", svc.url])
        listed = lambda: _podman_containers(svc, d.state_dir)  # noqa: E731
    for name in ("count", "edit", "gone"):
        make_busybox_rootfs(d.rootfs_dir / name)
        (d.config_dir / f"{name}.yaml").write_text(service(name, COUNTER))
    yield Node(d, listed)
    if d.proc is not None and d.proc.poll() is None:
        d.stop()
    if containerd is not None:
        containerd.stop()


def _restart_after(daemon: DaemonProcess, sig: int, pause: float = 1.0) -> None:
    assert daemon.stop(sig) == (0 if sig == signal.SIGUSR2 else -signal.SIGKILL)
    time.sleep(pause)  # the services go on writing while no daemon reads
    daemon.socket.unlink(missing_ok=True)
    daemon.start()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGUSR2], ids=["kill", "usr2"])
def test_restart_adopts_same_pid_no_missed_output(node: Node, sig: int):
    daemon = node.daemon
    daemon.start()
    before = daemon.wait_state("ext-count", "Running")
    daemon.wait(lambda: len(numbers(daemon.log_dir / "ext-count.log")) > 10, what="output")
    _restart_after(daemon, sig)
    after = daemon.wait_state("ext-count", "Running")
    assert after["pid"] == before["pid"], (before, after)
    assert after["restarts"] == before["restarts"]
    msgs = [e["msg"] for e in after["events"]]
    assert any(m.startswith("Started task ext-count") for m in msgs), msgs  # the history carried over
    assert msgs[-1] == f"Adopted task ext-count (PID {before['pid']}) for container ext-count, left running by an earlier daemon"
    seen = numbers(daemon.log_dir / "ext-count.log")
    daemon.wait(lambda: len(numbers(daemon.log_dir / "ext-count.log")) > len(seen) + 20, what="more output")
    got = numbers(daemon.log_dir / "ext-count.log")
    assert got == list(range(1, len(got) + 1)), "lines lost or repeated across the restart"
    assert node.containers() == ["ext-count", "ext-edit", "ext-gone"]
    assert daemon.stop() == 0  # a plain SIGTERM still stops everything
    assert node.containers() == []
    assert "bye" in (daemon.log_dir / "ext-count.log").read_text()


def test_changed_spec_is_replaced_and_gone_file_stopped(node: Node):
    daemon = node.daemon
    daemon.start()
    old = {sid: daemon.wait_state(sid, "Running")["pid"] for sid in ("ext-count", "ext-edit", "ext-gone")}
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    (daemon.config_dir / "edit.yaml").write_text(service("edit", COUNTER, env="A=2"))
    (daemon.config_dir / "gone.yaml").unlink()
    daemon.socket.unlink(missing_ok=True)
    daemon.start()
    assert daemon.wait_state("ext-count", "Running")["pid"] == old["ext-count"]
    edit = daemon.wait_state("ext-edit", "Running")
    assert edit["pid"] != old["ext-edit"]
    msgs = [e["msg"] for e in edit["events"]]
    assert "Replacing the container an earlier daemon left running: its spec changed" in msgs, msgs
    assert "stopped and removed ext-gone, left by an earlier daemon: its service file is gone" in daemon.log()
    assert node.containers() == ["ext-count", "ext-edit"]
    assert daemon.stop() == 0
    assert node.containers() == []
