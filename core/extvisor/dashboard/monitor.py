"""Talos's dashboard screens beyond the services table: the host line of F1 Summary and
the F2 Monitor screen (CPU and memory over time per service, the selected one's processes).

Both poll the selected node's API every couple of seconds (``/v1/stats...``), so they work
the same for the local daemon and for a remote node. The daemon samples while anyone reads
its figures (the header's host line does, every 2 s), so the charts hold the history since
the dashboard opened.
"""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from rich.text import Text
from textual.widgets import DataTable, Footer, Label, Static

from extvisor.client.format import go_duration, human_bytes
from extvisor.shared import routes

POLL = 2.0


def host_text(host: dict[str, Any] | None) -> str:
    """``CPU 37% of 2 · MEM 1.2 GiB/23.5 GiB · LOAD 1.81 1.02 0.59 · UP 14m24s``."""
    if not host:
        return "host: -"
    load = " ".join(f"{x:.2f}" for x in host.get("load", []))
    return (f"CPU {host['cpu_percent']:.0f}% of {host['cpus']} · MEM {human_bytes(host['memory_used_bytes'])}"
            f"/{human_bytes(host['memory_total_bytes'])} · LOAD {load} · UP {go_duration(host['uptime_seconds'])}")


class HostLine(Static):
    """The host's CPU, memory, load and uptime, under the Summary header; polls by itself."""

    DEFAULT_CSS = "HostLine { height: 1; padding: 0 1; color: $text-muted; }"

    def on_mount(self) -> None:
        self.update("host: -")
        self.set_interval(POLL, self.poll)
        self.call_later(self.poll)

    async def poll(self) -> None:
        try:
            host = await self.app.feed.call(routes.STATS_HOST)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001  (daemon down: the banner says so)
            host = None
        self.update(host_text(host))


BLOCKS = " ▁▂▃▄▅▆▇█"


