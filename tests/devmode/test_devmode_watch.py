"""Dev mode keeps applying edits whatever the rootfs holds (issue 24 item 13): a directory it
cannot read (a root-owned 0700 one, for an ordinary user) is skipped with a warning, and
symlinks are never followed (one to ``/`` or ``/usr`` took the watcher into the host tree,
where it failed, and every later edit was ignored)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from podman_service import PodmanService, podman_service  # noqa: F401  (fixture)

sys.path.insert(0, str(Path(__file__).parent))
from test_devmode import DevProcess, running, service_yaml  # noqa: E402
from test_devmode_rootless import User, user  # noqa: E402, F401  (fixture)

from extvisor.client.http import Client  # noqa: E402
from extvisor.testing import make_busybox_rootfs  # noqa: E402

CHILD = Path(__file__).with_name("watch_child.py")


class WatchChild:
    def __init__(self, project: Path, *names: str, as_user: User | None = None):
        args = [str(CHILD), str(project), *names]
        kw = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if as_user is None:
            self.proc = subprocess.Popen([sys.executable, *args], cwd="/", **kw)  # type: ignore[call-overload]
        else:
            self.proc = as_user.popen([as_user.python, *args], **kw)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_for(lambda: "READY" in self.lines, "the watcher to start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, check, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not check():
            assert self.proc.poll() is None or check(), f"the watcher exited:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {what} after {timeout}s:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def applied(self, edit, action: str, what: str) -> None:  # type: ignore[no-untyped-def]
        """Make the edit until the watcher reports *action* (a few tries: the first may race its start)."""
        mark = len(self.lines)
        deadline = time.monotonic() + 15
        while action not in self.lines[mark:]:
            assert time.monotonic() < deadline, f"{what} was not applied:\n" + "\n".join(self.lines)
            edit()
            try:
                self.wait_for(lambda: action in self.lines[mark:], what, timeout=3)
            except AssertionError:
                continue

    def stop(self) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.reader.join(5)
        return "\n".join(self.lines)


def hostile_rootfs(project: Path, owner: int | None = None) -> Path:
    """``PROJECT/web``: links to / and /usr, a root-owned 0700 directory, an ordinary one."""
    rootfs = project / "web"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "host").symlink_to("/")
    (rootfs / "usr").symlink_to("/usr")
    (rootfs / "proc-link").symlink_to("/proc")
    (rootfs / "root" / "deep").mkdir(parents=True)
    (project / "web.yaml").write_text("name: web\n")
    if owner is not None:
        for path in [project, *project.rglob("*")]:
            os.chown(path, owner, -1, follow_symlinks=False)
    os.chown(rootfs / "root", 0, 0)
    (rootfs / "root").chmod(0o700)  # as debootstrap, sudo tar or any rootfs made as root leaves it
    return rootfs


def check_edits_applied(project: Path, rootfs: Path, as_user: User | None = None) -> str:
    child = WatchChild(project, "web", as_user=as_user)
    try:
        for round in range(2):  # edits keep being applied, not only the first
            child.applied(lambda: (project / "web.yaml").write_text(f"name: web\n# {time.monotonic()}\n"),
                          f"ACTION file {project / 'web.yaml'}", f"edit {round} of web.yaml")  # fmt: skip
            child.applied(lambda: (rootfs / "etc" / "conf").write_text(str(time.monotonic())),
                          "ACTION rootfs ext-web", f"edit {round} in the rootfs")  # fmt: skip
        new = rootfs / "opt" / "app"  # a directory made meanwhile is watched too
        new.mkdir(parents=True)
        child.applied(lambda: (new / "bin").write_text(str(time.monotonic())), "ACTION rootfs ext-web",
                      "an edit in a new directory")  # fmt: skip
    finally:
        out = child.stop()
    assert "no longer applied" not in out and "failed" not in out, out
    return out


def test_watcher_never_follows_symlinks_into_the_host(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    rootfs = hostile_rootfs(project)
    out = check_edits_applied(project, rootfs)
    assert "warning" not in out, out  # root reads everything; symlinks are not worth a word


def test_watcher_as_an_ordinary_user_skips_a_root_only_directory(user: User) -> None:
    project = user.base / "home" / "proj"
    project.mkdir()
    rootfs = hostile_rootfs(project, owner=user.uid)
    out = check_edits_applied(project, rootfs, as_user=user)
    warning = [line for line in out.splitlines() if "web/root" in line]
    assert len(warning) == 1, out  # named once, not at each new directory
    assert "web/root/ is not watched (Permission denied): changes under it are not applied" in warning[0], out


@pytest.mark.podman
@pytest.mark.timeout(90)
def test_dev_mode_with_links_to_the_host_applies_every_edit(podman_service: PodmanService, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    make_busybox_rootfs(project / "web")
    rootfs = project / "web"
    for name, target in (("host", "/"), ("hostusr", "/usr"), ("hostproc", "/proc")):
        (rootfs / name).symlink_to(target)
    (project / "web.yaml").write_text(service_yaml("web", "web v1"))
    dev = DevProcess(project, "--podman-url", podman_service.url)
    try:
        dev.wait_line(r"^ext-web \| web v1$")
        sock = dev.wait_line(r"EXTVISOR_SOCKET=(\S+) extvisor services").group(1)
        c = Client(sock, timeout=10)
        first = dev.wait(lambda: running(c, "ext-web"), "ext-web running")
        for version in ("v2", "v3"):
            mark = len(dev.lines)
            (project / "web.yaml").write_text(service_yaml("web", f"web {version}"))
            dev.wait_line(rf"^ext-web \| web {version}$", after=mark, timeout=20)
        mark = len(dev.lines)
        (rootfs / "tmp" / "rebuilt").write_text("x")
        dev.wait_line(r"web/ changed: restarting ext-web", after=mark, timeout=20)
        assert dev.wait(lambda: (i := running(c, "ext-web")) and i["pid"] != first["pid"] and i, "restarted")
    finally:
        rc = dev.stop(signal.SIGINT)
    assert rc == 0, dev.output
    assert not re.search(r"watching .* failed", dev.output), dev.output


def test_watched_dirs_lists_real_directories_only(tmp_path: Path) -> None:
    from extvisor.devmode.watchdirs import watched_dirs

    project = tmp_path / "proj"
    for d in ("web/etc", "web/usr/lib", ".extvisor/state", "web/node_modules/x"):
        (project / d).mkdir(parents=True)
    (project / "web" / "host").symlink_to("/")
    (project / "web" / "lib").symlink_to("usr/lib")  # inside the project: its target is listed already
    (project / "web" / "file").write_text("")
    found, unreadable = watched_dirs(project, {project / ".extvisor"}, {"node_modules"})
    rel = sorted(str(p.relative_to(project)) for p in found)
    assert rel == [".", "web", "web/etc", "web/usr", "web/usr/lib"]
    assert unreadable == {}
