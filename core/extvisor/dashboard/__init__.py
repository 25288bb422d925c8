"""The interactive dashboard (``extvisor dashboard``), a Textual app over the daemon's API.

Holds the app (``app``), its widgets (``widgets``), the keys on services (``keys``), the
Monitor screen and host line (``monitor``), the model of what it shows (``model``), the
feed that reads the API, locally or from a node over TLS (``feed``) and the formatting of
cells (``format``).

May import: ``extvisor.client``, ``extvisor.remote``, ``extvisor.shared`` (the routes it
calls) and the plugin surface. Never ``extvisor.server``, ``extvisor.runtime``,
``extvisor.extensions``, ``extvisor.oci`` or ``extvisor.plugins``: it talks to the daemon only through the API, so it works the same
against a remote node.
"""

from extvisor.dashboard.app import DashboardApp

__all__ = ["DashboardApp"]
