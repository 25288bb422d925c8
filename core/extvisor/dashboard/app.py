"""``extvisor dashboard``: the daemon's services at a glance, live.

Data flow: one worker holds the daemon's event stream (``/v1/events``). On each
(re)connection it reads the daemon and every service once, then applies events as they
come: one row changes per event, and that one service is re-read (coalesced, at most a
few times a second) for what events do not carry (restarts, pid, start time). A second
worker follows the selected service's log. Nothing polls; a 1 s timer only re-renders
durations. Losing the daemon shows a banner and reconnects with backoff.

Several nodes (``-n a,b,c``): each node has its own view (feed, model, connection) and
its own event stream, all running at once, so switching with h/l or the arrows shows a
node's current state at once, and a node that is down keeps retrying while the others
work. The table, events and log show the selected node; the header names it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input

from extvisor.client.format import printable
from extvisor.dashboard.feed import ApiError, Feed, Unreachable
from extvisor.dashboard.keys import ServiceKeys
from extvisor.dashboard.model import Model
from extvisor.dashboard.monitor import HostLine, MonitorScreen
from extvisor.dashboard.widgets import Banner, EventsPane, HeaderBar, LogPane, ServiceTable

LOG_TAIL = 500  # lines of history shown when a service is selected
LOG_MAX_LINES = 5000


class FilterInput(Input):
    BINDINGS = [Binding("escape", "app.clear_filter", "Clear filter")]


class NodeView:
    """One daemon the dashboard watches: its feed, what it last said, whether it answers."""

    def __init__(self, label: str, feed: Feed):
        self.label = label  # the node as typed; "" for the local socket
        self.feed = feed
        self.model = Model()
        self.connected = False
        self.offline_reason = ""
        self.online = asyncio.Event()


class DashboardApp(ServiceKeys, App[None]):
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
        Binding("h", "node(-1)", "Node", key_display="←→/hl", priority=True),
        Binding("l", "node(1)", "Next node", show=False, priority=True),
        Binding("left", "node(-1)", "Previous node", show=False, priority=True),
        Binding("right", "node(1)", "Next node", show=False, priority=True),
    ]

    def __init__(self, socket_path: str | None = None, max_backoff: float = 5.0, log_tail: int = LOG_TAIL,
                 log_max_lines: int = LOG_MAX_LINES, nodes: list[tuple[str, Feed]] | None = None):  # fmt: skip
        super().__init__()
        self.log_max_lines = log_max_lines
        self.socket_path = socket_path
        self.max_backoff = max_backoff
        self.log_tail = log_tail
        if nodes:
            self.views = [NodeView(label, feed) for label, feed in nodes]
        else:
            self.views = [NodeView("", Feed(socket_path or ""))]
        self.current = 0
        self.needle = ""
        self._dirty: set[tuple[int, str]] = set()
        self._dirty_wake = asyncio.Event()
        self._log_service: str | None = None

    # The selected node's parts, under the names the one-daemon dashboard used.
    @property
    def view(self) -> NodeView:
        return self.views[self.current]

    @property
    def feed(self) -> Feed:
        return self.view.feed

    @property
    def model(self) -> Model:
        return self.view.model

    @property
    def connected(self) -> bool:
        return self.view.connected

    @property
    def offline_reason(self) -> str:
        return self.view.offline_reason

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
        for view in self.views:
            self.stream_events(view)
        self.refresh_dirty()

    async def on_unmount(self) -> None:
        for view in self.views:
            await view.feed.close()

    # -- the event stream ----------------------------------------------------------------

    @work(group="events", exit_on_error=False)
    async def stream_events(self, view: NodeView) -> None:
        delay = 0.5
        retried = False
        while True:
            try:
                async with view.feed.events() as events:
                    # The stream is open, so nothing that happens from here on is missed.
                    daemon = await view.feed.daemon()
                    services = await view.feed.services()
                    self.online(view, daemon, services)
                    delay, retried = 0.5, False
                    async for event in events:
                        self.on_service_event(view, event)
                reason = "the daemon closed the event stream"
            except (Unreachable, ApiError) as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001 - a dashboard shows problems, it does not crash
                reason = f"{type(exc).__name__}: {exc}"
            if view.connected and not retried:
                # A stream that ran and ended: most likely a daemon restart or upgrade, whose
                # socket queues the call until the next daemon answers. Reconnect at once, no banner.
                retried = True
                continue
            self.offline(view, reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def online(self, view: NodeView, daemon: dict[str, Any], services: list[dict[str, Any]]) -> None:
        view.model.load(daemon, services)
        view.connected = True
        view.offline_reason = ""
        view.online.set()
        if view is not self.view:
            self.render_header()  # the count of nodes down changed
            return
        self.banner.remove_class("-shown")
        self.table.rebuild(self.model.services.values(), self.needle, time.time())
        self.selection_changed()
        self.render_header()

    def offline(self, view: NodeView, reason: str, delay: float) -> None:
        was = view.connected
        view.connected = False
        view.offline_reason = reason
        view.online.clear()
        if view is self.view:
            self.show_banner(delay)
        if was:
            self.render_header()

    def show_banner(self, delay: float | None = None) -> None:
        view = self.view
        what = f"node {view.label} not reachable" if view.label else f"daemon not reachable at {self.socket_path}"
        retry = f"retrying in {delay:g}s" if delay is not None else "retrying"
        self.banner.update(Text(printable(f"{what} — {retry} ({view.offline_reason})")))
        self.banner.add_class("-shown")

    def on_service_event(self, view: NodeView, event: dict[str, Any]) -> None:
        sid = event.get("service", "")
        if sid not in view.model.services:
            self.mark_dirty(sid, view)  # a service we have not seen: read it
            return
        if not view.model.apply(event):
            return
        if view is not self.view:
            self.mark_dirty(sid, view)
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

    def mark_dirty(self, sid: str, view: NodeView | None = None) -> None:
        self._dirty.add((self.views.index(view or self.view), sid))
        self._dirty_wake.set()

    @work(exclusive=True, group="refresh", exit_on_error=False)
    async def refresh_dirty(self) -> None:
        """Re-read services that had events, a few at a time; bursts coalesce."""
        while True:
            await self._dirty_wake.wait()
            await asyncio.sleep(0.2)
            self._dirty_wake.clear()
            ids, self._dirty = self._dirty, set()
            for index, sid in sorted(ids):
                view = self.views[index]
                try:
                    info = await view.feed.service(sid)
                except (Unreachable, ApiError):
                    continue  # gone, or the daemon is; the next snapshot has it
                except Exception:  # noqa: BLE001
                    continue
                new = sid not in view.model.services
                view.model.put(info)
                if view is not self.view:
                    continue  # shown when that node is selected
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
            pane.reset(f"Log · {printable(sid)}" if sid else "Log")
            if sid:
                self.follow_log(sid)
            else:
                self.workers.cancel_group(self, "logs")

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def follow_log(self, sid: str) -> None:
        pane = self.log_pane
        view = self.view  # switching node cancels this worker (exclusive group)
        await asyncio.sleep(0.15)  # holding j/k over many rows opens one stream, not one per row
        first = True
        while True:
            await view.online.wait()
            if not first:
                pane.reset(f"Log · {printable(sid)}")  # a new connection re-reads the tail
            first = False
            try:
                async with view.feed.logs(sid, tail=self.log_tail) as batches:
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
        node = ""
        if self.view.label:
            down = sum(not v.connected for v in self.views)
            node = f"node {self.view.label} ({self.current + 1}/{len(self.views)}" + (f", {down} down)" if down else ")")
        self.header.show(self.model.daemon, self.model.counts(), time.time(), self.connected, node)

    # -- nodes --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "node":  # h/l and the arrows stay the filter box's while it is typed in
            return len(self.views) > 1 and self.focused is not self.filter_box
        return True

    def action_node(self, step: int) -> None:
        """Previous or next node; clamped, no wrap (talosctl's dashboard)."""
        new = min(max(self.current + step, 0), len(self.views) - 1)
        if new == self.current:
            return
        self.current = new
        self._log_service = None
        self.workers.cancel_group(self, "logs")
        if self.view.connected:
            self.banner.remove_class("-shown")
        elif self.view.offline_reason:
            self.show_banner()
        else:
            self.banner.remove_class("-shown")
        self.table.rebuild(self.model.services.values(), self.needle, time.time())
        self.selection_changed()
        self.render_header()

    # The filter box's messages: Textual finds @on handlers on its own classes, not on a mixin.
    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_clear_filter()
        else:
            self.table.focus()

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
