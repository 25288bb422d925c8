"""The plugin host: finding plugins and collecting what they register.

Built-in plugins are entry points in the ``extvisor`` group, like any third party's; the
core's own hook implementations are the modules named in ``CORE_PLUGINS``. A plugin that
fails to import or register is reported and skipped; the rest go on.
``EXTVISOR_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point name.

Every collecting hook (backends, condition kinds, service sources) goes through one loop,
:meth:`PluginManager._calls`: each implementation is called on its own in plugin-name
order, one that raises is reported and skipped, and the first of a name wins.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from extvisor import hookspecs
from extvisor.records import BackendType, ConditionKind, LoadContext, LoadedService

log = logging.getLogger("extvisor.plugins")

GROUP = "extvisor"
DISABLE_ENV = "EXTVISOR_DISABLE_PLUGINS"
#: The core's own hook implementations, registered by name after the entry points' specs.
CORE_PLUGINS = ("extvisor.documents.default_loader",)


@dataclass
class PluginInfo:
    """One row of ``extvisor plugins``."""

    name: str
    distribution: str = ""
    version: str = ""
    module: str = ""
    status: str = "active"  #: active, blocked or failed
    error: str = ""
    hooks: list[str] = field(default_factory=list)


@dataclass
class Problem:
    """A plugin misbehaved; reported by ``extvisor plugins`` and in the daemon log."""

    plugin: str
    message: str


class PluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.problems: list[Problem] = []

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        # Only extvisor_* attributes are hooks; anything else on a module is ignored.
        if not name.startswith("extvisor_"):
            return None
        return super().parse_hookimpl_opts(plugin, name)

    # -- discovery -----------------------------------------------------------------

    def load_entrypoints(self, blocked: Iterable[str] | None = None) -> None:
        if blocked is None:
            blocked = [b.strip() for b in os.environ.get(DISABLE_ENV, "").split(",") if b.strip()]
        for name in blocked:
            self.set_blocked(name)
        seen: set[str] = set()
        for dist in md.distributions():
            for ep in dist.entry_points:
                if ep.group != GROUP or ep.name in seen:
                    continue
                seen.add(ep.name)
                info = PluginInfo(ep.name, dist.metadata["Name"] or "", dist.version or "", ep.value)
                self.infos[ep.name] = info
                if self.is_blocked(ep.name):
                    info.status = "blocked"
                    continue
                try:
                    plugin = ep.load()
                    self.register(plugin, name=ep.name)
                except Exception as exc:  # a broken plugin never stops the others
                    self._failed(info, exc)
        self._check_pending()

    def register_module(self, module: Any, name: str, distribution: str = "") -> None:
        """Register an already-imported plugin (tests, the core's own hooks)."""
        info = PluginInfo(name, distribution, "", getattr(module, "__name__", repr(module)))
        self.infos[name] = info
        try:
            self.register(module, name=name)
        except Exception as exc:
            self._failed(info, exc)

    def _failed(self, info: PluginInfo, exc: BaseException) -> None:
        info.status = "failed"
        info.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.problems.append(Problem(info.name, info.error))
        log.warning("plugin %r failed to load and is skipped: %s", info.name, info.error)

    def _check_pending(self) -> None:
        # An extvisor_* function with no spec is a typo; report it, keep the plugin.
        for hook_name in dir(self.hook):
            if not hook_name.startswith("extvisor_"):
                continue
            caller = getattr(self.hook, hook_name)
            if caller.spec is None:
                for impl in caller.get_hookimpls():
                    self.problems.append(Problem(impl.plugin_name, f"unknown hook {hook_name!r}"))

    def hooks_of(self, name: str) -> list[str]:
        plugin = self.get_plugin(name)
        if plugin is None:
            return []
        return sorted(c.name for c in self.get_hookcallers(plugin) or [])

    def plugin_infos(self) -> list[PluginInfo]:
        for name, info in self.infos.items():
            info.hooks = self.hooks_of(name)
        return sorted(self.infos.values(), key=lambda i: i.name)

    # -- collected records ---------------------------------------------------------

    def _calls(self, hook_name: str, **kwargs: Any) -> Iterator[tuple[str, list[Any], Exception | None]]:
        """Each implementation's records, called on its own in plugin-name order.

        One broken plugin cannot hide the others: one that raises is reported (a problem and
        a warning) and yields no records and its error. Plugin-name order, not registration
        order: the same plugin wins a duplicate every time.
        """
        caller = getattr(self.hook, hook_name)
        for impl in sorted(caller.get_hookimpls(), key=lambda i: i.plugin_name):
            try:
                records = list(impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs}) or ())
            except Exception as exc:
                self.problems.append(Problem(impl.plugin_name, f"{hook_name} raised {exc!r}"))
                log.warning("plugin %r: %s raised %r; skipped", impl.plugin_name, hook_name, exc)
                yield impl.plugin_name, [], exc
                continue
            yield impl.plugin_name, records, None

    def _collect(self, hook_name: str, attr: str) -> list[Any]:
        by_name: dict[str, tuple[str, Any]] = {}
        for plugin, records, _ in self._calls(hook_name):
            for record in records:
                key = getattr(record, attr)
                if key in by_name:
                    first = by_name[key][0]
                    msg = f"{attr} {key!r} is registered by both {first!r} and {plugin!r}; kept {first!r}"
                    self.problems.append(Problem(plugin, msg))
                    log.warning(msg)
                    continue
                by_name[key] = (plugin, record)
        return [by_name[k][1] for k in sorted(by_name)]

    def backends(self) -> dict[str, BackendType]:
        return {b.name: b for b in self._collect("extvisor_register_backends", "name")}

    def condition_kinds(self) -> dict[str, ConditionKind]:
        return {c.key: c for c in self._collect("extvisor_register_conditions", "key")}

    def load_services(self, context: LoadContext) -> list[LoadedService]:
        """Every source's services (``extvisor_load_services``), joined in plugin-name order.

        A source that raises becomes a failed ``plugin:<name>`` item; when two items declare
        one ``name`` the first wins and the other gets an error finding, as Talos does for files.
        """
        # Deferred: the document formats cost pydantic and YAML, which `extvisor plugins` never needs.
        from extvisor.documents.findings import Finding
        from extvisor.documents.loader import mark_duplicates

        out: list[LoadedService] = []
        for plugin, records, error in self._calls("extvisor_load_services", context=context):
            if error is not None:
                failure = Finding(plugin, 0, 0, "error", "", f"extvisor_load_services raised {error!r}")
                out.append(LoadedService(f"plugin:{plugin}", None, [failure]))
            out.extend(records)
        mark_duplicates(out)
        return out

    def provider_of(self, hook_name: str, attr: str, key: str) -> str:
        for impl in getattr(self.hook, hook_name).get_hookimpls():
            try:
                if any(getattr(r, attr) == key for r in impl.function() or ()):
                    return impl.plugin_name
            except Exception:
                continue
        return ""


def get_plugin_manager(autoload: bool = True, blocked: Iterable[str] | None = None) -> PluginManager:
    """A plugin manager with the core's hooks and, unless *autoload* is off, every entry point."""
    import importlib

    pm = PluginManager()
    for modname in CORE_PLUGINS:
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            pm._failed(PluginInfo(modname, "extvisor", "", modname), exc)
            continue
        pm.register_module(module, name=modname, distribution="extvisor")
    if autoload:
        pm.load_entrypoints(blocked)
    return pm
