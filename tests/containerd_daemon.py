"""A private containerd for tests and benchmarks.

Its own config (version 2, CRI plugin off), root, state, opt dir and socket under one
temporary directory, so it never touches a system containerd. Shim sockets still go to
/run/containerd/s/ (hashed by socket path, so no clash) and shims outlive the daemon:
stop() kills and deletes every task and container first, then stops containerd.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procutil import wait_ready

CONFIG = """\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/containerd.sock"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{base}/opt"
"""


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("EXTVISOR_ALLOW_SKIP") == "1":
            pytest.skip(f"{binary} not installed (apt-get install containerd)")
        pytest.fail(f"{binary} not installed: apt-get install containerd (or set EXTVISOR_ALLOW_SKIP=1)")
    return path


class ContainerdDaemon:
    """``containerd --config <base>/config.toml``, started and stopped by us."""

    def __init__(self, base: Path | None = None) -> None:
        # Short path: a unix socket path must fit in 108 bytes, pytest's tmp_path may not.
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
        self.address = str(self.base / "containerd.sock")
        self.config = self.base / "config.toml"
        self.log = self.base / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> ContainerdDaemon:
        binary = require("containerd")
        self.config.write_text(CONFIG.format(base=self.base))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--config", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        wait_ready(self.proc, self.ready, "containerd", timeout, self.log_tail, self.terminate)
        return self

    def ready(self) -> bool:
        """The Version RPC answers."""
        if not os.path.exists(self.address):
            return False
        return self.ctr("version", check=False).returncode == 0

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def ctr(self, *args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [require("ctr"), "--address", self.address]
        if namespace:
            cmd += ["--namespace", namespace]
        return subprocess.run(
            [*cmd, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=check, timeout=30
        )

    def containers(self, namespace: str) -> list[str]:
        out = self.ctr("containers", "list", "-q", namespace=namespace, check=False)
        return out.stdout.split()

    def remove_everything(self) -> None:
        """Kill and delete every task and container in every namespace."""
        for ns in self.ctr("namespaces", "list", "-q", check=False).stdout.split():
            for cid in self.containers(ns):
                self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", cid, namespace=ns, check=False)
                self.ctr("tasks", "delete", "-f", cid, namespace=ns, check=False)
                self.ctr("containers", "delete", cid, namespace=ns, check=False)

    def shims(self) -> list[int]:
        """Pids of live shims serving this daemon (their command line names our socket)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and b"containerd-shim" in cmdline[0] and self.address.encode() in cmdline:
                pids.append(int(entry.name))
        return pids

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        """Stop containerd only: its tasks keep running under their shims."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """Stop containerd (tasks keep running under their shims) and start it again."""
        self.terminate(sig)
        self.start()

    def stop(self) -> None:
        """Remove every container, stop containerd, then any shim left; remove the directory."""
        if (self.proc is None or self.proc.poll() is not None) and self.shims():
            with contextlib.suppress(Exception):
                self.start()  # containers outlive the daemon: bring it back to remove them
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.remove_everything()
        self.terminate()
        deadline = time.monotonic() + 5
        while (pids := self.shims()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:  # shims of tasks we could not delete: ours, found by our socket path
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ContainerdDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def containerd_daemon() -> Iterator[ContainerdDaemon]:
    with ContainerdDaemon() as daemon:
        yield daemon


@pytest.fixture
def containerd() -> Iterator[ContainerdDaemon]:
    """A running private containerd, stopped (containers and shims included) afterwards."""
    with containerd_daemon() as daemon:
        yield daemon
