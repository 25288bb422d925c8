"""The dashboard's parts: header, banner, service table, event history, log pane, stop dialog."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, RichLog, Static

from extvisor.dashboard.format import event_line, go_duration, health_cell, health_text, last_event, matches, since, state_style, state_text
from extvisor.client.format import printable

COLUMNS = (("id", "SERVICE"), ("state", "STATE"), ("health", "HEALTH"), ("restarts", "RESTARTS"),
           ("since", "UPTIME / SINCE"), ("event", "LAST EVENT"))  # fmt: skip
STATE_ORDER = ("Running", "Preparing", "Waiting", "Starting", "Stopping", "Initialized", "Failed", "Finished", "Skipped")


class HeaderBar(Static):
    """``extvisor · backend runc · 3 services: 2 Running, 1 Failed · host vm 10.0.0.2/24 · up 1h2m3s``."""

    def show(self, daemon: dict[str, Any], counts: dict[str, int], now: float, connected: bool, node: str = "") -> None:
        out = Text()
        out.append(" extvisor ", style="bold reverse")
        if node:  # several nodes: which one this is, of how many
            out.append(f" {node} ", style="bold reverse" if connected else "bold red reverse")
        if not daemon:
            out.append("  connecting…", style="dim")
            self.update(out)
            return
        out.append(f"  backend {daemon.get('backend', '?')}", style="bold")
        total = sum(counts.values())
        out.append(f"  ·  {total} service{'s' if total != 1 else ''}")
        parts = [s for s in STATE_ORDER if counts.get(s)] + sorted(s for s in counts if s not in STATE_ORDER)
        if parts:
            out.append(": ")
            for i, state in enumerate(parts):
                if i:
                    out.append(", ")
                out.append(f"{counts[state]} {state}", style=state_style(state))
        out.append(f"  ·  host {daemon.get('hostname', '?')}", style="bold")
        addrs = daemon.get("addresses") or []
        if addrs:
            out.append(" " + " ".join(addrs), style="cyan")
        if connected and daemon.get("started_at"):
            out.append(f"  ·  daemon up {go_duration(now - daemon['started_at'])}")
        elif not connected:
            out.append("  ·  daemon down", style="bold red")
        self.update(out)


class Banner(Static):
    """A red line over the table while the daemon cannot be reached."""


class ServiceTable(DataTable):
    """One row per service, keyed by id; rows are updated cell by cell, never rebuilt on an event."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        self._cells: dict[str, dict[str, Any]] = {}

    @property
    def selected(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value)
        except Exception:
            return None

    def cells(self, service: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "id": Text(printable(service["id"])),  # Text: a node's id is neither markup nor escapes
            "state": state_text(service["state"]),
            "health": health_cell(service),
            "restarts": Text(str(service.get("restarts", 0)), justify="right"),
            "since": since(service, now),
            "event": Text(last_event(service, self.event_width)),
        }

    @property
    def event_width(self) -> int:
        """What is left of the screen for LAST EVENT: the table then needs no sideways scrolling."""
        others = sum(c.get_render_width(self) for c in self.columns.values() if c.key.value != "event")
        return max(30, self.size.width - others - 4)

    def on_resize(self) -> None:
        self.app.call_later(self.app.resized_table)  # type: ignore[attr-defined]

    def rebuild(self, services: Iterable[dict[str, Any]], needle: str, now: float) -> None:
        """All rows again (the filter changed or a service appeared); keeps the selection when it can."""
        keep = self.selected
        self.clear()
        self._cells = {}
        for s in sorted(services, key=lambda s: s["id"]):
            if matches(s, needle):
                cells = self.cells(s, now)
                self._cells[s["id"]] = cells
                self.add_row(*cells.values(), key=s["id"])
        if keep in self._cells:
            self.move_cursor(row=self.get_row_index(keep))

    def update_service(self, service: dict[str, Any], now: float) -> None:
        """Rewrite the cells of one row that changed."""
        old = self._cells.get(service["id"])
        if old is None:
            return
        new = self.cells(service, now)
        for key, value in new.items():
            if _plain(value) != _plain(old.get(key)) or str(getattr(value, "style", "")) != str(getattr(old.get(key), "style", "")):
                self.update_cell(service["id"], key, value, update_width=key in ("state", "event", "restarts"))
        self._cells[service["id"]] = new

    def tick(self, services: dict[str, dict[str, Any]], now: float) -> None:
        """Re-render the durations; no API calls."""
        for sid in self._cells:
            s = services.get(sid)
            if s is None:
                continue
            value = since(s, now)
            if _plain(value) != _plain(self._cells[sid]["since"]):
                self._cells[sid]["since"] = value
                self.update_cell(sid, "since", value)

    def shown(self) -> list[str]:
        return list(self._cells)


