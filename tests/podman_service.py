"""A private ``podman system service`` for tests and benchmarks.

It runs with its own ``--root``/``--runroot`` and socket under a temporary directory and
a containers.conf that works in this sandbox (runc, cgroupfs, file events, ulimits at or
below the hard limit). Storage is chosen with the global flags, not CONTAINERS_STORAGE_CONF:
that one made every container exit take 20 s here
(shared/notes/backends-on-this-machine.md §3).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from procutil import wait_ready

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class PodmanService:
    """``podman system service --time=0 unix://<base>/podman.sock``, started and stopped by us."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.runroot = base / "runroot"
        self.sock = base / "podman.sock"
        self.conf = base / "containers.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def podman(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The podman CLI on the same storage as the service (not through the socket)."""
        cmd = ["podman", "--root", str(self.root), "--runroot", str(self.runroot), *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def start(self, timeout: float = 20) -> None:
        if shutil.which("podman") is None:
            raise RuntimeError("podman is not installed (apt-get install podman runc)")
        self.base.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONTAINERS_CONF)
        logf = open(self.base / "service.log", "wb")
        cmd = ["podman", "--root", str(self.root), "--runroot", str(self.runroot),
               "system", "service", "--time=0", self.url]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        logf.close()
        wait_ready(self.proc, self.ping, "podman system service", timeout, self.log_tail, self.stop, interval=0.03)

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
                return s.recv(64).split(b" ", 2)[1:2] == [b"200"]
        except OSError:
            return False

    def log_tail(self) -> str:
        try:
            return (self.base / "service.log").read_text()[-2000:]
        except OSError:
            return ""

    def containers(self) -> list[str]:
        """Names of every container in this service's storage."""
        out = self.podman("ps", "-a", "--format", "{{.Names}}").stdout
        return [line for line in out.splitlines() if line]

    def stop(self) -> None:
        # Containers first: conmon outlives the service.
        if self.root.exists():
            self.podman("rm", "-af", "-t", "0", check=False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def listing(root: Path) -> list[tuple[str, str, int, int]]:
    """Every entry under *root*, with its kind, size and mtime, to compare before and after."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = "l" if p.is_symlink() else "d" if p.is_dir() else "f"
            out.append((str(p.relative_to(root)), kind, st.st_size if kind == "f" else 0, st.st_mtime_ns))
    return sorted(out)


@pytest.fixture(scope="session")
def podman_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    """One private podman service for the whole session."""
    if shutil.which("podman") is None and os.environ.get("EXTVISOR_ALLOW_SKIP") == "1":
        pytest.skip("podman is not installed (apt-get install podman runc)")
    svc = PodmanService(tmp_path_factory.mktemp("podman"))
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
