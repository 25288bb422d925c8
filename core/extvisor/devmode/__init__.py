"""Dev mode (``extvisor dev``): a project folder's services in the terminal, reloaded on edits.

Holds the project folder's layout (``project``), the terminal printer (``printer``) and
the run itself with its file watcher (``run``) and which directories it watches
(``watchdirs``).

May import: ``extvisor.server`` (it runs the daemon in-process), ``extvisor.runtime``,
``extvisor.extensions`` (the project layout it shares with ``extensions build``),
``extvisor.shared`` (dev mode's defaults), ``extvisor.plugins``, ``extvisor.documents`` and
the plugin surface. Never ``extvisor.cli`` or ``extvisor.dashboard``.
"""

from extvisor import _moved

_MOVED = {
    "Printer": "extvisor.devmode.printer", "use_colour": "extvisor.devmode.printer",
    "setup_dev_logging": "extvisor.devmode.printer", "rootfs_for": "extvisor.devmode.project",
    "socket_for": "extvisor.devmode.project", "dev_config": "extvisor.devmode.project",
    "run_dev": "extvisor.devmode.run",
}


# 0.1's ``extvisor.devmode`` was one module; its names stay here, deprecated, for a release.
__getattr__ = _moved.names("extvisor.devmode", _MOVED)