def _plain(value: Any) -> str:
    return value.plain if isinstance(value, Text) else str(value)


class EventsPane(VerticalScroll):
    """The selected service's history, newest first, as ``talosctl service ID`` prints it."""

    def compose(self) -> ComposeResult:
        yield Static(id="events-body")

    def show(self, service: dict[str, Any] | None, now: float) -> None:
        body = self.query_one("#events-body", Static)
        if service is None:
            self.border_title = "Events"
            body.update(Text("no service selected", style="dim"))
            return
        self.border_title = f"Events · {printable(service['id'])}"
        out = Text()
        health = service.get("health") or {}
        if health.get("check"):  # a healthcheck: its state, since when, what the last check said
            since = f" for {go_duration(now - health['last_change'])}" if health.get("last_change") else ""
            out.append(f"health ({printable(health['check'])}): {health_text(service)}{since}", style="italic")
            said = printable(health["last_message"]) if health.get("last_message") else ""
            out.append(f": {said}\n" if said else "\n", style="italic")
        elif health.get("last_message"):
            out.append(f"health: {printable(health['last_message'])}\n", style="italic")
        events = service.get("events") or []
        for i, e in enumerate(reversed(events)):
            if i:
                out.append("\n")
            out.append_text(event_line(e, now))
        if not events:
            out.append("<none>", style="dim")
        body.update(out)


class LogPane(RichLog):
    """The selected service's log. Lines arrive in bursts; they are kept in a buffer and
    written at most every 100 ms, so a service writing thousands of lines a second costs
    one render per flush. The last *max_lines* lines are kept (also to re-wrap them)."""

    def __init__(self, max_lines: int = 5000, **kw: Any):
        super().__init__(max_lines=max_lines, wrap=False, markup=False, highlight=False, **kw)
        self.kept: deque[str] = deque(maxlen=max_lines)
        self._pending: deque[str] = deque(maxlen=max_lines)

    def on_mount(self) -> None:
        self.set_interval(0.1, self.flush)

    def add_lines(self, lines: list[str]) -> None:
        self._pending.extend(lines)

    def reset(self, title: str) -> None:
        self.border_title = title
        self._pending.clear()
        self.kept.clear()
        self.clear()

    def flush(self) -> None:
        if not self._pending:
            return
        lines = list(self._pending)
        self._pending.clear()
        self.kept.extend(lines)
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        joined = "\n".join(lines).replace("\r", "")
        # One Text for the whole batch; ANSI colours decoded only when there are any (costly).
        text = Text.from_ansi(joined) if "\x1b" in joined else Text(joined)
        # Not wrapping: keep long lines whole, the pane scrolls sideways.
        self.write(text, shrink=self.wrap, expand=self.wrap)

    def toggle_wrap(self) -> None:
        self.wrap = not self.wrap
        self.clear()
        self._write(list(self.kept))


class ConfirmStop(ModalScreen[bool]):
    """``Stop ext-foo?`` with Stop / Cancel; y or Enter stops, n or Esc cancels."""

    BINDINGS = [Binding("y", "answer(True)", "Stop"), Binding("n,escape", "answer(False)", "Cancel")]

    def __init__(self, service_id: str):
        super().__init__()
        self.service_id = service_id

    def compose(self) -> ComposeResult:
        with Grid(id="confirm"):
            yield Label(Text(f"Stop {printable(self.service_id)}?\nIt stays stopped until started again (s)."), id="question")
            yield Button("Stop (y)", variant="error", id="yes")
            yield Button("Cancel (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
