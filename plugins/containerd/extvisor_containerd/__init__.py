"""extvisor's containerd backend: each service runs as a containerd container.

Registered as backend ``containerd``; options ``--containerd-address`` and
``--containerd-namespace``. See plugins/containerd/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator

from extvisor import BackendOption, BackendType, hookimpl

from .backend import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, ContainerdBackend

__all__ = ["ContainerdBackend"]


@hookimpl
def extvisor_register_backends() -> Iterator[BackendType]:
    yield BackendType(
        name="containerd",
        factory=ContainerdBackend,
        description="containerd over gRPC (no image, no snapshotter; runtime io.containerd.runc.v2)",
        options=(
            BackendOption("containerd-address", "containerd socket", DEFAULT_ADDRESS),
            BackendOption("containerd-namespace", "containerd namespace [default extvisor-<instance>]",
                          DEFAULT_NAMESPACE),
        ),
    )
