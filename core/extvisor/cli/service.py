"""Client commands in talosctl's shape: services, service ID [action], logs, events.

Each takes ``-n/--nodes`` (and ``-e``, ``--context``, ``--config``) and then runs on every
node at once (client.nodes). With several nodes, or any node named, output says which node
each line is from: a NODE column, a ``node`` key in json/yaml, ``<node>: `` before log lines.
A node that fails gets one line on stderr and the exit code is 1; the others' output stands.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from extvisor.cli.common import (
    answers, complete_service_id, emit, finish, node_error, node_options, output_option, run, socket_option, with_node,
)
from extvisor.client.format import go_duration, health_text, table
from extvisor.client.nodes import fleet


@click.command()
@socket_option
@node_options
@output_option
def services(socket_path: str | None, nodes: tuple[str, ...], endpoints: tuple[str, ...], context: str | None,
             config_file: str | None, output: str) -> None:  # fmt: skip
    """List services: [NODE] SERVICE STATE HEALTH LAST CHANGE LAST EVENT."""

    def go() -> None:
        fl = fleet(socket_path, config_file, context, nodes, endpoints)
        outcomes = fl.each(lambda c: c.services())
        ok = answers(fl, outcomes)
        rows_of = [(o.target.label, s) for o in ok for s in o.value]
        if output != "table":
            emit([with_node(label, s) for label, s in rows_of] if fl.remote else ok[0].value, output)
            return finish(outcomes)
        header = ["SERVICE", "STATE", "HEALTH", "LAST CHANGE", "LAST EVENT"]
        rows = [["NODE", *header] if fl.remote else header]
        now = time.time()
        for label, s in rows_of:
            last = s["events"][-1] if s["events"] else None
            change = f"{go_duration(now - last['ts'])} ago" if last else " ago"
            row = [s["id"], s["state"], health_text(s), change, last["msg"] if last else "<none>"]
            rows.append([label, *row] if fl.remote else row)
        if len(rows) > 1 or not fl.remote:
            click.echo(table(rows))
        finish(outcomes)

    run(go)


def _service_rows(s: dict[str, Any], now: float) -> list[list[str]]:
    rows = [["ID", s["id"]], ["STATE", s["state"]], ["HEALTH", health_text(s)]]
    if s.get("health", {}).get("last_message"):
        rows.append(["LAST HEALTH MESSAGE", s["health"]["last_message"]])
    for i, e in enumerate(reversed(s["events"])):
        rows.append(["EVENTS" if i == 0 else "", f"[{e['state']}]: {e['msg']} ({go_duration(now - e['ts'])} ago)"])
    return rows


@click.command()
@click.argument("service_id", shell_complete=complete_service_id)
@click.argument("action", required=False, default="status",
                type=click.Choice(["status", "start", "stop", "restart"]))  # fmt: skip
@socket_option
@node_options
@output_option
def service(service_id: str, action: str, socket_path: str | None, nodes: tuple[str, ...], endpoints: tuple[str, ...],
            context: str | None, config_file: str | None, output: str) -> None:  # fmt: skip
    """Show one service with its events (newest first), or start, stop or restart it."""

    def go() -> None:
        fl = fleet(socket_path, config_file, context, nodes, endpoints)
        if action != "status":
            outcomes = fl.each(lambda c: c.action(service_id, action))
            ok = answers(fl, outcomes)
            if output != "table":
                emit([with_node(o.target.label, o.value) for o in ok] if fl.remote else ok[0].value, output)
            elif fl.remote:
                if ok:
                    click.echo(table([["NODE", "RESPONSE"], *[[o.target.label, o.value["message"]] for o in ok]]))
            else:
                click.echo(table([["SERVICE", "RESPONSE"], [service_id, ok[0].value["message"]]]))
            return finish(outcomes)
        outcomes = fl.each(lambda c: c.service(service_id))
        ok = answers(fl, outcomes)
        if output != "table":
            emit([with_node(o.target.label, o.value) for o in ok] if fl.remote else ok[0].value, output)
            return finish(outcomes)
        now = time.time()
        rows: list[list[str]] = []
        for o in ok:
            rows += ([["NODE", o.target.label]] if fl.remote else []) + _service_rows(o.value, now)
        if rows:
            click.echo(table(rows))
        finish(outcomes)

    run(go)


@click.command()
@click.argument("service_id", shell_complete=complete_service_id)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output.")
@click.option("--tail", type=int, default=-1, show_default=True, help="Lines from the end (-1: all kept).")
@socket_option
@node_options
def logs(service_id: str, follow: bool, tail: int, socket_path: str | None, nodes: tuple[str, ...],
         endpoints: tuple[str, ...], context: str | None, config_file: str | None) -> None:  # fmt: skip
    """Print a service's log (its stdout and stderr); from several nodes, each line as `<node>: line`."""
    failed: list[str] = []

    def go() -> None:
        fl = fleet(socket_path, config_file, context, nodes, endpoints)
        out = sys.stdout.buffer
        if not fl.remote:
            for chunk in fl.targets[0].client.logs(service_id, tail=tail, follow=follow):
                out.write(chunk)
                out.flush()
            return

        def lines(client):  # type: ignore[no-untyped-def]
            buf = b""
            for chunk in client.logs(service_id, tail=tail, follow=follow):
                *complete, buf = (buf + chunk).split(b"\n")
                yield from complete
            if buf:
                yield buf

        def emit_line(t, line: bytes) -> None:  # type: ignore[no-untyped-def]
            out.write(t.label.encode() + b": " + line + b"\n")
            out.flush()

        def error(t, message: str) -> None:  # type: ignore[no-untyped-def]
            failed.append(t.label)
            node_error(t.label, message)

        fl.stream(lines, emit_line, error)

    try:
        run(go)
    finally:
        if failed:
            sys.exit(1)


@click.command()
@click.option("-f", "--follow/--no-follow", default=True, help="Keep printing new events.")
@click.option("--tail", type=int, default=0, help="Replay this many past events first.")
@socket_option
@node_options
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def events(follow: bool, tail: int, socket_path: str | None, nodes: tuple[str, ...], endpoints: tuple[str, ...],
           context: str | None, config_file: str | None, output: str) -> None:  # fmt: skip
    """Print every service's state changes as they happen (from several nodes: `<node>: ` first)."""
    failed: list[str] = []

    def go() -> None:
        fl = fleet(socket_path, config_file, context, nodes, endpoints)

        def show(t, e: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
            if output == "json":
                click.echo(json.dumps(with_node(t.label, e) if fl.remote else e))
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
                prefix = f"{t.label}: " if fl.remote else ""
                click.echo(f"{prefix}{stamp} {e['service']} [{e['state']}]: {e['msg']}")

        if not fl.remote:
            for e in fl.targets[0].client.events(follow=follow, tail=tail):
                show(fl.targets[0], e)
            return

        def error(t, message: str) -> None:  # type: ignore[no-untyped-def]
            failed.append(t.label)
            node_error(t.label, message)

        fl.stream(lambda c: c.events(follow=follow, tail=tail), show, error)

    try:
        run(go)
    finally:
        if failed:
            sys.exit(1)


__all__ = ["services", "service", "logs", "events"]
