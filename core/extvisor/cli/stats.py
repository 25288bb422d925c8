"""``extvisor stats`` and ``extvisor processes``, in the shape of talosctl's.

Both take ``-n/--nodes`` like every client command: with nodes, a NODE column (a ``node``
key in json/yaml) and one stderr line per node that failed.
"""

from __future__ import annotations

import json
import sys
import time

import click

from extvisor.cli.common import (
    Where, all_items, answers, complete_service_id, emit, finish, node_column, node_options, output_option, run,
)
from extvisor.client.format import go_duration, human_bytes, table
from extvisor.client.nodes import Fleet
from extvisor.shared import routes

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: --watch redraws in place


def stats_table(fl: Fleet, items: list[dict]) -> str:
    rows = []
    for s in items:
        running = s["pid"] is not None
        rows.append((s.get("node", ""), [
            s["id"], s["state"], str(s["pid"] or "-"),
            f"{s['cpu_percent']:.1f}" if running else "-",
            f"{s['cpu_seconds']:.2f}s" if running else "-",
            human_bytes(s["memory_bytes"]) if running else "-",
            human_bytes(s["rss_bytes"]) if running else "-",
            str(s["processes"]), str(s["restarts"]),
            go_duration(s["uptime_seconds"]) if running else "-",
        ]))  # fmt: skip
    head = ["SERVICE", "STATE", "PID", "CPU%", "CPU TIME", "MEMORY", "RSS", "PROCS", "RESTARTS", "UPTIME"]
    return table(node_column(fl, head, rows))


def processes_table(fl: Fleet, items: list[dict]) -> str:
    rows = []
    for p in items:
        rows.append((p.get("node", ""), [
            p["service"], str(p["pid"]), p["state"], str(p["threads"]), f"{p['cpu_percent']:.1f}",
            f"{p['cpu_seconds']:.2f}s", human_bytes(p["rss_bytes"]), p["command"][:120],
        ]))  # fmt: skip
    return table(node_column(fl, ["SERVICE", "PID", "STATE", "THREADS", "CPU%", "CPU TIME", "RSS", "COMMAND"], rows))


def _gather(fl: Fleet, call, table_of):  # type: ignore[no-untyped-def]
    """Ask every node; the items (with ``node`` when remote), their table, and the outcomes."""
    outcomes = fl.each(call)
    items = all_items(fl, answers(fl, outcomes))
    return items, table_of(fl, items), outcomes


def _repeat(show, watch: bool, interval: float, output: str, title: str) -> None:  # type: ignore[no-untyped-def]
    """Print once, or with --watch again every *interval*: tables in place, json one line each."""
    while True:
        data, text, outcomes = show()
        if output == "json" and watch:
            click.echo(json.dumps(data))
        elif output != "table":
            emit(data, output)
        elif watch:
            stamp = time.strftime("%H:%M:%S")
            sys.stdout.write(f"{CLEAR}Every {interval:g}s: {title}   {stamp}\n\n{text}\n")
            sys.stdout.flush()
        else:
            click.echo(text)
        if not watch:
            return finish(outcomes)
        time.sleep(interval)


@click.command()
@click.option("-w", "--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")  # fmt: skip
@node_options
@output_option
def stats(watch: bool, interval: float, where: Where, output: str) -> None:
    """Each service's CPU (percent of one core, seconds), memory, processes, restarts, uptime."""

    def go() -> None:
        fl = where.fleet()

        def show():  # type: ignore[no-untyped-def]
            return _gather(fl, lambda c: c.call(routes.STATS_ALL), stats_table)

        _repeat(show, watch, interval, output, "extvisor stats")

    run(go)


@click.command()
@click.argument("service_id", required=False, shell_complete=complete_service_id)
@click.option("-s", "--sort", type=click.Choice(["service", "cpu", "rss"]), default="service", show_default=True)
@click.option("-w", "--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True)
@node_options
@output_option
def processes(service_id: str | None, sort: str, watch: bool, interval: float, where: Where, output: str) -> None:
    """The processes of one service, or of every service: host PID, state, CPU, memory, command."""

    def go() -> None:
        fl = where.fleet()
        params = {"service": service_id} if service_id else None
        key = {"service": lambda p: (p["service"], p["pid"]), "cpu": lambda p: -p["cpu_percent"],
               "rss": lambda p: -p["rss_bytes"]}[sort]  # fmt: skip

        def show():  # type: ignore[no-untyped-def]
            items, _, outcomes = _gather(fl, lambda c: c.call(routes.PROCESSES, params), processes_table)
            items = sorted(items, key=key)
            return items, processes_table(fl, items), outcomes

        _repeat(show, watch, interval, output, f"extvisor processes {service_id or ''}".rstrip())

    run(go)


__all__ = ["stats", "processes"]
