"""Options and output shared by the client commands.

Every client command takes the same options for where it goes (:func:`node_options`:
``--socket``, ``-n``, ``-e``, ``--context``, ``--config``) as one :class:`Where`, and says
what the nodes answered through the helpers below, which add the node (a NODE column, a
``node`` key, ``<node>: `` before a line) whenever nodes were named, and nothing otherwise.
What a node sends is shown with its control characters replaced (``client.format.printable``).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from extvisor.client.format import printable
from extvisor.client.http import ClientError
from extvisor.shared import defaults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from extvisor.client.nodes import Fleet, Outcome, Target

output_option = click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")

_WHERE = [
    click.option("--socket", "socket_path", envvar=defaults.SOCKET_ENV, default=None,
                 help=f"The daemon's API socket [env {defaults.SOCKET_ENV}; default {defaults.SOCKET}]."),
    click.option("-n", "--nodes", "nodes", multiple=True, metavar="HOST[:PORT][,...]",
                 help="Nodes to run the command on, all at once [default: the context's]."),
    click.option("-e", "--endpoints", "endpoints", multiple=True, metavar="HOST[:PORT][,...]",
                 help="Replace the context's endpoints (the nodes when none are given)."),
    click.option("--context", "context", default=None, help="Use this context of the client configuration."),
    click.option("--config", "config_file", default=None, metavar="FILE",
                 help="Client configuration [env EXTVISOR_CONFIG; default ~/.extvisor/config]."),
]  # fmt: skip


class Where:
    """The daemons a command goes to, as its options say (docs/remote.md)."""

    def __init__(self, socket_path: str | None = None, nodes: tuple[str, ...] = (), endpoints: tuple[str, ...] = (),
                 context: str | None = None, config_file: str | None = None):  # fmt: skip
        self.socket_path = socket_path
        self.nodes = nodes
        self.endpoints = endpoints
        self.context = context
        self.config_file = config_file

    def over(self, outer: Where | None) -> Where:
        """These options, each left out taken from *outer* (a group's, for its subcommand)."""
        if outer is None:
            return self
        return Where(self.socket_path or outer.socket_path, self.nodes or outer.nodes,
                     self.endpoints or outer.endpoints, self.context or outer.context,
                     self.config_file or outer.config_file)  # fmt: skip

    def fleet(self, timeout: float = defaults.CLIENT_TIMEOUT) -> Fleet:
        from extvisor.client.nodes import fleet

        return fleet(self.socket_path, self.config_file, self.context, self.nodes, self.endpoints, timeout)


def node_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--socket``, ``-n/--nodes``, ``-e/--endpoints``, ``--context``, ``--config``, passed as ``where``."""

    @functools.wraps(fn)
    def with_where(*args: Any, socket_path: str | None, nodes: tuple[str, ...], endpoints: tuple[str, ...],
                   context: str | None, config_file: str | None, **kw: Any) -> Any:  # fmt: skip
        return fn(*args, where=Where(socket_path, nodes, endpoints, context, config_file), **kw)

    for option in reversed(_WHERE):
        with_where = option(with_where)
    return with_where


# -- what the nodes answered -------------------------------------------------------------


def node_error(label: str, message: str) -> None:
    """One line on stderr naming the node that failed."""
    click.echo(f"error: {printable(label)}: {printable(message)}", err=True)


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
    return {"node": label, **item, "node": label}  # first, and a node cannot answer for another


def labelled(fl: Fleet, target: Target, item: dict[str, Any]) -> dict[str, Any]:
    """One node's item: with its ``node`` key when nodes were named."""
    return with_node(target.label, item) if fl.remote else item


def each_answer(fl: Fleet, ok: list[Outcome]) -> Any:
    """Every node's answer, each with its ``node`` key; the local daemon's as it is."""
    return [with_node(o.target.label, o.value) for o in ok] if fl.remote else ok[0].value


def all_items(fl: Fleet, ok: list[Outcome]) -> list[dict[str, Any]]:
    """The items of every node's list, each with its ``node`` key; the local daemon's list as it is."""
    return [with_node(o.target.label, i) for o in ok for i in o.value] if fl.remote else ok[0].value


def prefix(fl: Fleet, target: Target) -> str:
    """``<node>: `` before a line from one node when nodes were named."""
    return f"{printable(target.label)}: " if fl.remote else ""


def node_column(fl: Fleet, header: list[str], rows: list[tuple[str, list[str]]]) -> list[list[str]]:
    """A table's rows (label, cells) under *header*, with a NODE column first when nodes were named."""
    if not fl.remote:
        return [header, *(cells for _, cells in rows)]
    return [["NODE", *header], *([label, *cells] for label, cells in rows)]


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
        click.echo(f"error: {printable(str(exc))}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def complete_service_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion: the ids of the running daemon's services (nothing if it is not there)."""
    from click.shell_completion import CompletionItem

    from extvisor.client.http import Client

    socket_path = ctx.params.get("socket_path")
    try:
        items = Client(socket_path, timeout=defaults.COMPLETION_TIMEOUT).services()
    except (ClientError, OSError):
        return []
    return [CompletionItem(s["id"], help=s.get("state")) for s in items if s["id"].startswith(incomplete)]
