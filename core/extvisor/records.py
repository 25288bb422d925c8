"""Typed records that registration hooks yield (conda's style), and what service sources exchange.

The plugin manager collects backends and condition kinds, reports duplicate names with the
plugin that gave each, and sorts them by name, so results never depend on registration
order. Service sources get a :class:`LoadContext` and give :class:`LoadedService` items,
joined in plugin-name order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extvisor.documents.findings import Finding
    from extvisor.documents.models import ServiceSpec
    from extvisor.protocols import Backend, BackendConfig, Condition, ConditionContext


@dataclass(frozen=True)
class BackendOption:
    """A daemon option a backend needs, offered as ``--<flag>`` on ``extvisor daemon``."""

    flag: str  #: e.g. ``containerd-address``
    help: str
    default: Any = None
    envvar: str | None = None

    @property
    def key(self) -> str:
        return self.flag.replace("-", "_")


@dataclass(frozen=True)
class BackendType:
    """A container runtime a plugin offers."""

    name: str
    factory: Callable[[BackendConfig], Backend]
    description: str = ""
    options: tuple[BackendOption, ...] = ()


def _truthy(value: Any) -> bool:
    return bool(value)


@dataclass(frozen=True)
class ConditionKind:
    """A ``depends`` key (``path``, ``network``, ``tcp``...) and how to wait for it.

    :param key: the YAML key this kind owns.
    :param value_type: a type pydantic validates the key's value against (it also gives
        the JSON Schema), e.g. ``str`` or ``Annotated[str, AfterValidator(...)]``.
    :param factory: builds the runtime :class:`~extvisor.protocols.Condition`.
    :param description: what it waits for, one line (``extvisor plugins``, the JSON Schema).
    :param is_set: whether a value counts as set (Talos: ``time: false`` is unset).
    :param aliases: deprecated keys accepted for this kind, each with a warning.
    """

    key: str
    value_type: Any
    factory: Callable[[Any, ConditionContext], Condition]
    description: str = ""
    is_set: Callable[[Any], bool] = _truthy
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.key


@dataclass
class LoadedService:
    """One service source read by a loader: a spec, or the reasons there is none."""

    source: str  #: a file path or another plugin's identifier
    spec: ServiceSpec | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.spec is not None


@dataclass(frozen=True)
class LoadContext:
    """Where the daemon reads service specs from, handed to ``extvisor_load_services``."""

    config_dir: Path
    kinds: Mapping[str, ConditionKind] = field(default_factory=dict)  #: the registered ``depends`` keys
    strict: bool = False
