"""ExtensionServiceConfig, environmentFile and host services in a running daemon, with real runc."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from daemon_process import DaemonProcess

from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc

# Prints its config file and environment, then idles: the log shows what the container got.
SHOW = "cat /etc/app/app.conf 2>&1; tr '\\\\0' '\\\\n' < /proc/1/environ | grep ^APP_; sleep 1000"


def add(d: DaemonProcess, name: str, body: str) -> None:
    (d.config_dir / f"{name}.yaml").write_text(textwrap.dedent(body).lstrip())
    make_busybox_rootfs(d.rootfs_dir / name)


def esc(d: DaemonProcess, filename: str, body: str) -> None:
    path = d.service_config_dir / filename
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(body).lstrip())
    tmp.replace(path)


def runs(d: DaemonProcess, sid: str) -> int:
    return sum(1 for e in d.service(sid)["events"] if e["state"] == "Running")


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path, extra=["--host-service", "cri", "--host-service", f"udevd={tmp_path}/udev.sock"])
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


def test_configuration_documents_at_run_time(daemon: DaemonProcess):
    add(daemon, "app", f"""
        name: app
        container:
          entrypoint: /bin/sh
          args: ["-c", "{SHOW}"]
          environment: [APP_FROM_SPEC=spec, APP_OVERRIDE=spec]
        depends:
          - configuration: true
        restart: always
    """)
    add(daemon, "plain", f"""
        name: plain
        container: {{entrypoint: /bin/sh, args: ["-c", "{SHOW}"]}}
        restart: always
    """)
    daemon.start()
    waiting = daemon.wait_state("ext-app", "Waiting")
    assert waiting["events"][-1]["msg"] == "Waiting for extension service config"
    daemon.wait_state("ext-plain", "Running")

    esc(daemon, "app.yaml", """
        apiVersion: v1alpha1
        kind: ExtensionServiceConfig
        name: app
        configFiles:
          - content: "version 1\\n"
            mountPath: /etc/app/app.conf
        environment: [APP_FROM_CONFIG=one, APP_OVERRIDE=config]
    """)
    daemon.wait_state("ext-app", "Running")
    log = daemon.log_dir / "ext-app.log"
    daemon.wait(lambda: "APP_OVERRIDE=config" in log.read_text(), what="first run output")
    first = log.read_text()
    assert "version 1" in first and "APP_FROM_SPEC=spec" in first and "APP_FROM_CONFIG=one" in first
    assert "APP_OVERRIDE=spec" not in first  # the config's environment follows the spec's own
    assert runs(daemon, "ext-app") == 1

    # A change restarts the service with the new content.
    esc(daemon, "app.yaml", """
        apiVersion: v1alpha1
        kind: ExtensionServiceConfig
        name: app
        configFiles:
          - content: "version 2\\n"
            mountPath: /etc/app/app.conf
    """)
    daemon.wait(lambda: "version 2" in log.read_text(), what="restart with new config")
    assert runs(daemon, "ext-app") == 2

    # A broken document is reported with file and line and changes nothing.
    (daemon.service_config_dir / "app.yaml").write_text("apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: app\nbogus: 1\n")
    daemon.wait(lambda: "app.yaml:4:1: error" in daemon.log(), what="broken document reported")
    assert runs(daemon, "ext-app") == 2 and daemon.service("ext-app")["state"] == "Running"

    # A document for a service that does not wait on configuration still applies, and restarts it.
    esc(daemon, "plain.yaml", """
        apiVersion: v1alpha1
        kind: ExtensionServiceConfig
        name: plain
        configFiles:
          - content: "plain conf\\n"
            mountPath: /etc/app/app.conf
    """)
    plain_log = daemon.log_dir / "ext-plain.log"
    daemon.wait(lambda: "plain conf" in plain_log.read_text(), what="plain restarted with its config")

    # Removing the document restarts the service again; it now waits for a config.
    (daemon.service_config_dir / "app.yaml").unlink()
    daemon.wait(lambda: daemon.service("ext-app")["events"][-1]["msg"] == "Waiting for extension service config",
                what="waiting again")  # fmt: skip
    assert daemon.stop() == 0


def test_environment_file(daemon: DaemonProcess, tmp_path: Path):
    envfile = tmp_path / "etc" / "app.env"
    add(daemon, "envd", f"""
        name: envd
        container:
          entrypoint: /bin/sh
          args: ["-c", "{SHOW}"]
          environmentFile: {envfile}
          environment: [APP_B=from-spec]
        restart: never
    """)
    add(daemon, "badenv", f"""
        name: badenv
        container:
          entrypoint: /bin/sh
          args: ["-c", "true"]
          environmentFile: {tmp_path}/bad.env
        restart: never
    """)
    (tmp_path / "bad.env").write_text("APP_OK=1\nthis line is wrong\n")
    daemon.start()
    waiting = daemon.wait_state("ext-envd", "Waiting")
    assert waiting["events"][-1]["msg"] == f'Waiting for file "{envfile}" to exist'
    envfile.parent.mkdir()
    envfile.write_text("# comment\nAPP_A=from-file\nAPP_B=from-file\n")
    daemon.wait_state("ext-envd", "Running")
    log = daemon.log_dir / "ext-envd.log"
    daemon.wait(lambda: "APP_B=" in log.read_text(), what="env output")
    assert "APP_A=from-file" in log.read_text() and "APP_B=from-spec" in log.read_text()
    bad = daemon.wait_state("ext-badenv", "Failed")["events"][-1]["msg"]
    assert f"{tmp_path}/bad.env:2: malformed line" in bad
    assert daemon.stop() == 0


def test_host_services(daemon: DaemonProcess, tmp_path: Path):
    for name, dep in (("needs-cri", "cri"), ("needs-udevd", "udevd"), ("needs-kubelet", "kubelet")):
        add(daemon, name, f"""
            name: {name}
            container: {{entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}}
            depends: [{{service: {dep}}}]
            restart: never
        """)
    daemon.start()
    daemon.wait_state("ext-needs-cri", "Running")
    assert daemon.service("ext-needs-udevd")["events"][-1]["msg"] == 'Waiting for service "udevd" to be "up"'
    assert daemon.service("ext-needs-kubelet")["events"][-1]["msg"] == 'Waiting for service "kubelet" to be "registered"'
    (tmp_path / "udev.sock").touch()
    daemon.wait_state("ext-needs-udevd", "Running")
    listed = {s["id"]: s["state"] for s in daemon.client.services()}
    assert listed["cri"] == "Running" and listed["udevd"] == "Running"
    assert daemon.stop() == 0


def test_a_condition_that_raises_fails_only_its_service(daemon: DaemonProcess, tmp_path: Path):
    (tmp_path / "afile").write_text("x")
    add(daemon, "badpath", f"""
        name: badpath
        container: {{entrypoint: /bin/true}}
        depends: [{{path: {tmp_path}/afile/below}}]
        restart: never
    """)
    add(daemon, "fine", """
        name: fine
        container: {entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}
        restart: never
    """)
    daemon.start()
    failed = daemon.wait_state("ext-badpath", "Failed")["events"][-1]["msg"]
    assert failed.startswith("Condition failed:") and "Not a directory" in failed
    daemon.wait_state("ext-fine", "Running")
    assert daemon.stop() == 0
