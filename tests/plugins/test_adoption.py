"""A daemon restart adopts the containers that still match their service files (runc, containerd, podman),
replaces those whose spec changed, stops those whose file is gone; SIGTERM still stops everything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
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
BACKENDS = [pytest.param("runc", marks=pytest.mark.runc), pytest.param("containerd", marks=pytest.mark.containerd), pytest.param("podman", marks=pytest.mark.podman)]


def service(name: str, script: str, env: str = "A=1", restart: str = "always") -> str:
    return textwrap.dedent(f"""\
        name: {name}
        container: {{entrypoint: /bin/sh, args: ["-c", "{script}"], environment: ["{env}"]}}
        restart: {restart}
    """)  # fmt: skip


def numbers(log: Path) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"^line (\d+)$", log.read_text(), re.M)]


class Node:
    """A daemon on one backend, and what that backend runs of it (service ids)."""

    def __init__(self, daemon: DaemonProcess, containers: Callable[[], list[str]]) -> None:
        self.daemon = daemon
        self.backend = daemon.backend
        self.containers = lambda: sorted(containers())


def _podman_containers(svc: PodmanService, state_dir: Path) -> list[str]:
    """This daemon's containers (named ``<id>.<instance>``; other tests share the podman)."""
    suffix = "." + instance_name(state_dir)
    out = svc.podman("ps", "-a", "--format", "{{.Names}}").stdout
    return [name.removesuffix(suffix) for name in out.split() if name.endswith(suffix)]


def _runc_containers(state_dir: Path) -> list[str]:
    root = state_dir / "runc" / "runc"
    out = subprocess.run(["runc", "--root", str(root), "list", "--format", "json"], capture_output=True, text=True,
                         timeout=10).stdout  # fmt: skip
    return [c["id"] for c in json.loads(out or "null") or []]


@pytest.fixture(params=BACKENDS)
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    containerd = None
    if request.param == "runc":
        d = DaemonProcess(tmp_path, backend="runc")
        listed = lambda: _runc_containers(d.state_dir)  # noqa: E731
    elif request.param == "containerd":
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
    """SIGKILL or SIGUSR1 (exit leaving the services), then a new daemon; SIGUSR2: the daemon
    upgrades in place (same PID, its sockets kept), so no new process is started."""
    if sig == signal.SIGUSR2:
        ready = daemon.log().count("daemon ready")
        assert daemon.proc is not None
        daemon.proc.send_signal(sig)
        daemon.wait(lambda: daemon.log().count("daemon ready") > ready, timeout=30, what="the upgraded daemon")
        return
    assert daemon.stop(sig) == (0 if sig == signal.SIGUSR1 else -signal.SIGKILL)
    time.sleep(pause)  # the services go on writing while no daemon reads
    daemon.socket.unlink(missing_ok=True)
    daemon.start()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGUSR1, signal.SIGUSR2], ids=["kill", "usr1", "usr2"])
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


QUITTER = "trap 'echo leaving; exit 7' USR1; echo up; while :; do sleep 0.05; done"


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except (OSError, IndexError):
        return True


def test_exit_while_away_is_reported_and_handled(node: Node):
    """A container that ends while no daemon runs: its real status, its last lines, its policy."""
    daemon = node.daemon
    for name, restart in (("once", "never"), ("again", "always")):
        make_busybox_rootfs(daemon.rootfs_dir / name)
        (daemon.config_dir / f"{name}.yaml").write_text(service(name, QUITTER, restart=restart))
    daemon.start()
    once, again = (daemon.wait_state(sid, "Running") for sid in ("ext-once", "ext-again"))
    for sid in ("ext-once", "ext-again"):
        daemon.wait(lambda: "up" in (daemon.log_dir / f"{sid}.log").read_text(), what=f"{sid} up")
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    os.kill(once["pid"], signal.SIGUSR1)  # exits 7, saying so
    os.kill(again["pid"], signal.SIGKILL)
    daemon.wait(lambda: _gone(once["pid"]) and _gone(again["pid"]), what="both ended")
    time.sleep(0.5)
    daemon.socket.unlink(missing_ok=True)
    daemon.start()
    ended = daemon.wait_state("ext-once", "Failed")
    msgs = [e["msg"] for e in ended["events"]]
    assert msgs[-1].startswith('Failed running service: error running service: task "ext-once" failed: exit code 7'), msgs
    if node.backend != "containerd":  # containerd's shim drops its FIFO, and what it held, at the exit
        assert "leaving" in (daemon.log_dir / "ext-once.log").read_text()
    daemon.wait(lambda: daemon.service("ext-again")["state"] == "Running" and daemon.service("ext-again")["pid"]
                not in (None, again["pid"]), what="ext-again restarted")  # fmt: skip
    msgs = [e["msg"] for e in daemon.service("ext-again")["events"]]
    assert any("going to restart forever" in m and "killed by SIGKILL" in m for m in msgs), msgs
    assert daemon.stop() == 0
