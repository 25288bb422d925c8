"""The podman backend: services as podman containers, through podman's REST API (podman-py).

Works against a rootful or a rootless ``podman system service``; see README.md here.
"""

from __future__ import annotations

from extvisor import BackendOption, BackendType, hookimpl

from .backend import DEFAULT_ULIMITS, PodmanBackend, PodmanContainer, default_url

__all__ = ["PodmanBackend", "PodmanContainer", "default_url"]


@hookimpl
def extvisor_register_backends():  # type: ignore[no-untyped-def]
    yield BackendType(
        name="podman",
        factory=PodmanBackend,
        description="podman containers through the podman API socket (rootful or rootless)",
        options=(
            BackendOption("podman-url", "podman API socket URL", default_url()),
            BackendOption("podman-runtime", "OCI runtime podman uses ('' for podman's default)", "runc"),
            BackendOption("podman-ulimits", "ulimits as name=soft:hard,...", DEFAULT_ULIMITS),
        ),
    )


@hookimpl
def extvisor_container_stats(service_id: str, container: object):  # type: ignore[no-untyped-def]
    """podman's own figures (its stats call) for our containers; None for anyone else's."""
    if not isinstance(container, PodmanContainer):
        return None
    from .stats import container_stats

    return container_stats(container.container, container.pid)
