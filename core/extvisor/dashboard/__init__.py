"""The interactive dashboard (``extvisor dashboard``), a Textual app over the daemon's API.

Holds the app (``app``), its widgets, the model of what it shows (``model``), the feed
that reads the API (``feed``) and the formatting of cells (``format``).

May import: ``extvisor.client`` (it talks to the daemon only through the API) and the
plugin-facing modules. Never the server or the runtime: it works the same against a
remote node.
"""

from extvisor.dashboard.app import DashboardApp

__all__ = ["DashboardApp"]
