"""Options and output shared by the client commands."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from extvisor.client.http import ClientError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from extvisor.client.nodes import Fleet, Outcome

socket_option = click.option(
    "--socket", "socket_path", envvar="EXTVISOR_SOCKET", default=None,
    help="The daemon's API socket [env EXTVISOR_SOCKET; default /run/extvisor/extvisor.sock].",
)  # fmt: skip
output_option = click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")


def node_options(fn):  # type: ignore[no-untyped-def]
    """``-n/--nodes``, ``-e/--endpoints``, ``--context``, ``--config``: which daemons (docs/remote.md)."""
    for option in reversed([
        click.option("-n", "--nodes", "nodes", multiple=True, metavar="HOST[:PORT][,...]",
                     help="Nodes to run the command on, all at once [default: the context's]."),
        click.option("-e", "--endpoints", "endpoints", multiple=True, metavar="HOST[:PORT][,...]",
                     help="Replace the context's endpoints (the nodes when none are given)."),
        click.option("--context", "context", default=None, help="Use this context of the client configuration."),
        click.option("--config", "config_file", default=None, metavar="FILE",
                     help="Client configuration [env EXTVISOR_CONFIG; default ~/.extvisor/config]."),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


def node_error(label: str, message: str) -> None:
    """One line on stderr naming the node that failed."""
    click.echo(f"error: {label}: {message}", err=True)


def answers(fl: Fleet, outcomes: list[Outcome]) -> list[Outcome]:
    """The outcomes that succeeded; each failure said on stderr. The local socket alone fails as before."""
    if not fl.remote:
        if outcomes[0].error is not None:
            raise ClientError(outcomes[0].error)
        return outcomes
    for o in outcomes:
        if o.error is not None:
            node_error(o.target.label, o.error)
    return [o for o in outcomes if o.error is None]


def finish(outcomes: list[Outcome]) -> None:
    if any(o.error is not None for o in outcomes):
        sys.exit(1)


def with_node(label: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"node": label, **item}


def emit(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml  # only for -o yaml: PyYAML costs more than the rest of a call

        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


def run(fn):  # type: ignore[no-untyped-def]
    """Turn client errors into one line on stderr and exit code 1, never a traceback."""
    try:
        return fn()
    except ClientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def complete_service_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion: the ids of the running daemon's services (nothing if it is not there)."""
    from click.shell_completion import CompletionItem

    from extvisor.client.http import Client

    socket_path = ctx.params.get("socket_path")
    try:
        items = Client(socket_path, timeout=2).services()
    except (ClientError, OSError):
        return []
    return [CompletionItem(s["id"], help=s.get("state")) for s in items if s["id"].startswith(incomplete)]
