"""The client path stays light: a client command never imports the server stack.

Not a timing (those are in bench/): the list of modules a command loads, which is what
makes `extvisor services` cost a few interpreter starts instead of half a second.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from extvisor.cli.main import COMMANDS

# What a client command must not load: the server and what it stands on, the runtime, the
# backends, the dashboard, and libraries only other commands need.
FORBIDDEN = (
    "fastapi", "uvicorn", "starlette", "pydantic", "pluggy", "httpx", "textual", "grpc",
    "podman", "prometheus_client", "psutil", "watchfiles", "pyroute2",
    "extvisor.server", "extvisor.runtime", "extvisor.documents", "extvisor.devmode", "extvisor.dashboard",
    "extvisor.extensions", "extvisor_runc", "extvisor_containerd", "extvisor_podman", "extvisor_conditions",
    # remote nodes: only when a node is named or a client configuration exists
    "cryptography", "ssl", "concurrent.futures", "extvisor.remote.talosconfig", "extvisor.remote.nodes",
    "extvisor.remote.tls", "extvisor.remote.certs", "extvisor.remote.failures",
)
TABLE_ONLY = ("yaml",)  # -o yaml needs PyYAML; a table does not

PROBE = """
import atexit, json, os, sys
OUT = sys.argv[1]
def dump():
    with open(OUT, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(dump)
# a client command leaves through os._exit, which runs no atexit handler
_exit = os._exit
os._exit = lambda code: (dump(), _exit(code))
sys.argv = ["extvisor", *sys.argv[2:]]
from extvisor.__main__ import run
run()
"""

CALLS = [
    ["--version"],
    ["--help"],
    ["services", "--help"],
    ["services"],
    ["services", "-o", "json"],
    ["service", "ext-x"],
    ["service", "ext-x", "stop"],
    ["logs", "ext-x", "--tail", "5"],
    ["events"],
    ["extensions"],
    ["stats"],
    ["processes"],
]


def loaded(tmp_path, args: list[str]) -> set[str]:
    out = tmp_path / "modules.json"
    env = {"PATH": "/usr/bin:/bin", "EXTVISOR_SOCKET": str(tmp_path / "no-daemon.sock"), "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", PROBE, str(out), *args], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    return set(json.loads(out.read_text()))


@pytest.mark.parametrize("args", [c for c in CALLS if c[0].startswith("-") or c[0] in COMMANDS], ids=" ".join)
def test_a_client_command_loads_no_server_stack(tmp_path, args):
    modules = loaded(tmp_path, args)
    assert "extvisor" in modules  # the probe ran the command
    bad = sorted(m for m in modules for f in FORBIDDEN + TABLE_ONLY if m == f or m.startswith(f + "."))
    assert bad == []


def test_version_loads_not_even_click(tmp_path):
    assert "click" not in loaded(tmp_path, ["--version"])


def test_the_probe_would_see_a_forbidden_import(tmp_path):
    # The daemon command does load the server: the probe sees it (it fails on its own before
    # serving anything, since the socket directory does not exist).
    modules = loaded(tmp_path, ["daemon", "--help"])
    assert "extvisor.server.daemon" in modules


def test_help_names_every_command_without_importing_it():
    from extvisor.cli.main import SUMMARIES

    assert sorted(SUMMARIES) == sorted(COMMANDS)
