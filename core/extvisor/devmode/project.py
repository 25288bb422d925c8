"""A dev-mode project folder: where its rootfs directories, state and socket are.

A project folder holds service files and their rootfs directories side by side::

    DIR/hello.yaml        a service (name: hello)
    DIR/hello/            its rootfs (or DIR/rootfs/hello/ when DIR/hello/ does not exist)
    DIR/service-configs/  optional ExtensionServiceConfig documents
    DIR/.extvisor/        state, logs and the API socket (made by dev mode)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from extvisor.extensions.project import rootfs_for  # one rule for dev mode and extensions build
from extvisor.server.daemon import DaemonConfig
from extvisor.server.files import private_dir
from extvisor.shared import defaults

STATE = ".extvisor"
SOCKET_MAX = 100  #: AF_UNIX paths are limited to 107 bytes


def socket_for(project: Path) -> Path:
    """``DIR/.extvisor/extvisor.sock``; when that is too long for a socket, a short path in
    ``$XDG_RUNTIME_DIR/extvisor-dev/`` (as podman and systemd), else in ``/tmp/extvisor-dev-<uid>/``.
    Dev mode makes that directory with :func:`prepare_socket_dir`."""
    path = project / STATE / "extvisor.sock"
    if len(os.fsencode(path)) <= SOCKET_MAX:
        return path
    name = hashlib.sha256(os.fsencode(project)).hexdigest()[:12] + ".sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and len(os.fsencode(Path(runtime) / "extvisor-dev" / name)) <= SOCKET_MAX:
        return Path(runtime) / "extvisor-dev" / name
    return Path(tempfile.gettempdir()) / f"extvisor-dev-{os.getuid()}" / name


def prepare_socket_dir(project: Path, socket: Path) -> None:
    """Make the socket's directory when it is outside the project, refusing one another user
    made or can change first (:class:`~extvisor.server.files.UnsafeDirectory`): whoever holds
    it could serve a fake API at the path dev mode prints."""
    if socket.parent != project / STATE:
        private_dir(socket.parent, "dev mode's API socket")


def dev_config(
    project: Path,
    backend: str = defaults.DEV_BACKEND,
    backend_options: dict[str, Any] | None = None,
    service_config_dir: Path | None = None,
    host_services: Iterable[str] = (),
    strict: bool = False,
    supervisor: dict[str, Any] | None = None,
) -> DaemonConfig:
    """A daemon configuration with every path under *project* (no root, no system paths)."""
    project = project.resolve()
    state = project / STATE
    if service_config_dir is None and (project / "service-configs").is_dir():
        service_config_dir = project / "service-configs"
    return DaemonConfig(
        config_dir=project,
        not_services=("manifest.yaml",),  # the extension's manifest, for extensions build
        rootfs_dir=project,
        state_dir=state / "state",
        log_dir=state / "logs",
        socket=socket_for(project),
        service_config_dir=service_config_dir,
        backend=backend,
        backend_options=dict(backend_options or {}),
        host_services=list(host_services),
        strict=strict,
        supervisor={"restart_delay": defaults.DEV_RESTART_DELAY, "restart_max_delay": defaults.DEV_RESTART_MAX_DELAY,
                    "stop_timeout": defaults.DEV_STOP_TIMEOUT, "rootfs_layout": rootfs_for, **(supervisor or {})},
    )

