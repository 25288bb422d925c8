"""Issue 17, item 4: two daemons on one host, same service names, side by side.

Before: every daemon put its containers under the cgroup ``/extvisor/<id>``, so stopping
``ext-twin`` under one daemon sent SIGTERM (``runc kill --all`` walks the cgroup) to
``ext-twin`` under the other; containerd daemons shared one namespace.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from containerd_daemon import ContainerdDaemon, containerd  # noqa: F401  (fixture)
from daemon_process import DaemonProcess

from extvisor.protocols import instance_name
from extvisor.server.files import INSTANCE_LOCKS, DaemonError, InstanceLock
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


@pytest.mark.runc
def test_item24_8_a_second_daemon_with_the_same_instance_is_refused(tmp_path: Path) -> None:
    """Issue 24, item 8: before, the second daemon started on the first one's cgroups, and stopping
    it killed the first one's services (which that one then reported "exited without error")."""
    instance = "t" + uuid.uuid4().hex[:12]  # not another test's (or another run's) instance
    a = DaemonProcess(tmp_path / "a", extra=["--instance", instance])
    b = DaemonProcess(tmp_path / "b", extra=["--instance", instance])
    for d in (a, b):
        _twin(d)
    lock = INSTANCE_LOCKS / f"{instance}.lock"
    a.start()
    try:
        pid_a = a.wait_state("ext-twin", "Running")["pid"]
        with pytest.raises(RuntimeError) as refused:
            b.start()
        assert lock.read_text() == f"{a.proc.pid}\n{a.state_dir}\n"
        assert b.proc.returncode == 1
        said = f"instance {instance} (--instance) is in use by another extvisor daemon (pid {a.proc.pid}, " \
               f"state directory {a.state_dir})"
        assert said in str(refused.value) and "Traceback" not in b.log(), b.log()
        assert not (b.state_dir / "runc").exists() and not b.socket.exists()  # it touched nothing
        # The first daemon is untouched: same container, no signal, its cgroup in place.
        time.sleep(0.5)
        info = a.service("ext-twin")
        assert info["state"] == "Running" and info["pid"] == pid_a, info
        assert "got-TERM" not in (a.log_dir / "ext-twin.log").read_text()
        assert f"/extvisor/{instance}/ext-twin" in _cgroup_of(pid_a)
        assert a.stop() == 0, a.log()[-2000:]
        assert not lock.exists()  # taken away with the daemon
        assert "got-TERM" in (a.log_dir / "ext-twin.log").read_text()
        # Once the first has gone, the name is free again.
        b.start()
        b.wait_state("ext-twin", "Running")
        assert b.stop() == 0, b.log()[-2000:]
    finally:
        for d in (a, b):
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


@pytest.mark.runc
def test_item24_8_a_killed_daemon_leaves_its_instance_free(tmp_path: Path) -> None:
    instance = "t" + uuid.uuid4().hex[:12]
    a = DaemonProcess(tmp_path / "a", extra=["--instance", instance])
    _twin(a)
    a.start()
    try:
        a.wait_state("ext-twin", "Running")
        a.stop(signal.SIGKILL)  # the kernel drops the lock with its holder
        a.socket.unlink(missing_ok=True)
        a.start()  # and the next daemon takes over what it left
        a.wait_state("ext-twin", "Running")
    finally:
        if a.proc is not None and a.proc.poll() is None:
            assert a.stop() == 0, a.log()[-2000:]
    assert not (INSTANCE_LOCKS / f"{instance}.lock").exists()


def test_instance_lock_names_its_holder_and_refuses_a_shared_directory(tmp_path: Path) -> None:
    first = InstanceLock.take(tmp_path / "locks", "one", Path("/var/lib/x"), "--instance")
    with pytest.raises(DaemonError, match=r"instance one \(--instance\) is in use by another extvisor daemon "
                                          rf"\(pid {os.getpid()}, state directory /var/lib/x\)"):
        InstanceLock.take(tmp_path / "locks", "one", Path("/var/lib/y"), "--instance")
    other = InstanceLock.take(tmp_path / "locks", "two", Path("/var/lib/y"), "--instance")  # another name: free
    first.release()
    again = InstanceLock.take(tmp_path / "locks", "one", Path("/var/lib/y"), "--instance")
    again.release()
    other.release()
    assert list((tmp_path / "locks").iterdir()) == []
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(DaemonError, match="for the instance lock: it can be written by others"):
        InstanceLock.take(shared, "one", Path("/var/lib/x"), "--instance")
    (tmp_path / "link").symlink_to(tmp_path / "locks")
    with pytest.raises(DaemonError, match="for the instance lock: "):
        InstanceLock.take(tmp_path / "link", "one", Path("/var/lib/x"), "--instance")


def test_only_an_explicit_instance_needs_its_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from extvisor.server import files

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(files, "instance_lock_dir", lambda: shared)
    # A derived name is kept by its state directory's lock already: an unusable place is no reason to stop.
    assert files.lock_instance("s0123456789", False, tmp_path / "state") is None
    with pytest.raises(DaemonError, match=f"refusing {shared} for the instance lock: "):
        files.lock_instance("mine", True, tmp_path / "state")
    monkeypatch.setattr(files, "instance_lock_dir", lambda: None)  # another user, no $XDG_RUNTIME_DIR
    assert files.lock_instance("s0123456789", False, tmp_path / "state") is None
    with pytest.raises(DaemonError, match="--instance mine: no runtime directory to lock it in; set XDG_RUNTIME_DIR"):
        files.lock_instance("mine", True, tmp_path / "state")
