"""``extvisor dev``: a project folder run against the private podman service, edited while it runs."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from podman_service import PodmanService, podman_service  # noqa: F401  (fixture)

from extvisor.client.http import Client
from extvisor.devmode.printer import Printer, use_colour
from extvisor.devmode.project import rootfs_for, socket_for
from extvisor.state import ServiceEvent, State
from extvisor.testing import make_busybox_rootfs

LOOP = "trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"


def service_yaml(name: str, greeting: str) -> str:
    return textwrap.dedent(f"""
        name: {name}
        container:
          entrypoint: /bin/sh
          args: ["-c", "echo {greeting}; {LOOP}"]
        restart: always
    """).lstrip()  # fmt: skip


class DevProcess:
    """``python -m extvisor dev DIR`` with its output collected line by line."""

    def __init__(self, project: Path, *args: str, python: str = sys.executable, **popen: Any):
        env = {**popen.pop("env", os.environ), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [python, "-m", "extvisor", "dev", str(project), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=project.parent, text=True, **popen,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader catch the last lines
                raise AssertionError(f"dev mode exited ({self.proc.returncode}) waiting for {what}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output}")

    def wait_line(self, pattern: str, after: int = 0, timeout: float = 15.0) -> re.Match[str]:
        rx = re.compile(pattern)

        def find() -> re.Match[str] | None:
            return next((m for line in self.lines[after:] if (m := rx.search(line))), None)

        return self.wait(find, f"a line matching {pattern!r}", timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)


def running(c: Client, service_id: str) -> dict | None:
    info = c.service(service_id)
    return info if info["state"] == "Running" and info["pid"] else None


def starts(info: dict) -> int:
    return sum(1 for e in info["events"] if e["state"] == "Running" and e["msg"].startswith("Started task"))


@pytest.mark.podman
@pytest.mark.timeout(90)
def test_dev_mode_applies_edits_while_running(podman_service: PodmanService, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "web.yaml").write_text(service_yaml("web", "web v1"))
    (project / "worker.yaml").write_text(service_yaml("worker", "worker up"))
    make_busybox_rootfs(project / "web")
    make_busybox_rootfs(project / "rootfs" / "worker")  # the other accepted layout

    dev = DevProcess(project, "--podman-url", podman_service.url)
    try:
        dev.wait_line(r"^ext-web\s* \| web v1$")
        dev.wait_line(r"^ext-worker \| worker up$")
        sock = dev.wait_line(r"EXTVISOR_SOCKET=(\S+) extvisor services").group(1)
        assert sock == str(project / ".extvisor" / "extvisor.sock")
        c = Client(sock, timeout=10)
        web = dev.wait(lambda: running(c, "ext-web"), "ext-web running")
        worker = dev.wait(lambda: running(c, "ext-worker"), "ext-worker running")
        assert sorted(c.rsplit(".", 1)[0] for c in podman_service.containers()) == ["ext-web", "ext-worker"]  # <id>.<instance>
        assert (project / ".extvisor" / "logs" / "ext-web.log").read_text().startswith("web v1")

        # An edited service file restarts that service with the new spec; the other is untouched.
        mark = len(dev.lines)
        (project / "web.yaml").write_text(service_yaml("web", "web v2"))
        dev.wait_line(r"^ext-web\s* \| web v2$", after=mark)
        web2 = dev.wait(lambda: running(c, "ext-web"), "ext-web running again")
        assert web2["pid"] != web["pid"]
        assert starts(web2) == starts(web) + 1
        assert any(e["msg"] == "Service spec changed" for e in web2["events"])
        worker_now = c.service("ext-worker")
        assert (worker_now["pid"], starts(worker_now)) == (worker["pid"], starts(worker))

        # A broken file is reported where it is broken, and the running version stays.
        mark = len(dev.lines)
        broken = service_yaml("web", "web v3").replace("restart: always", "restart: sometimes")
        (project / "web.yaml").write_text(broken)
        finding = dev.wait_line(r"web\.yaml:(\d+):(\d+): error: restart: restart kind is invalid", after=mark)
        assert (finding.group(1), finding.group(2)) == ("5", "10")
        dev.wait_line(r"ext-web keeps running its previous version", after=mark)
        time.sleep(0.5)
        web3 = c.service("ext-web")
        assert (web3["state"], web3["pid"], starts(web3)) == ("Running", web2["pid"], starts(web2))
        assert "web v3" not in dev.output

        # A change inside a rootfs restarts that service only.
        mark = len(dev.lines)
        (project / "rootfs" / "worker" / "tmp" / "new-build").write_text("x")
        dev.wait_line(r"rootfs/worker/ changed: restarting ext-worker", after=mark)
        worker2 = dev.wait(lambda: (i := running(c, "ext-worker")) and i["pid"] != worker["pid"] and i,
                           "ext-worker restarted")  # fmt: skip
        assert starts(worker2) == starts(worker) + 1
        assert c.service("ext-web")["pid"] == web2["pid"]

        # A removed service file stops and forgets its service.
        (project / "worker.yaml").unlink()
        dev.wait(lambda: "ext-worker" not in {s["id"] for s in c.services()}, "ext-worker removed")
        assert [c.rsplit(".", 1)[0] for c in podman_service.containers()] == ["ext-web"]
    finally:
        rc = dev.stop(signal.SIGINT)
    assert rc == 0, dev.output
    assert "ext-web    | bye" in dev.output
    assert podman_service.containers() == []
    assert not Path(sock).exists()


@pytest.mark.podman
@pytest.mark.timeout(60)
def test_dev_mode_broken_at_start_then_fixed(podman_service: PodmanService, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "late.yaml").write_text("name: late\ncontainer:\n  entrypoint: /bin/sh\n  args: oops\n")
    make_busybox_rootfs(project / "late")
    dev = DevProcess(project, "--podman-url", podman_service.url)
    try:
        dev.wait_line(r"late\.yaml:4:\d+: error: container\.args")
        dev.wait_line(r"0 service\(s\); watching for changes")
        (project / "late.yaml").write_text(service_yaml("late", "late but here"))
        dev.wait_line(r"^ext-late \| late but here$")
    finally:
        rc = dev.stop(signal.SIGTERM)
    assert rc == 0, dev.output
    assert podman_service.containers() == []


# -- the terminal side, without containers ---------------------------------------------------


def test_printer_prefixes_and_colours() -> None:
    out = io.StringIO()
    p = Printer(out, colour=False)
    p.known("ext-a")
    p.known("ext-longer")
    p.extvisor_log_lines("ext-a", [b"one\n", b"two\r\n"])
    p.extvisor_service_event(ServiceEvent(service="ext-longer", state=State.Running, msg="Started"))
    assert out.getvalue() == "ext-a      | one\next-a      | two\next-longer [Running] Started\n"

    coloured = Printer(io.StringIO(), colour=True)
    first = coloured.prefix("ext-web")
    assert first.startswith("\x1b[") and first.endswith("\x1b[0m")
    assert coloured.prefix("ext-web") == first == Printer(io.StringIO(), colour=True).prefix("ext-web")


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Tty()) is True
    assert use_colour(io.StringIO()) is False
    assert use_colour(io.StringIO(), "always") is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_colour(Tty()) is False


def test_project_layout(tmp_path: Path) -> None:
    assert rootfs_for(tmp_path, "a") == tmp_path / "a"
    (tmp_path / "rootfs" / "a").mkdir(parents=True)
    assert rootfs_for(tmp_path, "a") == tmp_path / "rootfs" / "a"
    (tmp_path / "a").mkdir()
    assert rootfs_for(tmp_path, "a") == tmp_path / "a"
    assert socket_for(tmp_path) == tmp_path / ".extvisor" / "extvisor.sock"
    deep = tmp_path / ("d" * 120)
    assert len(os.fsencode(socket_for(deep))) < 100
