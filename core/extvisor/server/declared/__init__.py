"""A declared node, in the daemon: the one engine that plans, applies and rolls back.

Holds what the node keeps on disk (``files``: generations, the apply in progress, the last
attempt), what a file would change and the drift (``plan``), the engine (``engine``: pull and
check first, switch, restart only what changed, wait for the services, roll back on its own,
converge at start; the convergence itself in ``boot``), the health gate it waits on (``gate``), the ImageVerificationConfig its
images are checked under (``policy``) and its API routes (``routes``). The CLI only sends the
document and orchestrates waves across nodes; a node pulling its own document (issue 29)
calls the same engine from the daemon.

May import: ``extvisor.runtime``, ``extvisor.extensions``, ``extvisor.remote``,
``extvisor.documents`` and the plugin surface (as the rest of ``extvisor.server``).
"""
