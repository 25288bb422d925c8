"""The daemon end to end with real runc: policies, ordering, CLI, logs, crash safety, shutdown."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess

from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc


def add_service(d: DaemonProcess, name: str, body: str, rootfs: bool = True) -> None:
    (d.config_dir / f"{name}.yaml").write_text(textwrap.dedent(body).lstrip())
    if rootfs:
        make_busybox_rootfs(d.rootfs_dir / name)


def runc_containers(d: DaemonProcess) -> list[str]:
    root = d.state_dir / "runc" / "runc"
    if not root.exists():
        return []
    out = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True)
    return out.stdout.split()


def pids_of(service_id: str) -> list[int]:
    """Host pids whose cgroup path names the service (cgroup v1 and v2 alike)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                # /extvisor/<instance>/<id>: one cgroup parent per daemon
                if any("/extvisor/" in line and line.endswith(f"/{service_id}") for line in f.read().splitlines()):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def cgroup_dirs(service_id: str) -> list[str]:
    out = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if root.count("/") > 7:
            dirs[:] = []
            continue
        if os.path.basename(root) == service_id and "/extvisor" in root:
            out.append(root)
    return out


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


def test_policies_env_args_mounts_and_readonly_root(daemon: DaemonProcess, tmp_path: Path):
    shared = tmp_path / "shared"
    add_service(daemon, "once", """
        name: once
        container:
          entrypoint: /bin/sh
          args: ["-c", 'echo "args=$0 $1"; tr "\\0" "\\n" < /proc/1/environ; touch /x 2>&1 || echo ro-root; echo data > /data/out', "0644", "yes"]
          environment: [FOO=bar, EMPTY=]
          mounts:
            - {source: %s, destination: /data, type: bind, options: [rbind, rw]}
        restart: never
    """ % shared)
    add_service(daemon, "flaky", """
        name: flaky
        container:
          entrypoint: /bin/sh
          args: ["-c", "echo try; exit 3"]
        restart: untilSuccess
    """)
    add_service(daemon, "done", """
        name: done
        container: {entrypoint: /bin/true}
        restart: untilSuccess
    """)
    add_service(daemon, "loop", """
        name: loop
        container: {entrypoint: /bin/true}
        restart: always
    """)
    add_service(daemon, "fails", """
        name: fails
        container:
          entrypoint: /bin/sh
          args: ["-c", "echo boom; exit 2"]
        restart: never
    """)
    daemon.start()
    info = daemon.wait_state("ext-once", "Finished")
    log = daemon.cli("logs", "ext-once").stdout
    assert "args=0644 yes" in log
    assert "FOO=bar" in log and "EMPTY=" in log and "PATH=" not in log
    assert "ro-root" in log
    assert (shared / "out").read_text() == "data\n"
    assert info["events"][-1]["msg"] == "Service finished successfully"

    daemon.wait(lambda: daemon.service("ext-flaky")["restarts"] >= 2, what="untilSuccess restarts")
    flaky = daemon.service("ext-flaky")
    assert flaky["state"] in ("Waiting", "Running", "Starting")
    assert any("going to restart until it succeeds" in e["msg"] and "exit code 3" in e["msg"] for e in flaky["events"])

    assert daemon.wait_state("ext-done", "Finished")["restarts"] == 0
    daemon.wait(lambda: daemon.service("ext-loop")["restarts"] >= 2, what="always restarts")
    assert any("exited without error, going to restart it" in e["msg"] for e in daemon.service("ext-loop")["events"])

    failed = daemon.wait_state("ext-fails", "Failed")
    assert failed["events"][-1]["msg"] == (
        "Failed running service: error running service: task \"ext-fails\" failed: exit code 2 (last log 'boom')"
    )
    assert daemon.stop() == 0


def test_ordering_by_service_and_path(daemon: DaemonProcess, tmp_path: Path):
    flag = tmp_path / "flag" / "ready"
    add_service(daemon, "base", """
        name: base
        container: {entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}
        restart: always
    """)
    add_service(daemon, "app", f"""
        name: app
        container: {{entrypoint: /bin/sh, args: ["-c", "echo started; sleep 1000"]}}
        depends:
          - service: ext-base
          - path: {flag}
        restart: always
    """)
    add_service(daemon, "orphan", """
        name: orphan
        container: {entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}
        depends: [{service: ext-nothere}]
        restart: never
    """)
    daemon.start()
    daemon.wait_state("ext-base", "Running")
    app = daemon.wait_state("ext-app", "Waiting")
    daemon.wait(lambda: daemon.service("ext-app")["events"][-1]["msg"] == f'Waiting for file "{flag}" to exist',
                what="waiting message")  # fmt: skip
    flag.parent.mkdir()
    flag.touch()
    app = daemon.wait_state("ext-app", "Running")
    running_at = next(e["ts"] for e in app["events"] if e["state"] == "Running")
    base_at = next(e["ts"] for e in daemon.service("ext-base")["events"] if e["state"] == "Running")
    assert base_at < running_at
    orphan = daemon.wait_state("ext-orphan", "Waiting")
    assert orphan["events"][-1]["msg"] == 'Waiting for service "ext-nothere" to be "registered"'
    assert "services wait for ext-nothere (1 service), which extvisor does not run" in daemon.log()
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert daemon.stop() == 0


