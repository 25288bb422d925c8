"""Hostile images, end to end (issue 24): a PAX-header bomb, forged file lists, writable and
setuid files, and the store's directories whatever modes they had."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from extensions.images import Image, extension_entries, file, layout, pax_bomb, service_yaml

from extvisor.extensions import parse_ref
from extvisor.extensions.store import InstallError, Store

BOMB = 400 << 20  # the 400 MB PAX header in a 1.8 MB gzip layer
RSS_LIMIT_KB = 250 << 10  # a Python process plus skopeo; the bomb took 1.33 GB (validate), 1.56 GB (daemon)


def hello_with_bomb() -> Image:
    return Image([extension_entries("bomb", {"bomb": service_yaml("bomb")})], raw_layers=[pax_bomb(BOMB)])


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_pax_bomb_refused_by_validate_with_bounded_memory(tmp_path, skopeo_tool):
    layout(tmp_path / "layout", hello_with_bomb(), "1")
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "extvisor", "extensions", "validate", f"oci:{tmp_path}/layout:1"],
                                stdout=o, stderr=e)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of the child and skopeo, its own child
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert usage.ru_maxrss < RSS_LIMIT_KB, f"validate peaked at {usage.ru_maxrss >> 10} MB"
    assert proc.returncode == 1, out.read_text() + err.read_text()
    assert "layer 2 (sha256:" in out.read_text() and (
        f"a PAX header of {BOMB} bytes at offset 0: special headers over 1048576 bytes are refused") in out.read_text()


def test_pax_bomb_refused_by_the_daemon_with_bounded_memory(tmp_path, registry, pusher):
    pusher.image("siderolabs/bomb", "1", hello_with_bomb())
    d = DaemonProcess(tmp_path, extra=["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)])
    d.start()
    try:
        out = d.cli("extensions", "install", registry.ref("siderolabs/bomb", "1"), check=False)
        assert peak_rss_kb(d.proc.pid) < RSS_LIMIT_KB, f"the daemon peaked at {peak_rss_kb(d.proc.pid) >> 10} MB"
        assert out.returncode == 1
        assert f"a PAX header of {BOMB} bytes at offset 0: special headers over 1048576 bytes are refused" in out.stderr
        assert os.listdir(d.state_dir / "extensions" / "staging") == []
    finally:
        d.stop()
