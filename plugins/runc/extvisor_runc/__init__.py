"""The runc backend: containers run by the ``runc`` binary, no daemon in between."""

from __future__ import annotations

from extvisor import BackendOption, BackendType, hookimpl

from .backend import RuncBackend

__all__ = ["RuncBackend"]


@hookimpl
def extvisor_register_backends():
    yield BackendType(
        name="runc",
        factory=RuncBackend,
        description="runc create/start per service; exit status as child subreaper; no daemon",
        options=(BackendOption("runc-binary", "path of the runc binary", "runc"),),
    )
