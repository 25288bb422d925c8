"""The dashboard stays responsive with 100 real services, one of them writing 1000 lines a second."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from dashboard.test_dashboard import add_service, cell, until

from extvisor.dashboard import DashboardApp

pytestmark = pytest.mark.runc

SLEEPER = "trap 'exit 0' TERM; sleep 3600 & wait"  # wait returns at once on SIGTERM
FLOOD = "trap 'exit 0' TERM; while :; do seq 1 100; sleep 0.1; done"  # ~1000 lines/s
N = 100


def small_rootfs(full: Path, path: Path) -> None:
    """Just what a sleeper needs, busybox hard-linked: 99 full copies would take seconds."""
    for sub in ("bin", "proc", "sys", "dev", "etc", "tmp"):
        (path / sub).mkdir(parents=True)
    os.link(full / "bin" / "busybox", path / "bin" / "busybox")
    for applet in ("sh", "sleep"):
        (path / "bin" / applet).symlink_to("busybox")
    for name in ("hosts", "resolv.conf"):
        (path / "etc" / name).touch()


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path)
    add_service(d, "flood", FLOOD)
    for i in range(N - 1):
        small_rootfs(d.rootfs_dir / "flood", d.rootfs_dir / f"svc{i:02d}")
        add_service(d, f"svc{i:02d}", SLEEPER, rootfs=False)
    d.start()
    yield d
    assert d.stop(signal.SIGTERM, timeout=30) == 0, d.log()[-2000:]


async def latency(pilot, key: str) -> float:
    start = time.monotonic()
    await pilot.press(key)
    return time.monotonic() - start


async def test_hundred_services_and_a_flood(daemon: DaemonProcess) -> None:
    app = DashboardApp(str(daemon.socket), log_max_lines=2000)
    async with app.run_test(size=(150, 45)) as pilot:
        await until(pilot, lambda: len(app.table.shown()) == N, "all rows", timeout=15)
        await until(pilot, lambda: app.model.counts().get("Running") == N, "all running", timeout=20)
        assert app.table.selected == "ext-flood"
        log = app.log_pane
        await until(pilot, lambda: len(log.kept) == 2000, "log pane full (capped)")
        await pilot.pause(1.0)
        assert len(log.kept) == 2000 and len(log.lines) <= 2000

        # Keys answer quickly while the flood goes on.
        worst = max([await latency(pilot, "j") for _ in range(5)] + [await latency(pilot, "k") for _ in range(5)])
        assert worst < 1.5, f"a key press took {worst:.2f}s"
        assert app.table.selected == "ext-flood"

        # A burst of events (ten restarts at once) updates those rows only; still responsive.
        ids = [f"ext-svc{i:02d}" for i in range(10)]
        before = {sid: app.model.services[sid]["started_at"] for sid in ids}
        burst = asyncio.gather(*(app.feed.action(sid, "restart") for sid in ids))
        await pilot.press("j")
        await asyncio.wait_for(burst, 30)

        def all_restarted() -> bool:
            return all(
                app.model.services[sid]["state"] == "Running" and app.model.services[sid]["started_at"] != before[sid]
                for sid in ids
            )

        await until(pilot, all_restarted, "restarted rows updated", timeout=15)
        assert all(cell(app, sid, "state") == "Running" for sid in ids)
        assert await latency(pilot, "k") < 1.5
