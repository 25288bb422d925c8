"""Issue 17: each defect reproduced as it was found, against a real daemon (runc).

Items 1, 3, 5, 7, 8 and 10 here; 2 in test_stop_deadlines.py, 4 in test_daemon_instances.py,
6 and 9 (and 1 and 5 in detail) in tests/runtime/test_logs.py, 11 in tests/documents/test_hardening_spec.py.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess

from extvisor.client.http import Client
from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc


def service(d: DaemonProcess, name: str, script: str, restart: str = "always", extra: str = "") -> None:
    make_busybox_rootfs(d.rootfs_dir / name)
    lines = [f"name: {name}", "container:", "  entrypoint: /bin/sh", f"  args: [\"-c\", {script!r}]".replace("'", '"')]
    if extra:
        lines.append(f"  {extra}")  # a container key
    lines.append(f"restart: {restart}")
    (d.config_dir / f"{name}.yaml").write_text("\n".join(lines) + "\n")


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path / "d", extra=["--log-max-bytes", "20000"])
    yield d
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop() == 0, d.log()[-3000:]


def test_item1_deleted_log_never_leaks_into_another_stream(daemon: DaemonProcess) -> None:
    service(daemon, "x", "i=0; while :; do echo XLINE-$i; i=$((i+1)); sleep 0.001; done")
    service(daemon, "y", "i=0; while :; do echo YLINE-$i; i=$((i+1)); sleep 0.01; done")
    daemon.start()
    daemon.wait_state("ext-x", "Running")
    daemon.wait_state("ext-y", "Running")
    got: list[bytes] = []
    stop = threading.Event()

    def follow() -> None:
        for chunk in Client(str(daemon.socket), timeout=30).logs("ext-y", tail=0, follow=True):
            got.append(chunk)
            if stop.is_set():
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.3)
    (daemon.log_dir / "ext-x.log").unlink()
    for name in os.listdir(daemon.log_dir):
        if name.startswith("ext-x.log."):
            (daemon.log_dir / name).unlink()
    time.sleep(2)  # several rotations of ext-x's log meanwhile
    stop.set()
    reader.join(10)
    followed = b"".join(got)
    assert b"YLINE-" in followed and b"XLINE-" not in followed
    assert b"XLINE-" not in (daemon.log_dir / "ext-y.log").read_bytes()
    assert (daemon.log_dir / "ext-x.log").exists()
    events = [e["msg"] for e in daemon.service("ext-x")["events"]]
    assert any("was deleted" in m and "recreated" in m for m in events), events
    assert "was deleted" in daemon.log()
    assert "Traceback" not in daemon.log()
    daemon.wait(lambda: b"XLINE-" in b"".join(daemon.client.logs("ext-x", tail=5)), what="ext-x's log served again")


def test_item5_logs_with_nothing_kept_says_so(daemon: DaemonProcess) -> None:
    service(daemon, "quiet", "echo once; exec sleep 1000")
    daemon.start()
    daemon.wait_state("ext-quiet", "Running")
    daemon.wait(lambda: (daemon.log_dir / "ext-quiet.log").read_bytes() == b"once\n", what="the first line")
    (daemon.log_dir / "ext-quiet.log").unlink()
    r = daemon.cli("logs", "ext-quiet", check=False)
    assert r.returncode != 0
    assert "no log kept for ext-quiet" in r.stderr + r.stdout, (r.stdout, r.stderr)
    assert "Traceback" not in daemon.log()


def test_item3_a_service_that_cannot_be_set_up_fails_alone(daemon: DaemonProcess) -> None:
    service(daemon, "good", "echo fine; exec sleep 1000")
    service(daemon, "nolog", "echo lost; exec sleep 1000", restart="never")
    long_name = "n" * 300
    (daemon.config_dir / "long.yaml").write_text(f"name: {long_name}\ncontainer: {{entrypoint: /bin/sh}}\nrestart: never\n")
    daemon.log_dir.mkdir(parents=True)
    (daemon.log_dir / "ext-nolog.log").mkdir()  # its log cannot be opened
    daemon.start()
    daemon.wait_state("ext-good", "Running")
    failed = daemon.wait_state("ext-nolog", "Failed")
    assert "error creating log" in failed["events"][-1]["msg"], failed["events"]
    assert "name is too long (300 characters; at most 63" in daemon.log()
    r = daemon.cli("validate", str(daemon.config_dir / "long.yaml"), check=False)
    assert r.returncode == 1 and "at most 63" in r.stdout


def test_item7_environment_file_values_are_never_echoed(daemon: DaemonProcess, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$SECRETHASHVALUE:19000:0:99999:7:::\n")
    bad_key = tmp_path / "env"
    bad_key.write_text("GOOD=1\nPASS WORD=HUNTER2SECRET\n")
    service(daemon, "shadow", "true", restart="never", extra=f"environmentFile: {secret}")
    service(daemon, "badkey", "true", restart="never", extra=f"environmentFile: {bad_key}")
    daemon.start()
    for sid, line in (("ext-shadow", 1), ("ext-badkey", 2)):
        info = daemon.wait_state(sid, "Failed")
        text = " ".join(e["msg"] for e in info["events"])
        assert f":{line}: malformed line" in text, text
    out = daemon.log() + daemon.cli("service", "ext-shadow").stdout + daemon.cli("service", "ext-badkey").stdout
    assert "SECRETHASH" not in out and "HUNTER2" not in out and "root:" not in out


def test_item8_config_dir_reads_regular_files_only(daemon: DaemonProcess) -> None:
    service(daemon, "good", "echo fine; exec sleep 1000")
    os.mkfifo(daemon.config_dir / "fifo.yaml")
    (daemon.config_dir / "zero.yaml").symlink_to("/dev/zero")
    with open(daemon.config_dir / "big.yaml", "wb") as f:
        f.truncate(50 * 1024 * 1024)
    began = time.monotonic()
    daemon.start(timeout=30)
    daemon.wait_state("ext-good", "Running")
    assert time.monotonic() - began < 30
    log = daemon.log()
    assert "fifo.yaml:0:0: error: skipped: a FIFO, not a regular file" in log
    assert "zero.yaml:0:0: error: skipped: a character device, not a regular file" in log
    assert "big.yaml:0:0: error: skipped: 52428800 bytes, larger than the 1048576 byte limit" in log
    assert "aliases" not in log
    rss_kb = int(next(l for l in open(f"/proc/{daemon.proc.pid}/status") if l.startswith("VmRSS")).split()[1])
    assert rss_kb < 400_000, rss_kb


def test_item10_socket_at_a_regular_file_is_refused(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "d")
    d.socket.parent.mkdir(parents=True, exist_ok=True)
    d.socket.write_text("precious\n")
    with pytest.raises(RuntimeError, match="is a regular file, not a socket: refusing to replace it"):
        d.start()
    assert d.socket.read_text() == "precious\n"


def test_item10_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    import socket

    d = DaemonProcess(tmp_path / "d")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(d.socket))
    stale.close()  # nobody listens: stale
    d.start()
    try:
        assert d.client.daemon()["backend"] == "runc"
    finally:
        assert d.stop() == 0
    subprocess.run(["true"])
