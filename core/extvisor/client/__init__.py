"""The client: talking to daemons' APIs and showing what they answer.

Holds HTTP/1.1 over a Unix socket or TCP with TLS (``wire``), the API client the CLI and
scripts use (``http``: each call a route of ``extvisor.shared.routes``, its answer checked
against the route's shape), followed streams that resume across daemon restarts
(``resume``), many nodes at once, called in parallel (``nodes``), a declared node's calls
and waves across nodes (``declared``) and the plain-text formatting shared by the CLI and
the dashboard (``format``, control characters shown). It must stay light, so that a CLI
call answers fast.

May import: ``extvisor.remote``, ``extvisor.shared`` (the route table, the defaults),
``extvisor.documents`` and the plugin surface. Never ``extvisor.server``, ``extvisor.runtime``,
``extvisor.extensions``, ``extvisor.oci`` or ``extvisor.plugins`` (no FastAPI, uvicorn,
pydantic, runtime or backend behind a CLI call).
"""

from extvisor import _moved

_MOVED = {"Client": "extvisor.client.http", "ClientError": "extvisor.client.http", "default_socket": "extvisor.client.http"}


# 0.1's ``extvisor.client`` was one module; its names stay here, deprecated, for a release.
__getattr__ = _moved.names("extvisor.client", _MOVED)
