"""Client commands in talosctl's shape: services, service ID [action], logs, events."""

from __future__ import annotations

import json
import sys
import time

import click

from extvisor.cli.common import complete_service_id, emit, output_option, run, socket_option
from extvisor.client.format import go_duration, health_text, table
from extvisor.client.http import Client

@click.command()
@socket_option
@output_option
def services(socket_path: str | None, output: str) -> None:
    """List services: SERVICE STATE HEALTH LAST CHANGE LAST EVENT."""

    def go() -> None:
        items = Client(socket_path).services()
        if output != "table":
            return emit(items, output)
        rows = [["SERVICE", "STATE", "HEALTH", "LAST CHANGE", "LAST EVENT"]]
        now = time.time()
        for s in items:
            last = s["events"][-1] if s["events"] else None
            change = f"{go_duration(now - last['ts'])} ago" if last else " ago"
            rows.append([s["id"], s["state"], health_text(s), change, last["msg"] if last else "<none>"])
        click.echo(table(rows))

    run(go)


@click.command()
@click.argument("service_id", shell_complete=complete_service_id)
@click.argument("action", required=False, default="status",
                type=click.Choice(["status", "start", "stop", "restart"]))  # fmt: skip
@socket_option
@output_option
def service(service_id: str, action: str, socket_path: str | None, output: str) -> None:
    """Show one service with its events (newest first), or start, stop or restart it."""

    def go() -> None:
        client = Client(socket_path)
        if action != "status":
            result = client.action(service_id, action)
            if output != "table":
                return emit(result, output)
            return click.echo(table([["SERVICE", "RESPONSE"], [service_id, result["message"]]]))
        s = client.service(service_id)
        if output != "table":
            return emit(s, output)
        now = time.time()
        rows = [["ID", s["id"]], ["STATE", s["state"]], ["HEALTH", health_text(s)]]
        if s.get("health", {}).get("last_message"):
            rows.append(["LAST HEALTH MESSAGE", s["health"]["last_message"]])
        for i, e in enumerate(reversed(s["events"])):
            rows.append(["EVENTS" if i == 0 else "", f"[{e['state']}]: {e['msg']} ({go_duration(now - e['ts'])} ago)"])
        click.echo(table(rows))

    run(go)


@click.command()
@click.argument("service_id", shell_complete=complete_service_id)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output.")
@click.option("--tail", type=int, default=-1, show_default=True, help="Lines from the end (-1: all kept).")
@socket_option
def logs(service_id: str, follow: bool, tail: int, socket_path: str | None) -> None:
    """Print a service's log (its stdout and stderr)."""

    def go() -> None:
        out = sys.stdout.buffer
        for chunk in Client(socket_path).logs(service_id, tail=tail, follow=follow):
            out.write(chunk)
            out.flush()

    run(go)


@click.command()
@click.option("-f", "--follow/--no-follow", default=True, help="Keep printing new events.")
@click.option("--tail", type=int, default=0, help="Replay this many past events first.")
@socket_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def events(follow: bool, tail: int, socket_path: str | None, output: str) -> None:
    """Print every service's state changes as they happen."""

    def go() -> None:
        for e in Client(socket_path).events(follow=follow, tail=tail):
            if output == "json":
                click.echo(json.dumps(e))
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
                click.echo(f"{stamp} {e['service']} [{e['state']}]: {e['msg']}")

    run(go)


__all__ = ["services", "service", "logs", "events"]
