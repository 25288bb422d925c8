"""Sockets passed as systemd passes them (LISTEN_FDS): which the daemon serves, and that the
variables never reach its children; the notifier's RELOADING=1 and the variables it hands on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from extvisor.server.notify import Notifier

PROBE = """
import json, os
from extvisor.server.handoff import inherited_sockets
found = inherited_sockets()
print(json.dumps({"api": found.api.getsockname() if found.api else None,
                  "tcp": [list(s.getsockname()[:2]) for s in found.tcp],
                  "inheritable": [os.get_inheritable(s.fileno()) for s in [found.api, *found.tcp] if s],
                  "env": [k for k in os.environ if k.startswith("LISTEN_")]}))
"""


def _run_with(socks: list[socket.socket], pid_matches: bool = True) -> dict:
    fds = [s.fileno() for s in socks]

    def activate() -> None:
        for i, fd in enumerate(fds):
            os.dup2(fd, 3 + i)
        pid = os.getpid() if pid_matches else 1
        os.environ.update(LISTEN_FDS=str(len(fds)), LISTEN_PID=str(pid), LISTEN_FDNAMES=":".join(["api"] * len(fds)))

    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30,
                         preexec_fn=activate, pass_fds=tuple(range(3, 3 + len(fds))))  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_unix_and_tcp_sockets_are_taken(tmp_path: Path):
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "api.sock"))
    unix.listen()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    stray = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    port = tcp.getsockname()[1]
    try:
        got = _run_with([unix, tcp, stray])
    finally:
        for s in (unix, tcp, stray):
            s.close()
    assert got["api"] == str(tmp_path / "api.sock")
    assert got["tcp"] == [["127.0.0.1", port]]
    assert got["inheritable"] == [False, False]  # not passed on to runtimes the daemon starts
    assert got["env"] == []


def test_sockets_for_another_pid_are_ignored(tmp_path: Path):
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "api.sock"))
    unix.listen()
    try:
        got = _run_with([unix], pid_matches=False)
    finally:
        unix.close()
    assert got["api"] is None and got["tcp"] == [] and got["env"] == []


async def test_reloading_and_the_variables_handed_on(tmp_path: Path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        notifier = Notifier(path, watchdog_usec=30_000_000)
        await notifier.stopping(reloading=True)
        assert sock.recv(4096).decode().splitlines()[0] == "RELOADING=1"
        await notifier.close()
    assert notifier.environ() == {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(None).environ() == {}
