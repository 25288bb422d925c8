"""Issue 17, item 4: two daemons on one host, same service names, side by side.

Before: every daemon put its containers under the cgroup ``/extvisor/<id>``, so stopping
``ext-twin`` under one daemon sent SIGTERM (``runc kill --all`` walks the cgroup) to
``ext-twin`` under the other; containerd daemons shared one namespace.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from containerd_daemon import ContainerdDaemon, containerd  # noqa: F401  (fixture)
from daemon_process import DaemonProcess

from extvisor.protocols import instance_name
from extvisor.testing import make_busybox_rootfs

TWIN = "echo up; trap 'echo got-TERM; exit 0' TERM; while :; do sleep 0.1; done"


def _twin(d: DaemonProcess) -> None:
    make_busybox_rootfs(d.rootfs_dir / "twin")
    (d.config_dir / "twin.yaml").write_text(textwrap.dedent(f"""\
        name: twin
        container: {{entrypoint: /bin/sh, args: ["-c", "{TWIN}"]}}
        restart: never
    """))  # fmt: skip


def _cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def _pair(tmp_path: Path, backend: str, extra: list[str]) -> tuple[DaemonProcess, DaemonProcess]:
    a = DaemonProcess(tmp_path / "a", backend=backend, extra=extra)
    b = DaemonProcess(tmp_path / "b", backend=backend, extra=extra + ["--instance", "second"])
    for d in (a, b):
        _twin(d)
    return a, b


def _side_by_side(a: DaemonProcess, b: DaemonProcess) -> None:
    a.start()
    b.start()
    try:
        pid_a = a.wait_state("ext-twin", "Running")["pid"]
        pid_b = b.wait_state("ext-twin", "Running")["pid"]
        assert pid_a != pid_b
        cg_a, cg_b = _cgroup_of(pid_a), _cgroup_of(pid_b)
        assert f"/extvisor/{instance_name(a.state_dir)}/ext-twin" in cg_a or "libpod" in cg_a, cg_a
        assert "/extvisor/second/ext-twin" in cg_b or "libpod" in cg_b, cg_b
        a.cli("service", "ext-twin", "stop")
        a.wait_state("ext-twin", "Finished")
        assert "got-TERM" in (a.log_dir / "ext-twin.log").read_text()
        time.sleep(0.5)  # a stray TERM would have been acted on by now (the trap answers in 0.1 s)
        info = b.service("ext-twin")
        assert info["state"] == "Running" and info["pid"] == pid_b, info
        assert "got-TERM" not in (b.log_dir / "ext-twin.log").read_text()
        assert Path(f"/proc/{pid_b}").exists()
        # And the other way round: the second daemon stops its own twin only.
        a.cli("service", "ext-twin", "start")
        pid_a = a.wait_state("ext-twin", "Running")["pid"]
        b.cli("service", "ext-twin", "stop")
        b.wait_state("ext-twin", "Finished")
        time.sleep(0.5)
        assert a.service("ext-twin")["state"] == "Running"
        assert a.log_dir.joinpath("ext-twin.log").read_text().count("got-TERM") == 1
    finally:
        for d in (a, b):
            if d.proc is not None and d.proc.poll() is None:
                assert d.stop() == 0, d.log()[-2000:]
    # Each daemon's cgroup parent went with it (podman's containers live under libpod's).
    for parent in (f"extvisor/{instance_name(a.state_dir)}", "extvisor/second"):
        assert [str(h) for h in Path("/sys/fs/cgroup").iterdir() if (h / parent).exists()] == []


@pytest.mark.runc
def test_two_runc_daemons_with_the_same_service_names(tmp_path: Path) -> None:
    _side_by_side(*_pair(tmp_path, "runc", []))


@pytest.mark.containerd
def test_two_containerd_daemons_with_the_same_service_names(tmp_path: Path, containerd: ContainerdDaemon) -> None:
    _side_by_side(*_pair(tmp_path, "containerd", ["--containerd-address", containerd.address]))


def test_instance_name_is_checked(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, extra=["--instance", "../evil"])
    with pytest.raises(RuntimeError, match="--instance"):
        d.start()
