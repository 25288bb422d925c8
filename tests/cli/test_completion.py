"""Shell completion (click's own, bash and zsh) completes service ids from the running daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from server.test_daemon_runc import add_service

pytestmark = pytest.mark.runc


def complete(shell: str, words: str, socket: Path | str) -> str:
    env = {**os.environ, "_EXTVISOR_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)), "EXTVISOR_SOCKET": str(socket)}  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "extvisor"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_bash_and_zsh_complete_service_ids(tmp_path: Path):
    d = DaemonProcess(tmp_path)
    for name in ("alpha", "beta"):
        add_service(d, name, f"name: {name}\nrestart: never\ncontainer: {{entrypoint: /bin/sh, args: [-c, 'exit 0']}}\n")
    d.start()
    try:
        assert complete("bash", "extvisor logs ext-", d.socket).split() == ["plain,ext-alpha", "plain,ext-beta"]
        assert complete("bash", "extvisor processes ext-b", d.socket).split() == ["plain,ext-beta"]
        assert "plain,ext-alpha" in complete("bash", "extvisor service ", d.socket).split()
        zsh = complete("zsh", "extvisor logs ext-a", d.socket).splitlines()
        assert zsh[:2] == ["plain", "ext-alpha"], zsh
        assert "stats" in complete("bash", "extvisor st", d.socket)  # commands too
        script = subprocess.run([sys.executable, "-m", "extvisor"], env={**os.environ, "_EXTVISOR_COMPLETE": "bash_source"},
                                capture_output=True, text=True, timeout=30).stdout  # fmt: skip
        assert "_extvisor_completion" in script and "complete " in script
    finally:
        assert d.stop() == 0
    assert complete("bash", "extvisor logs ext-", tmp_path / "nothing.sock").strip() == ""  # no daemon: no ids, no error
