"""Health checks end to end: a real daemon on runc, containerd and podman, busybox services.

Checks that pass, fail, time out and recover (exec, in the container), tcp and http checks
from the host, a notify service (READY=1, then WATCHDOG=1), a dependent that waits for its
provider's health, a service restarted after failed checks; the HEALTH column, the events,
``extvisor service ID`` and ``/metrics``.
"""

from __future__ import annotations

import contextlib
import time
import os
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd_daemon import ContainerdDaemon
from daemon_process import DaemonProcess
from podman_service import PodmanService, podman_service  # noqa: F401  (fixture)

from extvisor.testing import make_busybox_rootfs

NOTIFIER = (  # sd_notify's way: a send that fails (no daemon listening just now) is ignored
    "import contextlib,os,socket,time\n"
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\n"
    "def say(m):\n"
    "    with contextlib.suppress(OSError): s.sendto(m,os.environ['NOTIFY_SOCKET'])\n"
    "time.sleep(0.5)\n"
    "say(b'READY=1\\nSTATUS=serving')\n"
    "while not os.path.exists('/data/no-watchdog'):\n"
    "    time.sleep(0.1)\n"
    "    say(b'WATCHDOG=1')\n"
    "time.sleep(1000)\n"
)
HOST_LIBS = [d for d in ("/usr", "/lib", "/lib64") if os.path.isdir(d) and not os.path.islink(d)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(sock: Path) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2].decode()


