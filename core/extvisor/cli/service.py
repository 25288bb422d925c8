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
    Where, all_items, answers, complete_service_id, each_answer, emit, finish, labelled, node_column, node_error,
    node_options, output_option, prefix, run,
)
from extvisor.client.format import go_duration, health_text, printable, table
from extvisor.shared import routes


@click.command()
@node_options
@output_option
def services(where: Where, output: str) -> None:
    """List services: [NODE] SERVICE STATE HEALTH LAST CHANGE LAST EVENT."""

    def go() -> None:
        fl = where.fleet()
        outcomes = fl.each(lambda c: c.call(routes.SERVICES))
        ok = answers(fl, outcomes)
        if output != "table":
            emit(all_items(fl, ok), output)
            return finish(outcomes)
        now = time.time()
        rows = []
        for o in ok:
            for s in o.value:
                last = s["events"][-1] if s["events"] else None
                change = f"{go_duration(now - last['ts'])} ago" if last else " ago"
                row = [s["id"], s["state"], health_text(s), change, last["msg"] if last else "<none>"]
                rows.append((o.target.label, row))
        if rows or not fl.remote:
            click.echo(table(node_column(fl, ["SERVICE", "STATE", "HEALTH", "LAST CHANGE", "LAST EVENT"], rows)))
        finish(outcomes)

    run(go)


def _service_rows(s: dict[str, Any], now: float) -> list[list[str]]:
    rows = [["ID", s["id"]], ["STATE", s["state"]], ["HEALTH", health_text(s)]]
    health = s.get("health") or {}
    if health.get("last_message"):
        rows.append(["LAST HEALTH MESSAGE", health["last_message"]])
    if health.get("last_change"):
        rows.append(["LAST HEALTH CHANGE", f"{go_duration(now - health['last_change'])} ago"])
    for i, c in enumerate(reversed(health.get("checks") or [])):  # the last five, newest first
        code = "timeout" if c.get("exit_code") is None else f"exit {c['exit_code']}"
        rows.append(["HEALTH CHECKS" if i == 0 else "",
                     f"{go_duration(now - c['time'])} ago: {code} in {c.get('duration', 0):.3f}s"])
        for line in (c.get("output") or "").rstrip("\n").splitlines():  # what it said (up to 4 KiB)
            rows.append(["", f"  | {line}"])
    for i, e in enumerate(reversed(s["events"])):
        rows.append(["EVENTS" if i == 0 else "", f"[{e['state']}]: {e['msg']} ({go_duration(now - e['ts'])} ago)"])
    return rows


@click.command()
@click.argument("service_id", shell_complete=complete_service_id)
@click.argument("action", required=False, default="status",
                type=click.Choice(["status", "start", "stop", "restart"]))  # fmt: skip
@node_options
@output_option
def service(service_id: str, action: str, where: Where, output: str) -> None:
    """Show one service with its events (newest first), or start, stop or restart it."""

    def go() -> None:
        fl = where.fleet()
        if action != "status":
            outcomes = fl.each(lambda c: c.call(routes.ACTION, service_id=service_id, action=action))
            ok = answers(fl, outcomes)
            if output != "table":
                emit(each_answer(fl, ok), output)
            elif ok or not fl.remote:
                head = ["RESPONSE"] if fl.remote else ["SERVICE", "RESPONSE"]
                rows = [(o.target.label, [o.value["message"]] if fl.remote else [service_id, o.value["message"]])
                        for o in ok]  # fmt: skip
                click.echo(table(node_column(fl, head, rows)))
            return finish(outcomes)
        outcomes = fl.each(lambda c: c.call(routes.SERVICE_ONE, service_id=service_id))
        ok = answers(fl, outcomes)
        if output != "table":
            emit(each_answer(fl, ok), output)
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
@node_options
def logs(service_id: str, follow: bool, tail: int, where: Where) -> None:
    """Print a service's log (its stdout and stderr); from several nodes, each line as `<node>: line`."""
    failed: list[str] = []
    params = {"tail": tail, "follow": follow}

    def go() -> None:
        fl = where.fleet()
        out = sys.stdout.buffer
        if not fl.remote:  # the bytes as they come: a service's own output is not ours to change
            for chunk in fl.targets[0].client.open(routes.LOGS, params, service_id=service_id):
                out.write(chunk)
                out.flush()
            return

        def lines(client):  # type: ignore[no-untyped-def]
            buf = b""
            for chunk in client.open(routes.LOGS, params, service_id=service_id):
                *complete, buf = (buf + chunk).split(b"\n")
                yield from complete
            if buf:
                yield buf

        def emit_line(t, line: bytes) -> None:  # type: ignore[no-untyped-def]
            out.write(prefix(fl, t).encode() + line + b"\n")
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


def _clock(ts: float) -> str:
    try:
        return time.strftime("%H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):  # a time no clock shows (a node's odd answer)
        return "--:--:--"


@click.command()
@click.option("-f", "--follow/--no-follow", default=True, help="Keep printing new events.")
@click.option("--tail", type=int, default=0, help="Replay this many past events first.")
@node_options
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def events(follow: bool, tail: int, where: Where, output: str) -> None:
    """Print every service's state changes as they happen (from several nodes: `<node>: ` first)."""
    failed: list[str] = []

    def go() -> None:
        fl = where.fleet()

        def show(t, e: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
            if output == "json":
                click.echo(json.dumps(labelled(fl, t, e)))
            else:
                stamp = _clock(e["ts"])
                text = f"{stamp} {e['service']} [{e['state']}]: {e['msg']}"
                click.echo(prefix(fl, t) + printable(text))

        def error(t, message: str) -> None:  # type: ignore[no-untyped-def]
            failed.append(t.label)
            node_error(t.label, message)

        if not fl.remote:  # the local daemon's failure is the command's: one line from run()
            for e in fl.targets[0].client.lines(routes.EVENTS, {"follow": follow, "tail": tail}):
                show(fl.targets[0], e)
            return
        fl.stream(lambda c: c.lines(routes.EVENTS, {"follow": follow, "tail": tail}), show, error)

    try:
        run(go)
    finally:
        if failed:
            sys.exit(1)


__all__ = ["services", "service", "logs", "events"]
