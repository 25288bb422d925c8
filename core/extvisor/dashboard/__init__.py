"""The interactive dashboard (``extvisor dashboard``), a Textual app over the daemon's API."""

from .app import DashboardApp

__all__ = ["DashboardApp"]
