"""The defaults every part starts from, stated once.

The daemon's options (``extvisor daemon --help``), :class:`~extvisor.server.daemon.DaemonConfig`,
the supervisor's :class:`~extvisor.runtime.host.Options` and the client read them from here.
Dev mode differs on purpose (a laptop, not a node): its own values are the ``DEV_*`` ones.
"""

from __future__ import annotations

# Where things are on a node (Talos's paths for the service files and their rootfs).
SOCKET = "/run/extvisor/extvisor.sock"  #: the API's Unix socket
SOCKET_ENV = "EXTVISOR_SOCKET"  #: overrides SOCKET for the daemon and the client
CONFIG_DIR = "/usr/local/etc/containers"  #: service YAML files
ROOTFS_DIR = "/usr/local/lib/containers"  #: <ROOTFS_DIR>/<name> is a service's rootfs
STATE_DIR = "/var/lib/extvisor"
LOG_DIR = "/var/log/extvisor"
SERVICE_CONFIG_DIR = "/usr/local/etc/extvisor/service-configs"  #: ExtensionServiceConfig documents

# The supervisor.
BACKEND = "runc"
RESTART_DELAY = 5.0  #: seconds before the first restart (Talos's interval); doubles after each quick run
RESTART_MAX_DELAY = 60.0
STOP_TIMEOUT = 10.0  #: SIGTERM to SIGKILL
KILL_TIMEOUT = 5.0  #: after SIGKILL (then after the backend's own kill) before giving up
SHUTDOWN_TIMEOUT = 90.0  #: the daemon's whole shutdown
LOG_MAX_BYTES = 10 * 1024 * 1024  #: a service's log file rotates at this size
LOG_BACKUPS = 3  #: rotated log files kept

# The API over mutual TLS, --listen (docs/remote.md, "Limits").
MAX_CONNECTIONS = 1024  #: TCP connections open at once; never more than the open-file limit leaves room for
HANDSHAKE_TIMEOUT = 5.0  #: seconds from accepting a TCP connection to the end of its TLS handshake

# The client.
CLIENT_TIMEOUT = 30.0  #: connecting and waiting for an answer (a CLI call)
DASHBOARD_TIMEOUT = 10.0
COMPLETION_TIMEOUT = 2.0  #: shell completion asks the daemon for ids; a slow one gets nothing

# Dev mode (``extvisor dev``): podman runs rootless on a laptop, and an edit should show fast.
DEV_BACKEND = "podman"
DEV_RESTART_DELAY = 1.0
DEV_RESTART_MAX_DELAY = 10.0
DEV_STOP_TIMEOUT = 5.0
