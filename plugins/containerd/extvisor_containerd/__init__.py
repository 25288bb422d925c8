"""extvisor's containerd backend: each service runs as a containerd container.

Registered as backend ``containerd``; options ``--containerd-address`` and
``--containerd-namespace``. See plugins/containerd/README.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from extvisor import BackendConfig, BackendOption, BackendType, hookimpl

__all__ = ["ContainerdBackend"]

# Also in .backend; here so that registering the plugin does not import gRPC (~50 ms and
# ~10 MB for every daemon, also those that run another backend).
DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = ""  # empty: extvisor-<instance>, one namespace per daemon


def _backend(config: BackendConfig) -> Any:
    from .backend import ContainerdBackend

    return ContainerdBackend(config)


def __getattr__(name: str) -> Any:
    if name == "ContainerdBackend":
        from .backend import ContainerdBackend

        return ContainerdBackend
    raise AttributeError(name)


@hookimpl
def extvisor_register_backends() -> Iterator[BackendType]:
    yield BackendType(
        name="containerd",
        factory=_backend,
        description="containerd over gRPC (no image, no snapshotter; runtime io.containerd.runc.v2)",
        options=(
            BackendOption("containerd-address", "containerd socket", DEFAULT_ADDRESS),
            BackendOption("containerd-namespace", "containerd namespace [default extvisor-<instance>]",
                          DEFAULT_NAMESPACE),
        ),
    )


@hookimpl
def extvisor_container_stats(service_id: str, container: object):  # type: ignore[no-untyped-def]
    """containerd's own figures (Tasks.Metrics) for our tasks; None for anyone else's."""
    backend = sys.modules.get(__name__ + ".backend")  # not loaded: the container cannot be ours
    if backend is None or not isinstance(container, backend.ContainerdHandle):
        return None
    from .metrics import task_stats

    return task_stats(container.client, container.id, container.pid)
