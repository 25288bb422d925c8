"""The runtime: services running in one process, independent of how anyone talks to it.

Holds the supervisor (every service, ordering, cycles, shutdown order, event stream),
one service's life (``service``: conditions, launch, restart policy, stop), what a
service needs from its supervisor (``host``: a Protocol), waiting for several
conditions (``waitall``), host services, ExtensionServiceConfig at run time
(``configstore``, ``envfile``) and log files (``logs``).

May import: ``extvisor.oci``, ``extvisor.documents`` and the plugin-facing modules.
Never the server, the client, the CLI or the dashboard.
"""