def add(d: DaemonProcess, name: str, body: str) -> None:
    (d.config_dir / f"{name}.yaml").write_text(textwrap.dedent(body).lstrip())
    root = make_busybox_rootfs(d.rootfs_dir / name)
    link = root / "bin" / "httpd"
    if not link.is_symlink():
        link.symlink_to("busybox")
    for lib in HOST_LIBS:  # mountpoints for the host's python (the notify service)
        (root / lib.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for lib in ("/lib", "/lib64"):  # merged /usr: the same links as the host's
        if os.path.islink(lib) and not (root / lib.lstrip("/")).is_symlink():
            (root / lib.lstrip("/")).symlink_to(os.readlink(lib))


def services_yaml(d: DaemonProcess, data: Path, web_port: int, tcp_port: int) -> None:
    data_mount = f"{{source: {data}, destination: /data, type: bind, options: [rbind, rw]}}"
    add(d, "late", f"""
        name: late
        container:
          entrypoint: /bin/sh
          args: ["-c", "sleep 1; touch /data/ready; echo ready; exec sleep 1000"]
          mounts: [{data_mount}]
        restart: always
        healthcheck:
          test: [CMD-SHELL, "test -e /data/ready && echo ok"]
          interval: 300ms
          timeout: 5s
          retries: 2
          on_failure: none
    """)
    add(d, "app", """
        name: app
        container: {entrypoint: /bin/sh, args: ["-c", "echo app; exec sleep 1000"]}
        depends: [{service: ext-late}]
        restart: always
    """)
    add(d, "hang", """
        name: hang
        container: {entrypoint: /bin/sleep, args: ["1000"]}
        restart: always
        healthcheck: {test: [CMD, /bin/sleep, "313"], interval: 300ms, timeout: 500ms, retries: 1, on_failure: none}
    """)
    add(d, "sick", """
        name: sick
        container: {entrypoint: /bin/sleep, args: ["1000"]}
        restart: always
        healthcheck: {test: [CMD, /bin/false], interval: 300ms, timeout: 5s, retries: 2}
    """)
    add(d, "web", f"""
        name: web
        container: {{entrypoint: /bin/httpd, args: ["-f", "-p", "127.0.0.1:{web_port}", "-h", "/etc"]}}
        restart: always
        healthcheck: {{http: "http://127.0.0.1:{web_port}/passwd", interval: 300ms, timeout: 2s}}
    """)
    add(d, "port", f"""
        name: port
        container: {{entrypoint: /bin/httpd, args: ["-f", "-p", "127.0.0.1:{tcp_port}", "-h", "/etc"]}}
        restart: always
        healthcheck: {{tcp: "127.0.0.1:{tcp_port}", interval: 300ms, timeout: 2s}}
    """)
    libs = ", ".join(f"{{source: {lib}, destination: {lib}, type: bind, options: [rbind, ro]}}" for lib in HOST_LIBS)
    script = NOTIFIER.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    add(d, "notified", f"""
        name: notified
        container:
          entrypoint: /bin/sh
          args: ["-c", "exec /usr/bin/python3 -c \\"$0\\"", "{script}"]
          mounts: [{data_mount}, {libs}]
        restart: always
        healthcheck: {{notify: true, interval: 600ms, retries: 1, on_failure: none}}
    """)


def health(d: DaemonProcess, sid: str) -> dict:
    return d.service(sid)["health"]


def sleepers(marker: bytes) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/cmdline").read_bytes() == marker:
                    count += 1
    return count


def run_scenario(d: DaemonProcess, data: Path, web_port: int) -> None:
    d.start()
    # A dependent waits for the provider's health, and says so.
    d.wait_state("ext-late", "Running")
    d.wait(lambda: any('"ext-late" to be "healthy"' in e["msg"] for e in d.service("ext-app")["events"]),
           what="app waiting for late's health")  # fmt: skip
    d.wait(lambda: health(d, "ext-late")["healthy"], timeout=30, what="late healthy")
    late = d.service("ext-late")
    app = d.wait_state("ext-app", "Running", timeout=20)
    assert app["started_at"] >= late["health"]["last_change"] - 0.05
    assert "Health check successful" in [e["msg"] for e in late["events"]]
    assert late["health"]["checks"][-1]["exit_code"] == 0 and late["health"]["checks"][-1]["output"] == "ok\n"

    # Fails, then recovers; the dependent is not stopped meanwhile.
    (data / "ready").unlink()
    d.wait(lambda: health(d, "ext-late")["failing_streak"] >= 2 and not health(d, "ext-late")["healthy"],
           what="late unhealthy")  # fmt: skip
    events = [e["msg"] for e in d.service("ext-late")["events"]]
    assert "Health check failed: exit code 1" in events, events
    assert d.service("ext-app")["state"] == "Running"
    (data / "ready").touch()
    d.wait(lambda: health(d, "ext-late")["healthy"], what="late healthy again")

    # A check that hangs is killed at its timeout: one in flight at most.
    d.wait(lambda: health(d, "ext-hang")["failing_streak"] >= 2, timeout=20, what="hang timed out twice")
    assert health(d, "ext-hang")["last_message"] == "Health check exceeded timeout (500ms)"
    assert health(d, "ext-hang")["checks"][-1]["exit_code"] is None
    assert sleepers(b"/bin/sleep\x00313\x00") <= 1

    # Restarted after failed checks, under its restart policy.
    d.wait(lambda: d.service("ext-sick")["restarts"] >= 1, timeout=30, what="sick restarted")
    said = [e["msg"] for e in d.service("ext-sick")["events"]]
    assert any("unhealthy after 2 consecutive failed health checks: exit code 1" in m for m in said), said

    # tcp and http from the host.
    d.wait(lambda: health(d, "ext-web")["healthy"] and health(d, "ext-port")["healthy"], what="web and port healthy")
    assert health(d, "ext-web")["last_message"] == f"GET http://127.0.0.1:{web_port}/passwd: 200 OK"

    # notify: healthy on READY=1, unhealthy when the watchdog stops.
    d.wait(lambda: health(d, "ext-notified")["healthy"], timeout=30, what="notified ready")
    assert health(d, "ext-notified")["last_message"] == "serving"
    (data / "no-watchdog").touch()
    d.wait(lambda: not health(d, "ext-notified")["healthy"], what="watchdog missed")
    assert health(d, "ext-notified")["last_message"] == "no WATCHDOG=1 in 600ms"

    # What an operator sees.
    table = d.cli("services").stdout
    rows = {line.split()[0]: line.split()[2] for line in table.splitlines()[1:]}
    assert rows["ext-app"] == "?" and rows["ext-late"] == "OK" and rows["ext-hang"] == "Fail", table
    shown = d.cli("service", "ext-late").stdout
    assert "HEALTH CHECKS" in shown and "exit 0" in shown and "| ok" in shown and "LAST HEALTH CHANGE" in shown, shown
    metrics = scrape(d.socket)
    assert 'extvisor_service_healthy{service="ext-late"} 1.0' in metrics
    assert 'extvisor_service_healthy{service="ext-hang"} 0.0' in metrics
    assert 'extvisor_service_healthy{service="ext-app"}' not in metrics
    assert 'extvisor_service_health_checks_total{result="timeout",service="ext-hang"}' in metrics
    assert d.stop() == 0


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.mark.runc
def test_health_on_runc(tmp_path: Path, data: Path) -> None:
    d = DaemonProcess(tmp_path)
    web = free_port()
    services_yaml(d, data, web, free_port())
    try:
        run_scenario(d, data, web)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


@pytest.fixture
def containerd() -> Iterator[ContainerdDaemon]:
    with ContainerdDaemon() as daemon:
        yield daemon


@pytest.mark.containerd
def test_health_on_containerd(tmp_path: Path, data: Path, containerd: ContainerdDaemon) -> None:
    extra = ["--containerd-address", containerd.address, "--containerd-namespace", "extvisor-health"]
    d = DaemonProcess(tmp_path, backend="containerd", extra=extra)
    web = free_port()
    services_yaml(d, data, web, free_port())
    try:
        run_scenario(d, data, web)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


@pytest.mark.podman
def test_health_on_podman(tmp_path: Path, data: Path, podman_service: PodmanService) -> None:  # noqa: F811
    d = DaemonProcess(tmp_path, backend="podman", extra=["--podman-url", podman_service.url])
    web = free_port()
    services_yaml(d, data, web, free_port())
    try:
        run_scenario(d, data, web)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


@pytest.mark.containerd
@pytest.mark.parametrize("how", ["usr1", "usr2"])
def test_health_after_a_daemon_restart_that_adopts(tmp_path: Path, data: Path, containerd: ContainerdDaemon,
                                                   how: str) -> None:  # fmt: skip
    """SIGUSR1 (exit leaving the services) then a new daemon, or SIGUSR2 (an upgrade in place): it
    adopts, same PIDs; exec checks run again, the notify service is ready at once and its
    watchdog pings reach the new daemon."""
    import signal

    extra = ["--containerd-address", containerd.address, "--containerd-namespace", "extvisor-health-adopt"]
    d = DaemonProcess(tmp_path, backend="containerd", extra=extra)
    services_yaml(d, data, free_port(), free_port())
    for name in ("app", "hang", "sick", "web", "port"):  # only an exec and a notify check here
        (d.config_dir / f"{name}.yaml").unlink()
    (data / "ready").touch()
    try:
        d.start()
        d.wait(lambda: health(d, "ext-late")["healthy"] and health(d, "ext-notified")["healthy"], timeout=30,
               what="both healthy")  # fmt: skip
        pids = {sid: d.service(sid)["pid"] for sid in ("ext-late", "ext-notified")}
        if how == "usr1":
            assert d.stop(signal.SIGUSR1) == 0
            d.socket.unlink(missing_ok=True)
            d.start()
        else:
            ready = d.log().count("daemon ready")
            assert d.proc is not None
            d.proc.send_signal(signal.SIGUSR2)
            d.wait(lambda: d.log().count("daemon ready") > ready, timeout=30, what="the upgraded daemon")
        for sid, pid in pids.items():
            info = d.wait_state(sid, "Running")
            said = [e["msg"] for e in info["events"]]
            assert info["pid"] == pid and any(m.startswith(f"Adopted task {sid}") for m in said), info
        assert health(d, "ext-notified")["healthy"]
        d.wait(lambda: health(d, "ext-late")["healthy"], what="late checked again")
        time.sleep(1.5)  # past two watchdog intervals: the pings reach the new socket
        assert health(d, "ext-notified")["healthy"], health(d, "ext-notified")
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
