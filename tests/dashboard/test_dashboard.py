"""The dashboard, driven by Textual's pilot against a real daemon running real runc containers."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess

from extvisor.dashboard import DashboardApp
from extvisor.dashboard.widgets import Banner, ConfirmStop, EventsPane, HeaderBar, LogPane
from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc

# Prints a line every 0.1 s; exits at once on SIGTERM (sh as PID 1 would ignore it otherwise).
TICKER = "trap 'exit 0' TERM; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"
CRASHER = "echo crashing; exit 1"


def add_service(d: DaemonProcess, name: str, script: str, restart: str = "always", rootfs: bool = True) -> None:
    if rootfs:
        make_busybox_rootfs(d.rootfs_dir / name)
    (d.config_dir / f"{name}.yaml").write_text(
        f"name: {name}\ncontainer:\n  entrypoint: /bin/sh\n  args: [\"-c\", {json.dumps(script)}]\nrestart: {restart}\n"
    )


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path)
    add_service(d, "ticker", TICKER)
    add_service(d, "crasher", CRASHER)
    d.start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop(signal.SIGTERM, timeout=20) == 0, d.log()[-2000:]
    assert d.proc is not None and d.proc.poll() is not None


async def until(pilot, predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {what}")
        await pilot.pause(0.05)


def cell(app: DashboardApp, sid: str, column: str) -> str:
    value = app.table.get_cell(sid, column)
    return getattr(value, "plain", str(value))


def events(app: DashboardApp, sid: str) -> list[tuple[str, str]]:
    return [(e["state"], e["msg"]) for e in app.model.services[sid]["events"]]


def assert_history_sane(app: DashboardApp, sid: str) -> None:
    evs = app.model.services[sid]["events"]
    keys = [(e["ts"], e["state"], e["msg"]) for e in evs]
    assert len(keys) == len(set(keys)), f"duplicate events: {keys}"
    assert [e["ts"] for e in evs] == sorted(e["ts"] for e in evs)


async def test_live_table_keys_and_log(daemon: DaemonProcess, tmp_path: Path) -> None:
    app = DashboardApp(str(daemon.socket), max_backoff=0.5)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: app.table.shown() == ["ext-crasher", "ext-ticker"], "both services listed")
        header = str(app.query_one(HeaderBar).render())
        assert "backend runc" in header and "2 services" in header

        # The crash loop shows up as it happens: restarts grow, the last event says why.
        await until(pilot, lambda: int(cell(app, "ext-crasher", "restarts")) >= 2, "crasher restarts counted")
        await until(pilot, lambda: "going to restart" in cell(app, "ext-crasher", "event"), "crasher's last event")
        assert any("exit code 1" in msg for _, msg in events(app, "ext-crasher"))
        assert cell(app, "ext-crasher", "state") in {"Waiting", "Running", "Preparing", "Starting", "Failed"}
        await until(pilot, lambda: "crashing" in app.query_one(LogPane).kept, "crasher's log (selected first)")

        # j moves to the ticker; its log follows as it grows, its events are listed.
        await pilot.press("j")
        assert app.table.selected == "ext-ticker"
        log = app.query_one(LogPane)
        await until(pilot, lambda: any(line.startswith("tick ") for line in log.kept), "ticker's log")
        seen = len(log.kept)
        await until(pilot, lambda: len(log.kept) >= seen + 5, "log following")
        assert all(not line.startswith("crashing") for line in log.kept), "the log pane switched streams"
        assert cell(app, "ext-ticker", "state") == "Running"
        assert cell(app, "ext-ticker", "since").startswith("up ")
        body = str(app.query_one("#events-body").render())
        assert "[Running]: Started task ext-ticker" in body and "ago)" in body

        path = app.save_screenshot("dashboard.svg", str(tmp_path))
        svg = Path(path).read_text()
        assert "ext-ticker" in svg and "ext-crasher" in svg

        # r restarts the selected service: a stop and a new run appear in its events.
        runs_before = events(app, "ext-ticker").count(("Starting", "Starting service"))
        await pilot.press("r")

        def restarted() -> bool:
            evs = events(app, "ext-ticker")
            return evs.count(("Starting", "Starting service")) > runs_before and evs[-1][0] == "Running"

        await until(pilot, restarted, "ticker restarted")
        assert any(state == "Stopping" for state, _ in events(app, "ext-ticker"))
        await until(pilot, lambda: cell(app, "ext-ticker", "state") == "Running", "row shows Running again")
        assert_history_sane(app, "ext-ticker")

        # x asks first; n keeps it running; y stops it; s starts it again.
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop), "stop confirmation")
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmStop), "dialog closed")
        await pilot.pause(0.5)
        assert daemon.service("ext-ticker")["state"] == "Running"
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop), "stop confirmation")
        await pilot.press("y")
        await until(pilot, lambda: cell(app, "ext-ticker", "state") == "Finished", "ticker stopped")
        assert daemon.service("ext-ticker")["state"] == "Finished"
        assert cell(app, "ext-ticker", "since").endswith(" ago")
        await pilot.press("s")
        await until(pilot, lambda: cell(app, "ext-ticker", "state") == "Running", "ticker started")

        # / filters by name or state; Esc clears.
        await pilot.press("slash", "c", "r", "a", "s", "h")
        await until(pilot, lambda: app.table.shown() == ["ext-crasher"], "filtered by name")
        await pilot.press("escape")
        await until(pilot, lambda: app.table.shown() == ["ext-crasher", "ext-ticker"], "filter cleared")
        await pilot.press("slash", *"running", "enter")
        assert app.focused is app.table
        assert "ext-ticker" in app.table.shown()
        await pilot.press("escape")
        await until(pilot, lambda: len(app.table.shown()) == 2, "filter cleared")

        # w toggles wrapping of the log.
        assert not log.wrap
        await pilot.press("w")
        assert log.wrap and len(log.lines) > 0
        await pilot.press("q")
    assert app.return_code in (None, 0)


async def test_banner_and_reconnect(daemon: DaemonProcess) -> None:
    app = DashboardApp(str(daemon.socket), max_backoff=0.5)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: "ext-ticker" in app.table.shown(), "ticker listed")
        await pilot.press("j")
        log = app.query_one(LogPane)
        await until(pilot, lambda: any(line.startswith("tick ") for line in log.kept), "ticker's log")

        rc = await asyncio.to_thread(daemon.stop, signal.SIGTERM, 20)
        assert rc == 0, daemon.log()[-2000:]
        banner = app.query_one(Banner)
        await until(pilot, lambda: banner.has_class("-shown"), "banner shown")
        assert f"daemon not reachable at {daemon.socket}" in str(banner.render())
        assert "retrying" in str(banner.render())
        await until(pilot, lambda: "daemon down" in str(app.query_one(HeaderBar).render()), "header says down")
        await pilot.pause(1.0)  # a few failed retries: still no traceback, still the banner
        assert banner.has_class("-shown")

        await asyncio.to_thread(daemon.start)
        await until(pilot, lambda: not banner.has_class("-shown"), "reconnected", timeout=15)
        assert app.connected
        await until(pilot, lambda: cell(app, "ext-ticker", "state") == "Running", "ticker running again")
        # The log pane re-reads the tail and follows the new run.
        await until(pilot, lambda: any(line.startswith("tick ") for line in log.kept), "log after reconnect")
        first = len(log.kept)
        await until(pilot, lambda: len(log.kept) > first, "log follows after reconnect")
        body = str(app.query_one(EventsPane).query_one("#events-body").render())
        assert "ext-ticker" in body


def test_model_never_duplicates_events_after_a_refetch_during_a_burst():
    from extvisor.dashboard.model import Model

    burst = [{"service": "ext-a", "state": s, "msg": f"m{i}", "ts": 100.0 + i}
             for i, s in enumerate(["Stopping", "Finished", "Starting", "Waiting", "Preparing", "Preparing",
                                    "Running", "Waiting", "Running", "Stopping", "Finished"])]  # fmt: skip
    model = Model()
    model.load({}, [{"id": "ext-a", "state": "Running", "events": []}])
    model.apply(burst[0])
    # The grouped refetch answers with the whole burst before the stream delivered it.
    model.put({"id": "ext-a", "state": "Finished", "events": [dict(e) for e in burst]})
    for event in burst[1:]:
        assert model.apply(event) is False
    assert [e["msg"] for e in model.services["ext-a"]["events"]] == [e["msg"] for e in burst]


async def test_what_a_service_says_is_shown_not_obeyed(tmp_path: Path) -> None:
    """A failing service's last output lands in its Failed event: Rich markup in it is shown
    as text and never breaks a widget (a DataTable cell or a Static would parse it)."""
    d = DaemonProcess(tmp_path)
    add_service(d, "rogue", r"printf '\033]0;pwned\007 [/] [bold]x\n'; exit 3", restart="never")
    d.start()
    try:
        app = DashboardApp(str(d.socket), max_backoff=0.5)
        async with app.run_test(size=(150, 40)) as pilot:
            await until(pilot, lambda: app.model.services.get("ext-rogue", {}).get("state") == "Failed", "rogue failed")
            await pilot.pause(0.3)
            assert "[/] [bold]x" in cell(app, "ext-rogue", "event") or "…" in cell(app, "ext-rogue", "event")
            app.table.move_cursor(row=app.table.get_row_index("ext-rogue"))
            await pilot.pause(0.3)
            pane = str(app.query_one(EventsPane).query_one("#events-body").render())
            assert "[/] [bold]x" in pane and "\x1b" not in pane and "\x07" not in pane
    finally:
        d.stop()


def test_a_nodes_escape_sequences_are_shown_not_obeyed() -> None:
    """What another node sends (ids, messages) reaches the screen cat -v style (CVE-2021-25743)."""
    from extvisor.dashboard.format import event_line, last_event

    event = {"service": "ext-x", "state": "Failed\x1b[2J", "msg": "bad \x1b]0;pwned\x07 [/]", "ts": time.time()}
    line = event_line(event, time.time()).plain
    assert "^[[2J" in line and "^[]0;pwned^G [/]" in line and "\x1b" not in line
    assert last_event({"events": [event]}) == "bad ^[]0;pwned^G [/]"


async def test_health_column_and_line(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path)
    add_service(d, "checked", TICKER)
    add_service(d, "plain", TICKER)
    with open(d.config_dir / "checked.yaml", "a") as f:
        f.write("healthcheck: {test: [CMD-SHELL, 'echo fine'], interval: 200ms}\n")
    d.start()
    try:
        app = DashboardApp(str(d.socket), max_backoff=0.5)
        async with app.run_test(size=(150, 40)) as pilot:
            await until(pilot, lambda: app.table.shown() == ["ext-checked", "ext-plain"], "both services listed")
            await until(pilot, lambda: cell(app, "ext-checked", "health") == "OK", "checked is healthy")
            assert cell(app, "ext-plain", "health") == "?"
            assert app.table.selected == "ext-checked"
            await until(pilot, lambda: "health (exec): OK" in str(app.query_one("#events-body").render()),
                        "the health line of the selected service")  # fmt: skip
            body = str(app.query_one("#events-body").render())
            assert ": fine" in body and "Health check successful" in body
    finally:
        assert d.stop(signal.SIGTERM, timeout=20) == 0
