"""Dev mode's socket directory outside a project whose own path is too long for a socket
(issue 24 item 2): never one another user made, can write or could swap."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from podman_service import PodmanService, podman_service  # noqa: F401  (fixture)

sys.path.insert(0, str(Path(__file__).parent))
from test_devmode import DevProcess, running, service_yaml  # noqa: E402

from extvisor.client.http import Client  # noqa: E402
from extvisor.devmode.project import socket_for  # noqa: E402
from extvisor.server.files import UnsafeDirectory, private_dir  # noqa: E402
from extvisor.testing import make_busybox_rootfs  # noqa: E402

OTHER_UID = 54321  # no such user needed: a directory another uid owns


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_private_dir_is_made_0700_and_an_existing_private_one_is_kept(tmp_path: Path) -> None:
    d = private_dir(tmp_path / "sock")
    assert mode(d) == 0o700 and os.lstat(d).st_uid == os.geteuid()
    (d / "keep").write_text("x")
    assert private_dir(d) == d and (d / "keep").exists()
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)  # as /tmp: others may write there, not rename what is ours
    assert mode(private_dir(sticky / "sock")) == 0o700
    deep = private_dir(tmp_path / "a" / "b" / "c", parents=True)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", deep)] == [0o700] * 3
    with pytest.raises(UnsafeDirectory):
        private_dir(tmp_path / "x" / "y")  # no parents unless asked


@pytest.mark.parametrize("case", ["other-owner", "mode-0777", "symlink", "file", "loose-parent", "parent-of-other"])
def test_private_dir_refuses(tmp_path: Path, case: str) -> None:
    target = tmp_path / "sock"
    if case == "other-owner":
        target.mkdir(mode=0o700)
        os.chown(target, OTHER_UID, OTHER_UID)
        why = f"it belongs to uid {OTHER_UID}, not to you"
    elif case == "mode-0777":
        target.mkdir()
        target.chmod(0o777)
        why = "it can be written by others (mode 0777): another user may have put something in it"
    elif case == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        target.symlink_to(tmp_path / "elsewhere")
        why = "it is a symlink"
    elif case == "file":
        target.write_text("")
        why = "it exists and is not a directory"
    elif case == "loose-parent":
        loose = tmp_path / "loose"
        loose.mkdir()
        loose.chmod(0o777)
        target = loose / "sock"
        why = "can be written by other users (mode 0777)"
    else:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, OTHER_UID, OTHER_UID)
        target = theirs / "sock"
        why = f"belongs to uid {OTHER_UID}"
    before = os.lstat(target) if os.path.lexists(target) else None
    with pytest.raises(UnsafeDirectory) as err:
        private_dir(target, "dev mode's API socket")
    assert str(err.value).startswith(f"refusing {target} for dev mode's API socket: ")
    assert why in str(err.value)
    after = os.lstat(target) if os.path.lexists(target) else None
    assert (before and (before.st_mode, before.st_uid)) == (after and (after.st_mode, after.st_uid))  # untouched


def long_project(base: Path) -> Path:
    project = base / ("p" * 120)
    project.mkdir(parents=True)
    return project


def test_socket_dir_prefers_xdg_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = long_project(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert socket_for(project).parent == runtime / "extvisor-dev"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert socket_for(project).parent.name == f"extvisor-dev-{os.getuid()}"


@pytest.mark.parametrize("case", ["other-owner", "mode-0777", "symlink"])
def test_dev_mode_refuses_a_socket_dir_another_user_prepared(tmp_path: Path, case: str) -> None:
    """As found: another local user pre-creates /tmp/extvisor-dev-<uid> (here a private TMPDIR
    stands for /tmp) and could move the socket away and serve a fake API at the printed path."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    planted = tmp / f"extvisor-dev-{os.getuid()}"
    if case == "other-owner":
        planted.mkdir()
        planted.chmod(0o777)
        os.chown(planted, OTHER_UID, OTHER_UID)
    elif case == "mode-0777":
        planted.mkdir()
        planted.chmod(0o777)
    else:
        (tmp_path / "attacker").mkdir()
        planted.symlink_to(tmp_path / "attacker")
    project = long_project(tmp_path / "work")
    (project / "web.yaml").write_text(service_yaml("web", "hi"))
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp)
    r = subprocess.run([sys.executable, "-m", "extvisor", "dev", str(project), "--color", "never",
                        "--podman-url", "unix:///nonexistent/podman.sock"],
                       capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"refusing {planted} for dev mode's API socket" in out
    assert "another user may have" in out
    assert not list(planted.glob("*.sock"))  # through the symlink too: nothing was bound
    assert "watching for changes" not in out


@pytest.mark.podman
@pytest.mark.timeout(60)
def test_dev_mode_with_a_long_path_serves_in_xdg_runtime_dir(podman_service: PodmanService, tmp_path: Path) -> None:
    project = long_project(tmp_path / "work")
    (project / "web.yaml").write_text(service_yaml("web", "hello from a long path"))
    make_busybox_rootfs(project / "web")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    dev = DevProcess(project, "--podman-url", podman_service.url, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    try:
        sock = Path(dev.wait_line(r"EXTVISOR_SOCKET=(\S+) extvisor services").group(1))
        dev.wait_line(r"^ext-web \| hello from a long path$")
        assert sock.parent == runtime / "extvisor-dev" and mode(sock.parent) == 0o700
        dev.wait(lambda: running(Client(str(sock), timeout=10), "ext-web"), "ext-web running")
    finally:
        rc = dev.stop(signal.SIGINT)
    assert rc == 0, dev.output
