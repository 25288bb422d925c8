"""``configuration: true``: wait until an ExtensionServiceConfig document names this service.

Talos waits for the ``ExtensionServiceConfigStatus`` resource with the service's name (no
``ext-`` prefix). The daemon's config view tells when documents change.
"""

from __future__ import annotations

from extvisor import ConditionContext


def is_set(value: bool) -> bool:
    return value is True


class ConfigurationCondition:
    def __init__(self, ctx: ConditionContext):
        self.name = ctx.spec.name
        self.configs = ctx.configs

    def describe(self) -> str:
        return "extension service config"

    def __repr__(self) -> str:
        return f"ConfigurationCondition({self.name!r})"

    async def wait(self) -> None:
        while self.configs.get(self.name) is None:
            await self.configs.changed()


def factory(value: bool, ctx: ConditionContext) -> ConfigurationCondition:
    return ConfigurationCondition(ctx)