def test_cli_start_stop_restart_and_output_formats(daemon: DaemonProcess):
    add_service(daemon, "web", """
        name: web
        container:
          entrypoint: /bin/sh
          args: ["-c", "trap 'echo bye; exit 0' TERM; echo hi; while :; do sleep 0.1; done"]
        restart: always
    """)
    daemon.start()
    daemon.wait_state("ext-web", "Running")
    table = daemon.cli("services").stdout.splitlines()
    assert table[0].split() == ["SERVICE", "STATE", "HEALTH", "LAST", "CHANGE", "LAST", "EVENT"]
    assert table[1].split()[:3] == ["ext-web", "Running", "?"]
    status = daemon.cli("service", "ext-web").stdout
    assert status.splitlines()[0].split() == ["ID", "ext-web"]
    assert "EVENTS" in status and "[Running]: Started task ext-web (PID" in status

    out = daemon.cli("service", "ext-web", "stop").stdout
    assert 'Service "ext-web" stopped' in out
    info = json.loads(daemon.cli("service", "ext-web", "-o", "json").stdout)
    assert info["state"] == "Finished"
    assert [e["msg"] for e in info["events"][-2:]][0].startswith("Sending SIGTERM to task ext-web")
    assert "bye" in daemon.cli("logs", "ext-web").stdout

    assert 'Service "ext-web" started' in daemon.cli("service", "ext-web", "start").stdout
    daemon.wait_state("ext-web", "Running")
    before = daemon.service("ext-web")["pid"]
    assert 'Service "ext-web" restarted' in daemon.cli("service", "ext-web", "restart").stdout
    after = daemon.wait_state("ext-web", "Running")["pid"]
    assert after != before

    assert "ext-web" in daemon.cli("services", "-o", "yaml").stdout
    bad = daemon.cli("service", "ext-nope", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: service \"ext-nope\" is not registered")
    assert "Traceback" not in bad.stderr
    assert daemon.stop() == 0
    gone = daemon.cli("services", check=False)
    assert gone.returncode == 1 and "is `extvisor daemon` running?" in gone.stderr


def test_logs_tail_follow_and_a_fast_writer_loses_nothing(daemon: DaemonProcess):
    add_service(daemon, "flood", """
        name: flood
        container: {entrypoint: /bin/sh, args: ["-c", "seq 1 200000; sleep 1000"]}
        restart: never
    """)
    add_service(daemon, "ticker", """
        name: ticker
        container: {entrypoint: /bin/sh, args: ["-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"]}
        restart: never
    """)
    daemon.start()
    log_file = daemon.log_dir / "ext-flood.log"
    daemon.wait(lambda: log_file.exists() and log_file.read_bytes().endswith(b"200000\n"), what="flood written")
    assert log_file.read_text().split() == [str(i) for i in range(1, 200001)]
    assert daemon.cli("logs", "ext-flood", "--tail", "3").stdout == "199998\n199999\n200000\n"

    follower = subprocess.Popen(
        [*daemon.args()[:3], "logs", "-f", "--tail", "1", "ext-ticker"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "EXTVISOR_SOCKET": str(daemon.socket)},
    )  # fmt: skip
    try:
        lines = [follower.stdout.readline() for _ in range(4)]
    finally:
        follower.terminate()
        follower.wait(10)
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + 4))
    assert daemon.stop() == 0


def test_sigkill_of_the_daemon_then_a_new_one_adopts_no_duplicate(daemon: DaemonProcess):
    add_service(daemon, "keep", """
        name: keep
        container: {entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}
        restart: always
    """)
    daemon.start()
    old_pid = daemon.wait_state("ext-keep", "Running")["pid"]
    daemon.stop(signal.SIGKILL)
    assert runc_containers(daemon) == ["ext-keep"]  # the container outlived its daemon
    daemon.socket.unlink(missing_ok=True)
    daemon.start()
    info = daemon.wait_state("ext-keep", "Running")
    assert info["pid"] == old_pid  # the runc monitor held it: adopted, not replaced
    assert runc_containers(daemon) == ["ext-keep"]
    msgs = [e["msg"] for e in info["events"]]
    assert msgs[-1] == f"Adopted task ext-keep (PID {old_pid}) for container ext-keep, left running by an earlier daemon"
    assert daemon.stop() == 0
    assert not os.path.exists(f"/proc/{old_pid}")


