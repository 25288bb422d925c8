"""``extvisor dashboard``: the daemon's services at a glance, live.

Data flow: one worker holds the daemon's event stream (``/v1/events``). On each
(re)connection it reads the daemon and every service once, then applies events as they
come: one row changes per event, and that one service is re-read (coalesced, at most a
few times a second) for what events do not carry (restarts, pid, start time). A second
worker follows the selected service's log. Nothing polls; a 1 s timer only re-renders
durations. Losing the daemon shows a banner and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input

from extvisor.dashboard.feed import ApiError, Feed, Unreachable
from extvisor.dashboard.model import Model
from extvisor.dashboard.monitor import HostLine, MonitorScreen
from extvisor.dashboard.widgets import Banner, ConfirmStop, EventsPane, HeaderBar, LogPane, ServiceTable

LOG_TAIL = 500  # lines of history shown when a service is selected
LOG_MAX_LINES = 5000
ACTING = {"stop": "stopping", "restart": "restarting"}


class FilterInput(Input):
    BINDINGS = [Binding("escape", "app.clear_filter", "Clear filter")]


class DashboardApp(App[None]):
    TITLE = "extvisor dashboard"
    CSS = """
    HeaderBar { height: 1; background: $panel; }
    Banner { display: none; height: auto; background: $error; color: $text; text-style: bold; padding: 0 1; }
    Banner.-shown { display: block; }
    FilterInput { display: none; }
    FilterInput.-shown { display: block; }
    ServiceTable { height: auto; max-height: 50%; min-height: 4; }
    #bottom { height: 1fr; min-height: 8; }
    EventsPane { width: 2fr; border: round $primary; }
    LogPane { width: 3fr; border: round $primary; }
    ConfirmStop { align: center middle; }
    #confirm { grid-size: 2; grid-gutter: 1 2; grid-rows: 1fr 3; padding: 0 1; width: 60; height: 11;
               border: thick $error 80%; background: $surface; }
    #question { column-span: 2; height: 1fr; width: 1fr; content-align: center middle; }
    #confirm Button { width: 100%; }
    """
    BINDINGS = [
        Binding("j", "move(1)", "Move", key_display="↑↓/jk"),
        Binding("k", "move(-1)", "Up", show=False),
        Binding("s", "act('start')", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("r", "act('restart')", "Restart"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("w", "wrap", "Wrap logs"),
        Binding("f1", "summary", "Summary"),
        Binding("f2", "monitor", "Monitor"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, socket_path: str, max_backoff: float = 5.0, log_tail: int = LOG_TAIL,
                 log_max_lines: int = LOG_MAX_LINES):
        super().__init__()
        self.log_max_lines = log_max_lines
        self.socket_path = socket_path
        self.max_backoff = max_backoff
        self.log_tail = log_tail
        self.model = Model()
        self.feed = Feed(socket_path)
        self.needle = ""
        self.connected = False
        self.offline_reason = ""
        self._online = asyncio.Event()
        self._dirty: set[str] = set()
        self._dirty_wake = asyncio.Event()
        self._log_service: str | None = None

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept as attributes: a query would look in the active screen, which may be the stop dialog.
        self.header = HeaderBar(id="header")
        self.banner = Banner(id="banner")
        self.filter_box = FilterInput(placeholder="filter by name or state (Enter: keep, Esc: clear)", id="filter")
        self.table = ServiceTable(id="services")
        self.events_pane = EventsPane(id="events")
        self.log_pane = LogPane(max_lines=self.log_max_lines, id="log")
        yield self.header
        yield HostLine(id="host")
        yield self.banner
        yield self.filter_box
        yield self.table
        with Horizontal(id="bottom"):
            yield self.events_pane
            yield self.log_pane
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        self.events_pane.show(None, time.time())
        self.log_pane.border_title = "Log"
        self.header.show({}, {}, time.time(), False)
        self.set_interval(1.0, self.tick)
        self.stream_events()
        self.refresh_dirty()

    async def on_unmount(self) -> None:
        await self.feed.close()

    # -- the event stream ----------------------------------------------------------------

    @work(exclusive=True, group="events", exit_on_error=False)
    async def stream_events(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.feed.events() as events:
                    # The stream is open, so nothing that happens from here on is missed.
                    daemon = await self.feed.daemon()
                    services = await self.feed.services()
                    self.online(daemon, services)
                    delay = 0.5
                    async for event in events:
                        self.on_service_event(event)
                reason = "the daemon closed the event stream"
            except (Unreachable, ApiError) as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001 - a dashboard shows problems, it does not crash
                reason = f"{type(exc).__name__}: {exc}"
            self.offline(reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def online(self, daemon: dict[str, Any], services: list[dict[str, Any]]) -> None:
        self.model.load(daemon, services)
        self.connected = True
        self.offline_reason = ""
        self._online.set()
        self.banner.remove_class("-shown")
        self.table.rebuild(self.model.services.values(), self.needle, time.time())
        self.selection_changed()
        self.render_header()

    def offline(self, reason: str, delay: float) -> None:
        was = self.connected
        self.connected = False
        self.offline_reason = reason
        self._online.clear()
        banner = self.banner
        banner.update(f"daemon not reachable at {self.socket_path} — retrying in {delay:g}s ({reason})")
        banner.add_class("-shown")
        if was:
            self.render_header()

    def on_service_event(self, event: dict[str, Any]) -> None:
        sid = event.get("service", "")
        if sid not in self.model.services:
            self.mark_dirty(sid)  # a service we have not seen: read it
            return
        if not self.model.apply(event):
            return
        service = self.model.services[sid]
        now = time.time()
        if sid in self.table.shown():
            self.table.update_service(service, now)
        elif self.needle:
            self.table.rebuild(self.model.services.values(), self.needle, now)  # may match the filter now
        if sid == self.table.selected:
            self.events_pane.show(service, now)
        self.render_header()
        self.mark_dirty(sid)

    def mark_dirty(self, sid: str) -> None:
        self._dirty.add(sid)
        self._dirty_wake.set()

    @work(exclusive=True, group="refresh", exit_on_error=False)
    async def refresh_dirty(self) -> None:
        """Re-read services that had events, a few at a time; bursts coalesce."""
        while True:
            await self._dirty_wake.wait()
            await asyncio.sleep(0.2)
            self._dirty_wake.clear()
            ids, self._dirty = self._dirty, set()
            for sid in sorted(ids):
                try:
                    info = await self.feed.service(sid)
                except (Unreachable, ApiError):
                    continue  # gone, or the daemon is; the next snapshot has it
                except Exception:  # noqa: BLE001
                    continue
                new = sid not in self.model.services
                self.model.put(info)
                now = time.time()
                if new:
                    self.table.rebuild(self.model.services.values(), self.needle, now)
                    self.render_header()
                else:
                    self.table.update_service(self.model.services[sid], now)
                if sid == self.table.selected:
                    self.events_pane.show(self.model.services[sid], now)

    # -- selection and the log -----------------------------------------------------------

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.selection_changed()

    def selection_changed(self) -> None:
        sid = self.table.selected
        self.events_pane.show(self.model.services.get(sid) if sid else None, time.time())
        if sid != self._log_service:
            self._log_service = sid
            pane = self.log_pane
            pane.reset(f"Log · {sid}" if sid else "Log")
            if sid:
                self.follow_log(sid)
            else:
                self.workers.cancel_group(self, "logs")

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def follow_log(self, sid: str) -> None:
        pane = self.log_pane
        await asyncio.sleep(0.15)  # holding j/k over many rows opens one stream, not one per row
        first = True
        while True:
            await self._online.wait()
            if not first:
                pane.reset(f"Log · {sid}")  # a new connection re-reads the tail
            first = False
            try:
                async with self.feed.logs(sid, tail=self.log_tail) as batches:
                    async for lines in batches:
                        pane.add_lines(lines)
            except Unreachable:
                pass
            except ApiError as exc:
                pane.add_lines([f"[log unavailable: {exc}]"])
                return
            except Exception as exc:  # noqa: BLE001
                pane.add_lines([f"[log stream failed: {type(exc).__name__}: {exc}]"])
            await asyncio.sleep(0.5)

    # -- periodic re-render (durations only, no API calls) --------------------------------

    def tick(self) -> None:
        now = time.time()
        self.table.tick(self.model.services, now)
        sid = self.table.selected
        if sid:
            self.events_pane.show(self.model.services.get(sid), now)
        self.render_header()

    def resized_table(self) -> None:
        self.table.rebuild(self.model.services.values(), self.needle, time.time())

    def render_header(self) -> None:
        self.header.show(self.model.daemon, self.model.counts(), time.time(), self.connected)

    # -- keys -------------------------------------------------------------------------

    def action_move(self, step: int) -> None:
        if step > 0:
            self.table.action_cursor_down()
        else:
            self.table.action_cursor_up()

    def action_act(self, action: str) -> None:
        sid = self.table.selected
        if sid is None:
            self.notify("no service selected", severity="warning")
            return
        self.perform(sid, action)

    def action_stop(self) -> None:
        sid = self.table.selected
        if sid is None:
            self.notify("no service selected", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.perform(sid, "stop")

        self.push_screen(ConfirmStop(sid), answered)

    @work(exit_on_error=False)
    async def perform(self, sid: str, action: str) -> None:
        if action != "start":
            self.notify(f"{ACTING[action]} {sid}…", timeout=2)
        try:
            message = await self.feed.action(sid, action)
        except Unreachable as exc:
            self.notify(f"{action} {sid}: daemon not reachable ({exc})", severity="error")
            return
        except ApiError as exc:
            self.notify(f"{action} {sid}: {exc}", severity="error")
            return
        except Exception as exc:  # noqa: BLE001
            self.notify(f"{action} {sid}: {type(exc).__name__}: {exc}", severity="error")
            return
        self.notify(message)
        self.mark_dirty(sid)

    def action_filter(self) -> None:
        box = self.filter_box
        box.add_class("-shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.filter_box
        if not box.has_class("-shown") and not self.needle:
            return
        box.value = ""
        box.remove_class("-shown")
        self.set_filter("")
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_clear_filter()
        else:
            self.table.focus()

    def set_filter(self, needle: str) -> None:
        if needle == self.needle:
            return
        self.needle = needle
        self.table.rebuild(self.model.services.values(), needle, time.time())
        self.selection_changed()

    def action_summary(self) -> None:
        """F1: the services table (Talos's Summary screen)."""
        if isinstance(self.screen, MonitorScreen):
            self.pop_screen()

    def action_monitor(self) -> None:
        """F2: CPU and memory over time per service, and the selected one's processes."""
        if not isinstance(self.screen, MonitorScreen):
            self.push_screen(MonitorScreen())

    def action_wrap(self) -> None:
        pane = self.log_pane
        pane.toggle_wrap()
        self.notify("log wrapping " + ("on" if pane.wrap else "off"), timeout=1.5)
