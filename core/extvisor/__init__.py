"""extvisor: a supervisor for Talos-style containerized extension services.

Plugin authors import from the plugin-facing modules only: this one (``from extvisor import
hookimpl`` and the records, protocols and models below), the modules they come from
(``extvisor.records``, ``extvisor.protocols``, ``extvisor.state``), ``extvisor.oci`` (fitting
a spec to the host, cgroups, killing through a pidfd: the built-in backends use it),
``extvisor.documents`` (the models and the loader) and ``extvisor.testing`` (the contract
suite). pyproject.toml's import contracts hold the built-in plugins to that. The names
below are loaded on first use, so that ``import extvisor.cli`` (every CLI call) does not pay
for pluggy and pydantic.
"""

from __future__ import annotations

from extvisor import _moved
from extvisor._version import __version__

_moved.install()

# name -> the module that defines it
_PUBLIC = {
    "Finding": "extvisor.documents.findings",
    "LoadError": "extvisor.documents.findings",
    "SpecWarning": "extvisor.documents.findings",
    "ExtensionServiceConfig": "extvisor.documents.models",
    "ServiceSpec": "extvisor.documents.models",
    "Backend": "extvisor.protocols",
    "BackendConfig": "extvisor.protocols",
    "BackendError": "extvisor.protocols",
    "BackendUnavailable": "extvisor.protocols",
    "Condition": "extvisor.protocols",
    "ConditionContext": "extvisor.protocols",
    "ContainerHandle": "extvisor.protocols",
    "ExitStatus": "extvisor.protocols",
    "ExecResult": "extvisor.protocols",
    "LaunchRequest": "extvisor.protocols",
    "ContainerStats": "extvisor.protocols",
    "BackendOption": "extvisor.records",
    "BackendType": "extvisor.records",
    "ConditionKind": "extvisor.records",
    "LoadContext": "extvisor.records",
    "LoadedService": "extvisor.records",
    "Health": "extvisor.state",
    "ServiceEvent": "extvisor.state",
    "State": "extvisor.state",
}

__all__ = sorted([*_PUBLIC, "hookimpl", "__version__"])

TYPE_CHECKING = False  # not typing's: importing typing costs every CLI call a few ms
if TYPE_CHECKING:
    import pluggy

    from extvisor.protocols import (
        Backend, BackendConfig, BackendError, BackendUnavailable, Condition, ConditionContext,
        ContainerHandle, ExecResult, ExitStatus, LaunchRequest,
    )  # fmt: skip
    from extvisor.records import BackendOption, BackendType, ConditionKind, LoadContext, LoadedService
    from extvisor.documents.findings import Finding, LoadError, SpecWarning
    from extvisor.documents.models import ExtensionServiceConfig, ServiceSpec
    from extvisor.state import Health, ServiceEvent, State

    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name == "hookimpl":
        # Marker for hook implementations: ``@hookimpl def extvisor_register_conditions(): ...``
        import pluggy

        value = pluggy.HookimplMarker("extvisor")
    elif name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    else:
        raise AttributeError(f"module 'extvisor' has no attribute {name!r}")
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
