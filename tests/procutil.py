"""Waiting for a daemon a test started (containerd, podman) to answer."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_ready(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float,
               log_tail: Callable[[], str], give_up: Callable[[], None], interval: float = 0.02) -> None:  # fmt: skip
    """Poll *ready* until it answers; fail with the daemon's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log_tail()}")
        if time.monotonic() > deadline:
            give_up()
            raise RuntimeError(f"{what} not ready after {timeout}s: {log_tail()}")
        time.sleep(interval)
