"""F1 Summary's host line and the F2 Monitor screen, with Textual's pilot against a real daemon
(runc) running a CPU burner, a memory holder and a forking service, at 80x24."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from dashboard.test_dashboard import add_service, until

from extvisor.dashboard import DashboardApp
from extvisor.dashboard.monitor import Chart, HostLine, MonitorScreen

pytestmark = pytest.mark.runc


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path)
    add_service(d, "burn", "while :; do :; done")
    add_service(d, "hog", "x=$(head -c 16777216 /dev/zero | tr '\\0' a); while :; do sleep 1; done")
    add_service(d, "forks", "for i in 1 2 3; do sleep 100000 & done; wait")
    d.start()
    for sid in ("ext-burn", "ext-hog", "ext-forks"):
        d.wait_state(sid, "Running", timeout=60)
    yield d
    assert d.stop(signal.SIGTERM, timeout=30) == 0


async def test_summary_host_line_and_monitor_screen(daemon: DaemonProcess):
    app = DashboardApp(str(daemon.socket))
    async with app.run_test(size=(80, 24)) as pilot:
        host = app.query_one(HostLine)
        await until(pilot, lambda: "LOAD" in str(host.render()), "host line filled")
        text = str(host.render())
        assert text.startswith("CPU ") and "MEM " in text and " UP " in text, text

        await pilot.press("f2")
        assert isinstance(app.screen, MonitorScreen)
        screen = app.screen

        def chart(sid: str) -> Chart:
            return screen.query_one(f"#chart-{sid}", Chart)

        def figure(sid: str, which: str) -> str:
            return str(chart(sid).query_one(f"#{which}-figure").render())

        await until(pilot, lambda: len(screen.query(Chart)) == 3, "three charts", timeout=15)
        # the burner's CPU line rises; the holder's memory shows its 16 MiB
        await until(pilot, lambda: max(chart("ext-burn").query_one("#cpu").values, default=0) > 10, "burner's chart", timeout=30)
        # the scale is fixed at 100 % of a core: an idle service's bars stay low
        idle_cpu = chart("ext-hog").query_one("#cpu")
        # (its first figure may show its start, filling 16 MiB: the first stats read is real now)
        await until(pilot, lambda: idle_cpu.values and idle_cpu.values[-1] < 5, "holder idle", timeout=15)
        assert max(idle_cpu.values, default=0) < 50 and "█" not in str(idle_cpu.render())
        await until(pilot, lambda: "MiB" in figure("ext-hog", "mem") and float(figure("ext-hog", "mem").split()[0]) >= 16,
                    "hog's memory", timeout=30)  # fmt: skip
        assert figure("ext-burn", "cpu").endswith("%")

        table = screen.query_one("#processes")
        assert screen.selected == "ext-burn"  # sorted: burn, forks, hog
        await pilot.press("j")
        assert screen.selected == "ext-forks"
        await until(pilot, lambda: table.row_count == 4, "the 4 processes of ext-forks", timeout=15)
        commands = sorted(str(table.get_row_at(i)[-1]) for i in range(4))
        assert commands[1:] == ["sleep 100000"] * 3 and "Processes of ext-forks" in str(table.border_title)
        # 80x24: every chart fits and the footer says how to get back
        assert all(c.region.width > 0 and c.region.y < 24 for c in screen.query(Chart))
        await pilot.press("f1")
        assert not isinstance(app.screen, MonitorScreen) and app.table.row_count == 3
