"""Client commands leave through ``os._exit``: their output and exit status must survive it."""

from __future__ import annotations

import subprocess
import sys


def extvisor(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EXTVISOR_SOCKET": str(tmp_path / "none.sock")}
    return subprocess.run([sys.executable, "-m", "extvisor", *args], capture_output=True, text=True, env=env, timeout=30)


def test_piped_output_is_flushed_before_the_quick_exit(tmp_path):
    r = extvisor(tmp_path, "services", "--help")  # stdout is a pipe: block-buffered until flushed
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: extvisor services")
    assert r.stdout.rstrip().endswith("Show this message and exit.")


def test_an_unreachable_daemon_still_exits_1_with_its_message(tmp_path):
    r = extvisor(tmp_path, "services")
    assert r.returncode == 1
    assert "none.sock" in r.stderr


def test_a_usage_error_still_exits_2(tmp_path):
    r = extvisor(tmp_path, "logs", "--no-such-flag")
    assert r.returncode == 2
    assert "No such option '--no-such-flag'" in r.stderr


def test_a_command_that_ends_on_its_own_exits_0(tmp_path):
    r = extvisor(tmp_path, "extensions", "--help")
    assert (r.returncode, r.stderr) == (0, "")


def test_the_top_level_help_is_whole_after_the_quick_exit(tmp_path):
    r = extvisor(tmp_path, "--help")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith("Usage: extvisor [OPTIONS] COMMAND")
    assert "  services " in r.stdout and r.stdout.endswith("\n")
