"""The ``extvisor`` command: one module per command group, each thin.

``main`` is the group and its table of commands, loaded lazily; ``documents`` (validate,
schema, plugins), ``daemon``, ``service`` (services, service, logs, events),
``dashboard`` and ``dev``. A command parses its options and prints; the work is in the
part it calls.

May import: everything below it (dashboard, devmode, server, client, runtime, spec, ...).
Nothing imports the CLI.
"""

from extvisor.cli.main import main

__all__ = ["main"]
