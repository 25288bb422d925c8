"""The server: the daemon process and its HTTP API.

Holds the daemon (``daemon``: wiring of plugins, backend, supervisor and API, the lock,
signals, crash recovery, its own log) and the FastAPI application (``api``).

May import: ``extvisor.runtime``, ``extvisor.extensions``, ``extvisor.remote``,
``extvisor.oci``, ``extvisor.documents`` and the plugin-facing modules. Never the client,
the CLI, the dashboard or dev mode.
"""
