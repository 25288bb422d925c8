"""The ``extvisor`` command: one module per command group, each thin.

Holds the group and its table of commands, loaded lazily (``main``); the options and output
shared by the client commands, local or ``-n`` nodes (``common``); ``documents`` (validate,
schema, plugins), ``daemon``, ``service`` (services, service, logs, events), ``stats``
(stats, processes), ``extensions`` (with ``build``: extensions build), ``declared`` (apply, diff,
applied, rollback), ``remote`` (gen ca|server, config), ``publish`` (a declared state pushed to a
registry for nodes that follow it), ``dashboard`` and ``dev``. A command parses its options and
prints; the work is in the part it calls.

May import: every other part (``extvisor.dashboard``, ``extvisor.devmode``,
``extvisor.server``, ``extvisor.client``, ``extvisor.runtime``, ``extvisor.extensions``,
``extvisor.remote``, ``extvisor.shared``, ``extvisor.oci``, ``extvisor.plugins``,
``extvisor.documents``) and the plugin surface. Nothing imports the CLI.
"""

from extvisor.cli.main import main

__all__ = ["main"]
