"""extvisor: a supervisor for Talos-style containerized extension services.

Plugin authors import from here only: ``from extvisor import hookimpl`` and the records,
protocols and models below.
"""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("extvisor")
"""Marker for hook implementations: ``@hookimpl def extvisor_register_conditions(): ...``"""

from extvisor.spec.findings import Finding, LoadError, SpecWarning  # noqa: E402
from extvisor.spec.models import ExtensionServiceConfig, ServiceSpec  # noqa: E402
from extvisor.protocols import (  # noqa: E402
    Backend,
    BackendConfig,
    BackendError,
    BackendUnavailable,
    Condition,
    ConditionContext,
    ContainerHandle,
    ExitStatus,
    LaunchRequest,
)
from extvisor.records import BackendOption, BackendType, ConditionKind, LoadContext, LoadedService  # noqa: E402
from extvisor.state import ServiceEvent, State  # noqa: E402

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendError",
    "BackendOption",
    "BackendType",
    "BackendUnavailable",
    "Condition",
    "ConditionContext",
    "ConditionKind",
    "ContainerHandle",
    "ExitStatus",
    "ExtensionServiceConfig",
    "Finding",
    "LaunchRequest",
    "LoadContext",
    "LoadError",
    "LoadedService",
    "ServiceEvent",
    "ServiceSpec",
    "SpecWarning",
    "State",
    "hookimpl",
]


from extvisor import _moved  # noqa: E402

_moved.install()


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("extvisor")
    raise AttributeError(name)
