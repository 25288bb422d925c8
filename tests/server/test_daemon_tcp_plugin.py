"""A third party's condition kind, installed with pip from examples/extvisor-tcp, used by a real daemon."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import free_port
from daemon_process import DaemonProcess

from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc


def test_tcp_key_validates_waits_then_starts(tcp_plugin, tmp_path: Path):
    port = free_port()
    d = DaemonProcess(tmp_path)
    (d.config_dir / "web.yaml").write_text(textwrap.dedent(f"""
        name: web
        container: {{entrypoint: /bin/sh, args: ["-c", "echo up; sleep 1000"]}}
        depends:
          - tcp: 127.0.0.1:{port}
        restart: never
    """).lstrip())
    make_busybox_rootfs(d.rootfs_dir / "web")

    checked = subprocess.run([sys.executable, "-m", "extvisor", "validate", str(d.config_dir)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    plugins = subprocess.run([sys.executable, "-m", "extvisor", "plugins"], capture_output=True, text=True)
    assert "extvisor-tcp" in plugins.stdout

    d.start()
    try:
        waiting = d.wait_state("ext-web", "Waiting")
        assert waiting["events"][-1]["msg"] == f'Waiting for TCP port "127.0.0.1:{port}" to accept connections'
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            d.wait_state("ext-web", "Running")
    finally:
        assert d.stop() == 0
