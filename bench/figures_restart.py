"""Daemon restarts under load (issue 27): a client calling ``services`` every 20 ms across ten
restarts (SIGKILL with the socket held as systemd's extvisor.socket holds it, and SIGUSR2
upgrades in place), three services printing a counter; and what the runc monitor costs."""

from __future__ import annotations

import re
import signal
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, DaemonProcess, Row, all_running, write_services

sys.path.insert(0, str(ROOT / "tests" / "server"))

import test_zero_downtime as z  # noqa: E402

from extvisor.testing import make_busybox_rootfs  # noqa: E402


def _rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+)", text, re.M).group(1)) / 1024  # type: ignore[union-attr]


def restart_rows(backend: str = "runc", rounds: int = 10) -> list[Row]:
    extra: list[str] = []
    containerd = None
    if backend == "containerd":
        from containerd_daemon import ContainerdDaemon

        containerd = ContainerdDaemon()
        containerd.start()
        extra = ["--containerd-address", containerd.address, "--containerd-namespace", "extvisor-bench-restart"]
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        d = z.ActivatedDaemon(Path(tmp), backend, extra)
        for name in z.NAMES:
            make_busybox_rootfs(d.rootfs_dir / name)
            (d.config_dir / f"{name}.yaml").write_text(
                f'name: {name}\ncontainer: {{entrypoint: /bin/sh, args: ["-c", "{z.COUNTER}"]}}\nrestart: always\n')
        d.start()
        rows: list[Row] = []
        try:
            pids = {f"ext-{n}": d.wait_state(f"ext-{n}", "Running")["pid"] for n in z.NAMES}
            hammer = z.Hammer(d.socket)
            hammer.start()
            changed = 0
            for i in range(rounds):
                time.sleep(0.5)
                if i % 2:
                    d.stop(signal.SIGKILL)
                    d.start()
                else:
                    ready = d.log().count("daemon ready")
                    assert d.proc is not None
                    d.proc.send_signal(signal.SIGUSR2)
                    d.wait(lambda: d.log().count("daemon ready") > ready, timeout=30, what="upgraded daemon")
                changed += sum(d.wait_state(sid, "Running")["pid"] != pid for sid, pid in pids.items())
            time.sleep(0.5)
            hammer.done.set()
            hammer.join()
            broken = 0
            for sid in pids:
                got = z.numbers(d.log_dir / f"{sid}.log")
                broken += got != list(range(1, len(got) + 1))
            rows += [
                Row(f"{backend}: failed API calls, {rounds} restarts ({hammer.calls} calls)", len(hammer.failures),
                    None, "calls", 0, kind="max"),
                Row(f"{backend}: slowest API answer across {rounds} restarts", hammer.slowest, None, "s", 1.5, kind="max"),
                Row(f"{backend}: counter logs with a gap or a repeat", broken, None, "logs", 0, kind="max"),
                Row(f"{backend}: PIDs changed across {rounds} restarts", changed, None, "PIDs", 0, kind="max"),
            ]
            if backend == "runc":
                monitor = int((d.state_dir / "runc" / "monitor.log").read_text().split("monitor ")[1].split()[0])
                rows.append(Row("runc monitor RSS (one for all containers)", _rss_mb(monitor), None, "MB", 15,
                                kind="max"))
        finally:
            d.stop()
            d.listener.close()
            if containerd is not None:
                containerd.stop()
    return rows


def monitor_rows(n: int = 50) -> list[Row]:
    """What holding n containers costs: the one runc monitor's RSS, against n Pythons of its size."""
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        d = DaemonProcess(Path(tmp))
        ids = write_services(d, n, "sleep 100000")
        d.start()
        try:
            d.wait(lambda: all_running(d, ids), timeout=300, what=f"{n} services running")
            monitor = int((d.state_dir / "runc" / "monitor.log").read_text().split("monitor ")[1].split()[0])
            rss = _rss_mb(monitor)
        finally:
            d.stop()
    return [Row(f"runc monitor RSS, {n} containers", rss, None, "MB", 15, kind="max",
                note=f"a Python monitor per container would be ~{n} x this")]
