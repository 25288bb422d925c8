"""The client: talking to a daemon's API and showing what it answers.

Holds the HTTP client (``http``) and the plain-text formatting shared by the CLI and the
dashboard (``format``). It must stay light: it never imports the server stack (FastAPI,
uvicorn), the runtime or the backends, so that a CLI call answers fast.

May import: ``extvisor.remote``, ``extvisor.documents`` and the plugin-facing modules.
"""

from extvisor import _moved

_MOVED = {"Client": "extvisor.client.http", "ClientError": "extvisor.client.http", "default_socket": "extvisor.client.http"}


# 0.1's ``extvisor.client`` was one module; its names stay here, deprecated, for a release.
__getattr__ = _moved.names("extvisor.client", _MOVED)
