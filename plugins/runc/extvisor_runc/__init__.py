"""The runc backend: containers run by the ``runc`` binary, no daemon in between."""

from __future__ import annotations

from extvisor import BackendOption, BackendType, hookimpl

from .backend import RuncBackend, RuncContainer

__all__ = ["RuncBackend"]


@hookimpl
def extvisor_register_backends():
    yield BackendType(
        name="runc",
        factory=RuncBackend,
        description="runc run per service, held by one small monitor process that outlives the daemon (exit status, output)",
        options=(BackendOption("runc-binary", "path of the runc binary", "runc"),),
    )


@hookimpl
def extvisor_container_stats(service_id, container):  # type: ignore[no-untyped-def]
    """runc has no stats daemon: read the cgroup the spec named (``linux.cgroupsPath``)."""
    if not isinstance(container, RuncContainer):
        return None
    from extvisor.oci.cgroups import read_stats

    return read_stats(pid=container.pid, cgroups_path=container._cgroups_path)
