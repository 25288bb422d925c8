"""extvisor's containerd backend: each service runs as a containerd container.

Registered as backend ``containerd``; options ``--containerd-address`` and
``--containerd-namespace``. See plugins/containerd/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator

from extvisor import BackendOption, BackendType, hookimpl

from .backend import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, ContainerdBackend, ContainerdHandle

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


@hookimpl
def extvisor_container_stats(service_id: str, container: object):  # type: ignore[no-untyped-def]
    """containerd's own figures (Tasks.Metrics) for our tasks; None for anyone else's."""
    if not isinstance(container, ContainerdHandle):
        return None
    from .metrics import task_stats

    return task_stats(container.client, container.id, container.pid)
