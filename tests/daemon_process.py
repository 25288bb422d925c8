"""Start a real ``extvisor daemon`` in a subprocess with private directories, for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from extvisor.client.http import Client, ClientError


class DaemonProcess:
    def __init__(self, base: Path, backend: str = "runc", extra: list[str] | None = None):
        self.base = base
        self.config_dir = base / "config"
        self.rootfs_dir = base / "rootfs"
        self.state_dir = base / "state"
        self.log_dir = base / "logs"
        self.service_config_dir = base / "service-configs"
        self.socket = base / "extvisor.sock"
        self.backend = backend
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        for d in (self.config_dir, self.rootfs_dir, self.service_config_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.stderr_path = base / "daemon.stderr"

    def args(self) -> list[str]:
        return [
            sys.executable, "-m", "extvisor", "daemon",
            "--config-dir", str(self.config_dir), "--rootfs-dir", str(self.rootfs_dir),
            "--state-dir", str(self.state_dir), "--log-dir", str(self.log_dir),
            "--socket", str(self.socket), "--service-config-dir", str(self.service_config_dir),
            "--backend", self.backend, "--restart-delay", "0.2", "--restart-max-delay", "1",
            "--stop-timeout", "2", *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=self.stderr, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                Client(str(self.socket), timeout=2).daemon()
                return self
            except ClientError:
                time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    @property
    def client(self) -> Client:
        return Client(str(self.socket))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.stderr.close()
        return rc

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "EXTVISOR_SOCKET": str(self.socket)}
        r = subprocess.run([sys.executable, "-m", "extvisor", *args], capture_output=True, text=True, env=env, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"extvisor {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def service(self, service_id: str) -> dict:
        return self.client.service(service_id)

    def wait_state(self, service_id: str, *states: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        info: dict = {}
        while time.monotonic() < deadline:
            info = self.service(service_id)
            if info["state"] in states:
                return info
            time.sleep(0.05)
        raise AssertionError(f"{service_id} not in {states} after {timeout}s: {json.dumps(info, indent=1)}\n{self.log()[-3000:]}")

    def wait(self, predicate, timeout: float = 15.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not reached after {timeout}s\n{self.log()[-3000:]}")
