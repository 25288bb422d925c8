"""``extvisor dev`` as an ordinary user with rootless podman: the hello-world project, edits included.

The test makes a user (useradd), gives it a Python that reaches this checkout's packages,
starts that user's own ``podman system service`` (its XDG_RUNTIME_DIR, a private socket),
and runs dev mode as that user. Needs root (to make the user), podman, and uidmap.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_devmode import DevProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hello-world"
SYSTEM_PYTHON = "/usr/bin/python3"


class User:
    def __init__(self, name: str, base: Path):
        self.name = name
        self.base = base
        entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.runtime = base / "run"
        self.sock = self.runtime / "podman" / "podman.sock"
        self.python = str(base / "venv" / "bin" / "python")
        self.env = {"HOME": str(base / "home"), "USER": name, "LOGNAME": name, "XDG_RUNTIME_DIR": str(self.runtime),
                    "PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}  # fmt: skip

    def popen(self, args: list[str], **kw):  # type: ignore[no-untyped-def]
        return subprocess.Popen(args, user=self.uid, group=self.gid, extra_groups=[], env=self.env,
                                cwd=self.base, **kw)  # fmt: skip

    def run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, user=self.uid, group=self.gid, extra_groups=[], env=self.env, cwd=self.base,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _need(ok: bool, what: str) -> None:
    if not ok:
        if os.environ.get("EXTVISOR_ALLOW_SKIP") == "1":
            pytest.skip(what)
        pytest.fail(what)


def _owner(proc: str) -> int | None:
    try:
        return os.stat(proc).st_uid
    except OSError:
        return None


@pytest.fixture
def user() -> Iterator[User]:
    _need(os.geteuid() == 0, "making a user needs root")
    for tool in ("useradd", "podman", "newuidmap", "newgidmap"):
        _need(shutil.which(tool) is not None, f"{tool} not installed (scripts/setup.sh: podman uidmap)")
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    _need(version == str(sys.version_info[:2]), f"{SYSTEM_PYTHON} is {version}, the venv {sys.version_info[:2]}")
    name = "evt" + secrets.token_hex(3)
    base = Path(tempfile.mkdtemp(prefix="extvisor-rootless-", dir="/tmp"))
    base.chmod(0o755)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(base / "home"), "--shell", "/bin/sh", name],
                   check=True, capture_output=True)  # fmt: skip
    try:
        if name not in Path("/etc/subuid").read_text():  # useradd adds ranges where login.defs says so
            subprocess.run(["usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535", name],
                           check=True)  # fmt: skip
        u = User(name, base)
        for d in (base / "home", u.runtime):
            d.mkdir(mode=0o700)
        # A Python of the user's own that finds this checkout's packages (the venv's lies under /root).
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(base / "venv")], check=True)
        site = base / "venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        (site / "extvisor-checkout.pth").write_text(f"import site; site.addsitedir({str(Path(sys.prefix) / site.relative_to(base / 'venv'))!r})\n")
        for path in (base / "home", u.runtime):
            os.chown(path, u.uid, u.gid)
        yield u
    finally:
        # Everything still running as this user is ours (the user exists for this test only):
        # rootless podman re-executes itself in its user namespace and keeps a pause process.
        uid = pwd.getpwnam(name).pw_uid
        for _ in range(50):
            left = [int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and _owner(e.path) == uid]
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], capture_output=True)


@pytest.fixture
def podman_of(user: User) -> Iterator[User]:
    (user.runtime / "podman").mkdir(exist_ok=True)
    os.chown(user.runtime / "podman", user.uid, user.gid)
    proc = user.popen(["podman", "system", "service", "--time=0", f"unix://{user.sock}"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not user.sock.exists():
            assert proc.poll() is None, "the user's podman service exited"
            assert time.monotonic() < deadline, "the user's podman service made no socket"
            time.sleep(0.1)
        yield user
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_rootless_podman_missing_or_misconfigured_is_said(user: User) -> None:
    url = f"unix://{user.sock}"
    hint = ["-c", f"from extvisor_podman.backend import start_hint; print(start_hint({url!r}))"]
    out = user.run([user.python, *hint])
    assert "start it as yourself" in out.stdout and "podman system service --time=0" in out.stdout, out
    subprocess.run(["usermod", "--del-subuids", "0-4294967294", user.name], check=True)  # misconfigured
    out = user.run([user.python, *hint])
    assert f"needs a range for {user.name} in /etc/subuid" in out.stdout and "usermod --add-subuids" in out.stdout, out
    # Dev mode says the same, and waits, instead of failing obscurely.
    project = user.base / "proj"
    project.mkdir()
    shutil.copy(EXAMPLE / "hello-world.yaml", project)
    os.chown(project, user.uid, user.gid)
    os.chown(project / "hello-world.yaml", user.uid, user.gid)
    dev = DevProcess(project, python=user.python, user=user.uid, group=user.gid, extra_groups=[], env=user.env)
    try:
        dev.wait_line(r"backend podman is not reachable yet \(podman is not reachable: no socket at .*needs a range for")
    finally:
        assert dev.stop() == 0


def test_dev_mode_as_an_ordinary_user(podman_of: User) -> None:
    user = podman_of
    project = user.base / "proj"
    project.mkdir()
    os.chown(project, user.uid, user.gid)
    built = user.run(["sh", str(EXAMPLE / "build-rootfs.sh"), str(project / "hello-world")])
    assert built.returncode == 0, built.stderr
    yaml = (EXAMPLE / "hello-world.yaml").read_text()
    (project / "hello-world.yaml").write_text(yaml)
    os.chown(project / "hello-world.yaml", user.uid, user.gid)

    dev = DevProcess(project, python=user.python, user=user.uid, group=user.gid, extra_groups=[], env=user.env)
    try:
        # The node's hostname inside (no name of its own), output, a Running event.
        dev.wait_line(rf"^ext-hello-world \| hello-world: starting on {socket.gethostname()}$", timeout=60)
        dev.wait_line(r"^ext-hello-world \| hello-world: hello #1$")
        dev.wait_line(r"ext-hello-world \[Running\] Started task ext-hello-world \(PID \d+\)")
        # Edit the service file: that service restarts with the new spec.
        mark = len(dev.lines)
        (project / "hello-world.yaml").write_text(yaml.replace("--greeting=hello", "--greeting=bonjour"))
        dev.wait_line(r"^ext-hello-world \| hello-world: bonjour #1$", after=mark, timeout=30)
        # Rebuild the rootfs: the service restarts once.
        mark = len(dev.lines)
        rebuilt = user.run(["sh", str(EXAMPLE / "build-rootfs.sh"), str(project / "hello-world")])
        assert rebuilt.returncode == 0, rebuilt.stderr
        dev.wait_line(r"hello-world/ changed: restarting ext-hello-world", after=mark, timeout=30)
        dev.wait_line(r"^ext-hello-world \| hello-world: bonjour #1$", after=mark, timeout=30)
        assert not [line for line in dev.lines if "operation not permitted" in line or "statfs" in line], dev.output
    finally:
        rc = dev.stop()
    assert rc == 0, dev.output
    assert "ext-hello-world [Finished] Service finished successfully" in dev.output
    left = user.run(["podman", "--url", f"unix://{user.sock}", "ps", "-a", "--format", "{{.Names}}"])
    assert left.stdout.strip() == "", left
