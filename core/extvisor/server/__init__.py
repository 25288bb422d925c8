"""The server: the daemon process and its HTTP API, on the Unix socket and over TLS.

Holds the daemon (``daemon``: wiring of plugins, backend, supervisor and API, signals,
crash recovery), what it holds on disk while it runs (``files``: the lock, the socket, and
``private_dir`` for a directory no other user may change), its
own log (``logfmt``), systemd readiness (``notify``), API sockets passed in and handed on
to an upgraded daemon (``handoff``), what makes its start fast (``startup``), the FastAPI application and its
service routes (``api``), the stats routes and ``/metrics`` (``metrics``, ``prometheus``),
the host's addresses for ``/v1/daemon`` (``netaddr``), installed extensions in a running
daemon and their routes (``extensions``, ``routes_extensions``), a declared node's engine
and routes (``declared``: apply, diff, rollback, generations), a node following a declared
state published in a registry (``follow``: the loop; ``routes_follow``: its status, its refusal
of hand changes, its metrics), and the TLS listener with its role check (``remote``) and its
accepting within limits (``listener``).

May import: ``extvisor.runtime``, ``extvisor.extensions``, ``extvisor.remote``,
``extvisor.shared`` (the route table it serves, the defaults), ``extvisor.oci``,
``extvisor.plugins``, ``extvisor.documents`` and the plugin surface. Never
``extvisor.client``, ``extvisor.cli``, ``extvisor.dashboard`` or ``extvisor.devmode``.
"""
