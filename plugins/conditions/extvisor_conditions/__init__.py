"""The built-in ``depends`` kinds: ``service``, ``path``, ``network``, ``time``, ``configuration``.

Registered through the ``extvisor`` entry point like any third party's plugin, so these
five are the reference for docs/plugin-authoring.md.
"""

from __future__ import annotations

from collections.abc import Iterator

from extvisor import ConditionKind, hookimpl
from pydantic import StrictBool

from . import configuration, network, path, service, timesync


@hookimpl
def extvisor_register_conditions() -> Iterator[ConditionKind]:
    yield ConditionKind(
        key="service",
        value_type=service.ServiceValue,
        factory=service.factory,
        description='another service is up (Running), e.g. `service: ext-a`',
    )
    yield ConditionKind(
        key="path",
        value_type=path.PathValue,
        factory=path.factory,
        description="an absolute path exists (woken by inotify)",
        aliases=("file",),
    )
    yield ConditionKind(
        key="network",
        value_type=network.NetworkValue,
        factory=network.factory,
        description="network statuses are ready: addresses, connectivity, hostname, etcfiles",
    )
    yield ConditionKind(
        key="time",
        value_type=StrictBool,  # `time: "yes"` is a mistake, not true
        factory=timesync.factory,
        description="the kernel clock is synchronised (adjtimex); `time: true`",
        is_set=timesync.is_set,
    )
    yield ConditionKind(
        key="configuration",
        value_type=StrictBool,  # `time: "yes"` is a mistake, not true
        factory=configuration.factory,
        description="an ExtensionServiceConfig document names this service; `configuration: true`",
        is_set=configuration.is_set,
    )