def test_shutdown_leaves_nothing_behind(daemon: DaemonProcess):
    for name in ("shut-a", "shut-b"):
        add_service(daemon, name, f"""
            name: {name}
            container: {{entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}}
            restart: always
        """)
    add_service(daemon, "shut-c", """
        name: shut-c
        container: {entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}
        depends: [{service: ext-shut-a}]
        restart: always
    """)
    daemon.start()
    for sid in ("ext-shut-a", "ext-shut-b", "ext-shut-c"):
        daemon.wait_state(sid, "Running")
    assert pids_of("ext-shut-a")
    cgroup = next(line.split(":", 2)[2] for line in Path(f"/proc/{pids_of('ext-shut-a')[0]}/cgroup").read_text().splitlines()
                  if "/extvisor/" in line)  # fmt: skip
    parent = cgroup.rsplit("/", 1)[0]  # /extvisor/<instance>: kept while the daemon runs
    assert parent.count("/") == 2 and any((h / parent.lstrip("/")).is_dir() for h in Path("/sys/fs/cgroup").iterdir())
    assert daemon.stop(signal.SIGINT) == 0
    assert runc_containers(daemon) == []
    for sid in ("ext-shut-a", "ext-shut-b", "ext-shut-c"):
        assert pids_of(sid) == [] and cgroup_dirs(sid) == []
    assert [str(h) for h in Path("/sys/fs/cgroup").iterdir() if (h / parent.lstrip("/")).exists()] == []
    assert not daemon.socket.exists()
    stops = [line for line in daemon.log().splitlines() if "Service finished successfully" in line]
    order = [next(s for s in ("ext-shut-a", "ext-shut-b", "ext-shut-c") if f"service[{s}]" in line) for line in stops]
    assert order.index("ext-shut-c") < order.index("ext-shut-a")


def test_bad_services_are_reported_and_the_rest_run(daemon: DaemonProcess):
    add_service(daemon, "good", """
        name: good
        container: {entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}
        restart: never
    """)
    add_service(daemon, "norootfs", """
        name: norootfs
        container: {entrypoint: /bin/sh}
        restart: never
    """, rootfs=False)
    add_service(daemon, "noentry", """
        name: noentry
        container: {entrypoint: /usr/bin/missing}
        restart: always
    """)
    add_service(daemon, "escape", """
        name: escape
        container: {entrypoint: ../../../bin/sh}
        restart: never
    """)
    (daemon.config_dir / "broken.yaml").write_text("name: broken\nrestart: sometimes\n")
    add_service(daemon, "cyc1", """
        name: cyc1
        container: {entrypoint: /bin/true}
        depends: [{service: ext-cyc2}]
        restart: never
    """)
    add_service(daemon, "cyc2", """
        name: cyc2
        container: {entrypoint: /bin/true}
        depends: [{service: ext-cyc1}]
        restart: never
    """)
    daemon.start()
    daemon.wait_state("ext-good", "Running")
    norootfs = daemon.wait_state("ext-norootfs", "Failed")["events"][-1]["msg"]
    assert str(daemon.rootfs_dir / "norootfs") in norootfs
    noentry = daemon.wait_state("ext-noentry", "Failed")["events"][-1]["msg"]
    assert "/usr/bin/missing" in noentry
    assert "'..'" in daemon.wait_state("ext-escape", "Failed")["events"][-1]["msg"]
    assert "Dependency cycle: ext-cyc1 -> ext-cyc2 -> ext-cyc1" in daemon.wait_state("ext-cyc1", "Failed")["events"][-1]["msg"]
    ids = [s["id"] for s in daemon.client.services()]
    assert "ext-broken" not in ids
    assert "broken.yaml:2:10: error: restart:" in daemon.log()
    assert daemon.stop() == 0


def test_log_to_console_copies_lines_to_the_daemon_stderr(daemon: DaemonProcess):
    add_service(daemon, "talker", """
        name: talker
        container: {entrypoint: /bin/sh, args: ["-c", "echo to-the-console; sleep 1000"]}
        restart: never
        logToConsole: true
    """)
    daemon.start()
    daemon.wait(lambda: "ext-talker: to-the-console" in daemon.log(), what="console copy")
    assert daemon.stop() == 0
