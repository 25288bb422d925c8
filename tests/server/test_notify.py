"""systemd readiness: the daemon's sd_notify messages to a socket the test owns, and the unit."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from server.test_daemon_runc import add_service

from extvisor.client.http import Client, ClientError
from extvisor.server.notify import Notifier

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "contrib" / "extvisor.service"

pytestmark = pytest.mark.runc


def receive(sock: socket.socket, timeout: float) -> list[tuple[float, str]]:
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            break
    return out


def test_ready_status_watchdog_stopping(tmp_path: Path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    d = DaemonProcess(tmp_path)
    add_service(d, "up", "name: up\nrestart: always\ncontainer: {entrypoint: /bin/sh, args: [-c, 'while :; do sleep 1; done']}\n")
    add_service(d, "once", "name: once\nrestart: never\ncontainer: {entrypoint: /bin/sh, args: [-c, 'exit 0']}\n")
    (d.config_dir / "broken.yaml").write_text("name: broken\ncontainer: {}\n")
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # systemd's WatchdogSec=0.4: a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    proc = subprocess.Popen(d.args(), stdout=subprocess.DEVNULL, stderr=open(d.stderr_path, "wb"))
    try:
        sock.settimeout(20)
        first = sock.recv(4096).decode().split("\n")
        # READY=1 only once the API answers and every file was loaded (the broken one reported)
        services = Client(str(d.socket), timeout=5).services()
        assert first[0] == "READY=1" and f"MAINPID={proc.pid}" in first
        assert {s["id"] for s in services} == {"ext-up", "ext-once"}
        assert any(f.startswith("STATUS=2 services") for f in first), first
        deadline = time.monotonic() + 30  # runc may be slow on a busy machine
        got: list[tuple[float, str]] = []
        while Client(str(d.socket)).service("ext-up")["state"] != "Running" and time.monotonic() < deadline:
            got += receive(sock, 0.2)
        got += receive(sock, 2.0)
        pings = [t for t, m in got if m == "WATCHDOG=1"]
        assert len(pings) >= 6, got  # every 0.2 s
        statuses = [m for _, m in [(0, "\n".join(first))] + got for m in m.split("\n") if m.startswith("STATUS=")]
        assert statuses[-1] == "STATUS=2 services: 1 Finished, 1 Running", statuses
        proc.send_signal(signal.SIGTERM)
        rest = [m for _, m in receive(sock, 10.0)]
        assert any(m.startswith("STOPPING=1") for m in rest), rest
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    with pytest.raises(ClientError):
        Client(str(d.socket), timeout=1).daemon()


def test_no_socket_no_messages_and_abstract_sockets(monkeypatch):
    assert not Notifier.from_env({}).enabled and Notifier.from_env({}).send("READY=1") is False
    # WATCHDOG_PID names another process: the watchdog is not ours to ping
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1", "PATH": "/bin"}
    assert Notifier.from_env(env).watchdog_usec is None
    assert env == {"PATH": "/bin"}  # not handed down: runc would wait for the container's READY=1
    name = f"extvisor-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        assert Notifier(f"@{name}").send("READY=1", "STATUS=ok")
        sock.settimeout(2)
        assert sock.recv(100) == b"READY=1\nSTATUS=ok"
    finally:
        sock.close()


def test_unit_file_verifies(tmp_path: Path):
    text = UNIT.read_text()
    for line in ("Type=notify", "Restart=always", "WatchdogSec=", "KillMode=process", "ExecReload=/bin/kill -USR2",
                 "Requires=extvisor.socket"):  # fmt: skip
        assert line in text
    socket_text = UNIT.with_name("extvisor.socket").read_text()
    for line in ("ListenStream=/run/extvisor/extvisor.sock", "SocketMode=0600", "Service=extvisor.service"):
        assert line in socket_text
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("EXTVISOR_ALLOW_SKIP") == "1":
            pytest.skip("systemd-analyze is not installed")
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
    # verify wants ExecStart to exist; point it at this checkout's command
    exe = shutil.which("extvisor") or "/usr/local/bin/extvisor"
    unit = tmp_path / "extvisor.service"
    unit.write_text(text.replace("/usr/local/bin/extvisor", exe))
    (tmp_path / "extvisor.socket").write_text(socket_text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit), str(tmp_path / "extvisor.socket")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and "extvisor.s" not in r.stderr, r.stderr
    bad = tmp_path / "bad.service"
    bad.write_text(text.replace("Type=notify", "Type=notifyy"))
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True)
    assert "notifyy" in r.stderr  # the check does look at the file


@pytest.mark.runc
@pytest.mark.parametrize("job", ["restart", "try-restart", "stop"])
def test_exec_stop_keeps_services_on_a_restart_only(tmp_path: Path, job: str):
    """The unit's ExecStop=, run as systemd runs it (MAINPID set, its systemctl asked for the jobs):
    a restart job makes the daemon exit leaving its services; a stop job leaves it to the SIGTERM."""
    from extvisor.testing import make_busybox_rootfs

    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStop="))
    script = line.split("-c '", 1)[1].rsplit("'", 1)[0].replace("\\\\", "\\")  # systemd's unquoting
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(f"#!/bin/sh\necho '4242 extvisor.service {job:<12} running'\n"
                                    "echo '4243 other.service    restart      waiting'\n")  # fmt: skip
    (fake / "systemctl").chmod(0o755)
    d = DaemonProcess(tmp_path / "d")
    add_service(d, "kept", """
        name: kept
        container: {entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}
        restart: always
    """)
    d.start()
    try:
        pid = d.wait_state("ext-kept", "Running")["pid"]
        assert d.proc is not None
        env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "MAINPID": str(d.proc.pid)}
        reaper = threading.Thread(target=d.proc.wait, daemon=True)  # as systemd reaps its main process
        reaper.start()
        r = subprocess.run(["/bin/sh", "-c", script.replace("${MAINPID}", str(d.proc.pid))], env=env, timeout=60)
        assert r.returncode == 0
        if job == "stop":
            assert d.proc.poll() is None  # the SIGTERM that follows stops everything
            assert d.stop() == 0
            assert not Path(f"/proc/{pid}").exists()
            return
        assert d.proc.wait(10) == 0  # gone, leaving the service running for the next daemon
        assert Path(f"/proc/{pid}").exists()
        d.socket.unlink(missing_ok=True)
        d.start()
        assert d.wait_state("ext-kept", "Running")["pid"] == pid
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
