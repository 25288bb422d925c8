"""The runtime: services running in one process, independent of how anyone talks to it.

Holds the supervisor (``supervisor``: every service, ordering, cycles, shutdown order, event
stream), one service's life (``service``: conditions, launch, restart policy, stop), what a
service needs from its supervisor (``host``: a Protocol), waiting for several conditions
(``waitall``), health checks (``health``: one service's checks and health; ``probes``: exec,
tcp, http and the notify socket), host services (``hostservices``), ExtensionServiceConfig at run time
(``configstore``, ``envfile``), log files and reading their tails (``logs``, ``logread``),
what each service costs (``stats``) and what a daemon records for the next to adopt
(``adoption``).

May import: ``extvisor.shared`` (the defaults), ``extvisor.oci``, ``extvisor.plugins``,
``extvisor.documents`` and the plugin surface. Never ``extvisor.server``, ``extvisor.client``,
``extvisor.cli``, ``extvisor.dashboard``, ``extvisor.extensions`` or ``extvisor.remote``.
"""
