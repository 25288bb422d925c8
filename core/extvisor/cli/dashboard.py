"""``extvisor dashboard``: the terminal UI (needs the ``dashboard`` extra: Textual)."""

from __future__ import annotations

import click

from extvisor.cli.common import Where, node_options, run
from extvisor.client.http import default_socket
from extvisor.dashboard import DashboardApp
from extvisor.dashboard.feed import Feed


@click.command()
@node_options
def dashboard(where: Where) -> None:
    """Watch and drive the services, live: states, events, logs; start, stop, restart.

    Keys: ↑/↓ or j/k move, s start, x stop (asks first), r restart, / filter by name or
    state (Esc clears), w wrap log lines, q quit. With several nodes (-n a,b,c): h/l or
    ←/→ switch node. The mouse works too.
    """
    fl = run(where.fleet)
    if not fl.remote:
        DashboardApp(where.socket_path or default_socket()).run()
        return
    feeds = [(t.label, Feed.node(t.node.url, t.client.address.ssl)) for t in fl.targets if t.node is not None]
    DashboardApp(nodes=feeds).run()