class Bars(Static):
    """Values as bars two rows high, on a fixed scale from 0 (Textual's Sparkline scales each
    chart to its own minimum and maximum, so an idle service's flat 0.1 % drew full bars)."""

    def __init__(self, ceiling: float | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.ceiling = ceiling  # None: the largest value shown
        self.values: list[float] = []

    def show(self, values: list[float]) -> None:
        self.values = values
        self.refresh()

    def render(self) -> Text:
        width = max(self.size.width, 1)
        values = self.values[-width:]
        top = max(self.ceiling or 0.0, max(values, default=0.0)) or 1.0
        rows = ["", ""]
        for v in values:
            level = round(max(v, 0.0) / top * 16)
            rows[1] += BLOCKS[min(level, 8)]
            rows[0] += BLOCKS[max(level - 8, 0)]
        return Text("\n".join(r.rjust(width) for r in rows), style="green")


class Chart(Horizontal):
    """One service: name, CPU sparkline and figure, memory sparkline and figure."""

    DEFAULT_CSS = """
    Chart { height: 2; }
    Chart.selected { background: $accent 30%; }
    Chart > .name { width: 16; }
    Chart > Bars { width: 1fr; height: 2; }
    Chart > .figure { width: 10; text-align: right; padding-right: 1; }
    """

    def __init__(self, sid: str):
        super().__init__(id=f"chart-{sid}")
        self.sid = sid

    def compose(self) -> ComposeResult:
        yield Label(self.sid, classes="name")
        yield Bars(ceiling=100.0, id="cpu")  # percent of one core: 100 is one busy core
        yield Label("-", id="cpu-figure", classes="figure")
        yield Bars(id="mem")
        yield Label("-", id="mem-figure", classes="figure")

    def show(self, points: list[list[float]], item: dict[str, Any] | None) -> None:
        cpu = [p[1] for p in points] or [0.0]
        mem = [float(p[2]) for p in points] or [0.0]
        self.query_one("#cpu", Bars).show(cpu)
        self.query_one("#mem", Bars).show(mem)
        running = bool(item and item.get("pid"))
        self.query_one("#cpu-figure", Label).update(f"{item['cpu_percent']:.1f}%" if running else "-")  # type: ignore[index]
        self.query_one("#mem-figure", Label).update(human_bytes(item["memory_bytes"]) if running else "-")  # type: ignore[index]


class MonitorScreen(Screen[None]):
    """F2: CPU (percent of a core) and working-set memory over time, processes of the selected."""

    BINDINGS = [
        Binding("f1", "app.summary", "Summary"),
        Binding("j", "move(1)", "Move", key_display="↑↓/jk"),
        Binding("down", "move(1)", "Down", show=False),
        Binding("k", "move(-1)", "Up", show=False),
        Binding("up", "move(-1)", "Up", show=False),
        Binding("q", "app.quit", "Quit"),
    ]
    DEFAULT_CSS = """
    MonitorScreen #title { height: 1; padding: 0 1; background: $primary-background; }
    MonitorScreen #legend { height: 1; padding: 0 1; color: $text-muted; }
    MonitorScreen #charts { height: 1fr; min-height: 4; }
    MonitorScreen #processes { height: 9; border-top: solid $primary; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self.order: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("Monitor", id="title")
        yield Static("SERVICE          CPU % of one core over time          MEMORY (working set)", id="legend")
        yield VerticalScroll(id="charts")
        table: DataTable[str] = DataTable(id="processes", cursor_type="none", zebra_stripes=True)
        table.add_columns("PID", "STATE", "CPU%", "RSS", "COMMAND")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(POLL, self.poll)
        self.call_later(self.poll)

    def action_move(self, step: int) -> None:
        if not self.order:
            return
        i = self.order.index(self.selected) if self.selected in self.order else 0
        self.selected = self.order[(i + step) % len(self.order)]
        self._mark()
        self.call_later(self.poll)

    def _mark(self) -> None:
        for chart in self.query(Chart):
            chart.set_class(chart.sid == self.selected, "selected")
            if chart.sid == self.selected:
                chart.scroll_visible()

    async def poll(self) -> None:
        feed = self.app.feed  # type: ignore[attr-defined]
        title = self.query_one("#title", Static)
        label = getattr(getattr(self.app, "view", None), "label", "")
        try:
            width = max(10, (self.size.width - 36) // 2)
            history = await feed.call(routes.STATS_HISTORY, {"points": width})
            items = {i["id"]: i for i in await feed.call(routes.STATS_ALL)}
            host = await feed.call(routes.STATS_HOST)
        except Exception as exc:  # noqa: BLE001
            title.update(f"Monitor{' · node ' + label if label else ''} · daemon unreachable: {exc}")
            return
        title.update(f"Monitor{' · node ' + label if label else ''} · {host_text(host)} · "
                     f"{time.strftime('%H:%M:%S')}")  # fmt: skip
        charts = self.query_one("#charts", VerticalScroll)
        order = sorted(items)
        if order != self.order:
            await charts.remove_children()
            await charts.mount_all([Chart(sid) for sid in order])
            self.order = order
        if self.selected not in order:
            self.selected = order[0] if order else None
        for chart in self.query(Chart):
            chart.show(history["services"].get(chart.sid, []), items.get(chart.sid))
        self._mark()
        await self.show_processes(feed)

    async def show_processes(self, feed: Any) -> None:
        table = self.query_one("#processes", DataTable)
        table.border_title = f"Processes of {self.selected}" if self.selected else "Processes"
        procs = []
        if self.selected:
            try:
                procs = await feed.call(routes.PROCESSES, {"service": self.selected})
            except Exception:  # noqa: BLE001  (the service went away between two polls)
                procs = []
        table.clear()
        for p in sorted(procs, key=lambda p: p["pid"]):
            table.add_row(str(p["pid"]), p["state"], f"{p['cpu_percent']:.1f}", human_bytes(p["rss_bytes"]),
                          p["command"])  # fmt: skip
