"""Issue 24 item 3 with a real daemon: an environment entry without a name, or without
'=', never reaches runc, the service's events or the daemon's log with its value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_process import DaemonProcess

from extvisor.testing import make_busybox_rootfs

SECRET = "hunter2-value"


def write_service(d: DaemonProcess, name: str, environment: list[str]) -> None:
    make_busybox_rootfs(d.rootfs_dir / name)
    spec = {"name": name, "restart": "never", "container": {
        "entrypoint": "/bin/sh", "args": ["-c", "env; exec sleep 1000"], "environment": environment}}  # fmt: skip
    (d.config_dir / f"{name}.yaml").write_text(json.dumps(spec))  # JSON is YAML


@pytest.mark.runc
def test_a_nameless_environment_entry_is_refused_and_never_said(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path)
    write_service(d, "nameless", [f"={SECRET}"])
    write_service(d, "spaced", [f"BAD NAME={SECRET}"])
    write_service(d, "good", ["A=1"])
    (d.service_config_dir / "good.yaml").write_text(
        f"apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: good\nenvironment:\n  - TS_AUTHKEY {SECRET}\n"
    )
    d.start()
    try:
        d.wait_state("ext-good", "Running")
        assert sorted(s["id"] for s in d.client.services()) == ["ext-good"]  # the two others were refused
        log = d.log()
        assert "nameless.yaml:1:" in log and "container.environment.0: not NAME=value: no name before '='" in log, log
        assert "spaced.yaml:1:" in log and "is not a variable name" in log, log
        assert "good.yaml:5:5: error: environment.0: not NAME=value: no '='" in log, log
        said = log + d.cli("service", "ext-good").stdout + "".join(p.read_text() for p in d.log_dir.glob("*.log"))
        assert SECRET not in said and "hunter2" not in said
    finally:
        assert d.stop() == 0
