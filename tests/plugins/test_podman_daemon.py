"""``extvisor daemon --backend podman`` end to end, against the private podman service."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from podman_service import PodmanService, listing, podman_service  # noqa: F401  (fixture)

from extvisor.protocols import instance_name
from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.podman


def test_daemon_runs_restarts_and_stops_podman_services(podman_service: PodmanService, tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, backend="podman", extra=["--podman-url", podman_service.url])
    (d.config_dir / "web.yaml").write_text(textwrap.dedent("""
        name: web
        container:
          entrypoint: /bin/sh
          args: ["-c", "echo started $FOO; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"]
          environment: [FOO=bar]
        restart: always
    """).lstrip())  # fmt: skip
    (d.config_dir / "flaky.yaml").write_text(textwrap.dedent("""
        name: flaky
        container:
          entrypoint: /bin/sh
          args: ["-c", "echo try; exit 3"]
          security: {readonlyPaths: [/proc/sys, /etc]}
        restart: untilSuccess
    """).lstrip())  # fmt: skip
    for name in ("web", "flaky"):
        make_busybox_rootfs(d.rootfs_dir / name)
    before = listing(d.rootfs_dir / "web")
    instance = instance_name(d.state_dir)  # derived from --state-dir when --instance is not given
    d.start()
    try:
        web = d.wait_state("ext-web", "Running")
        d.wait(lambda: (d.log_dir / "ext-web.log").exists() and "started bar" in (d.log_dir / "ext-web.log").read_text(),
               what="web output in its log file")  # fmt: skip
        # podman has no read-only /etc: said in the events once, not at every restart.
        d.wait(lambda: d.service("ext-flaky")["restarts"] >= 2, what="flaky restarted twice")
        events = [e["msg"] for e in d.service("ext-flaky")["events"]]
        assert [m for m in events if "cannot express" in m] == ["podman cannot express: readonlyPaths /etc"], events
        assert any("going to restart until it succeeds" in m and "exit code 3" in m for m in events), events
        assert web["pid"] > 0
        # <id>.<instance>: two daemons may run the same service names on one podman
        assert f"ext-web.{instance}" in podman_service.containers()
    finally:
        assert d.stop() == 0
    assert "bye" in (d.log_dir / "ext-web.log").read_text()
    assert [c for c in podman_service.containers() if c.endswith(f".{instance}")] == []
    assert listing(d.rootfs_dir / "web") == before
