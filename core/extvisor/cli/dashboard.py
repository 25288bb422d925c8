"""``extvisor dashboard``: the terminal UI (needs the ``dashboard`` extra: Textual)."""

from __future__ import annotations

import click

from extvisor.client.http import default_socket
from extvisor.dashboard import DashboardApp


@click.command()
@click.option("--socket", "socket_path", envvar="EXTVISOR_SOCKET", default=None,
              help="The daemon's API socket [env EXTVISOR_SOCKET; default /run/extvisor/extvisor.sock].")  # fmt: skip
def dashboard(socket_path: str | None) -> None:
    """Watch and drive the services, live: states, events, logs; start, stop, restart.

    Keys: ↑/↓ or j/k move, s start, x stop (asks first), r restart, / filter by name or
    state (Esc clears), w wrap log lines, q quit. The mouse works too.
    """
    DashboardApp(socket_path or default_socket()).run()
