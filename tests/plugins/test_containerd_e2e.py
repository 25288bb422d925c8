"""``extvisor daemon --backend containerd`` end to end: containerd late, restarted, and extvisor killed."""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd_daemon import ContainerdDaemon
from daemon_process import DaemonProcess

from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.containerd

NS = "extvisor-e2e"
TICKER = "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"


@pytest.fixture
def containerd() -> Iterator[ContainerdDaemon]:
    d = ContainerdDaemon()
    yield d  # started by the test
    d.stop()


@pytest.fixture
def daemon(tmp_path: Path, containerd: ContainerdDaemon) -> Iterator[DaemonProcess]:
    extra = ["--containerd-address", containerd.address, "--containerd-namespace", NS]
    d = DaemonProcess(tmp_path, backend="containerd", extra=extra)
    for name in ("tick", "once"):
        make_busybox_rootfs(d.rootfs_dir / name)
    (d.config_dir / "tick.yaml").write_text(textwrap.dedent(f"""\
        name: tick
        container: {{entrypoint: /bin/sh, args: ["-c", "{TICKER}"]}}
        restart: always
    """))  # fmt: skip
    (d.config_dir / "once.yaml").write_text(textwrap.dedent("""\
        name: once
        container: {entrypoint: /bin/sh, args: ["-c", "echo out; echo err >&2; exit 3"]}
        restart: never
    """))  # fmt: skip
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


def test_waits_for_containerd_survives_its_restart_and_cleans_up(
    daemon: DaemonProcess, containerd: ContainerdDaemon
) -> None:
    daemon.start()
    waiting = daemon.wait_state("ext-tick", "Waiting")
    assert "containerd is not reachable" in waiting["events"][-1]["msg"], waiting
    containerd.start()
    pid = daemon.wait_state("ext-tick", "Running", timeout=20)["pid"]
    failed = daemon.wait_state("ext-once", "Failed", "Finished")
    assert "exit code 3" in failed["events"][-1]["msg"]
    once_log = (daemon.log_dir / "ext-once.log").read_text()
    assert "out\n" in once_log and "err\n" in once_log
    containerd.restart()
    info = daemon.service("ext-tick")
    assert info["state"] == "Running" and info["pid"] == pid, info
    daemon.wait(lambda: daemon.service("ext-tick")["state"] == "Running", what="still running")
    assert daemon.stop() == 0  # SIGTERM reaches the trap through the new containerd
    assert "bye" in (daemon.log_dir / "ext-tick.log").read_text()
    assert containerd.containers(NS) == []


def test_killed_extvisor_then_a_new_one_adopts_without_duplicate(
    daemon: DaemonProcess, containerd: ContainerdDaemon
) -> None:
    containerd.start()
    daemon.start()
    daemon.wait_state("ext-tick", "Running")
    daemon.wait_state("ext-once", "Failed")  # and deleted, before the kill
    daemon.stop(signal.SIGKILL)
    assert "ext-tick" in containerd.containers(NS)  # the container outlived its daemon
    daemon.socket.unlink(missing_ok=True)
    daemon.start()
    daemon.wait_state("ext-tick", "Running")
    assert "adopted 1 container(s) left running by an earlier daemon: ext-tick" in daemon.log()
    assert sorted(containerd.containers(NS)) == ["ext-tick"]
    assert daemon.stop() == 0
    assert containerd.containers(NS) == []
