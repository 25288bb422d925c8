"""The module paths of extvisor 0.1, kept for one release as deprecated aliases.

0.2 put the modules in packages named after the parts (``extvisor.spec``,
``extvisor.runtime``, ``extvisor.server``, ...). ``import extvisor.loader`` still works
and warns; the aliases go in 0.3. Plugin-facing modules did not move.

0.3 renamed ``extvisor.spec`` (the document formats) to ``extvisor.documents`` and
``extvisor.cli.spec`` to ``extvisor.cli.documents``; their 0.2 paths warn the same way
until 0.4.
"""

from __future__ import annotations

import sys

MOVED = {
    "extvisor.findings": "extvisor.documents.findings",
    "extvisor.models": "extvisor.documents.models",
    "extvisor.yamlio": "extvisor.documents.yamlio",
    "extvisor.loader": "extvisor.documents.loader",
    "extvisor.validate": "extvisor.documents.validate",
    "extvisor.schema": "extvisor.documents.schema",
    "extvisor.envfile": "extvisor.runtime.envfile",
    "extvisor.supervisor": "extvisor.runtime.supervisor",
    "extvisor.service": "extvisor.runtime.service",
    "extvisor.logs": "extvisor.runtime.logs",
    "extvisor.configstore": "extvisor.runtime.configstore",
    "extvisor.hostservices": "extvisor.runtime.hostservices",
    "extvisor.waitall": "extvisor.runtime.waitall",
    "extvisor.daemon": "extvisor.server.daemon",
    "extvisor.api": "extvisor.server.api",
    "extvisor.cli_spec": "extvisor.cli.documents",
    "extvisor.cli_daemon": "extvisor.cli.daemon",
    "extvisor.cli_service": "extvisor.cli.service",
    "extvisor.cli_dashboard": "extvisor.cli.dashboard",
    "extvisor.cli_dev": "extvisor.cli.dev",
    # 0.2 -> 0.3
    "extvisor.cli.spec": "extvisor.cli.documents",
    "extvisor.spec": "extvisor.documents",
    **{
        f"extvisor.spec.{m}": f"extvisor.documents.{m}"
        for m in ("configdocs", "files", "findings", "loader", "models", "report", "schema", "validate", "yamlio")
    },
}


class _Alias:
    """Answers an old module name with the module at its new path, and warns.

    A meta path finder and loader; importlib's base classes are not used because importing
    them costs more than every CLI call should pay.
    """

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname not in MOVED:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        import importlib
        import warnings

        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} is deprecated and will be removed in extvisor 0.3: import {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        # The module is the new one, already executed; keep its own name and spec.
        return None


def names(package: str, moved: dict[str, str]):  # type: ignore[no-untyped-def]
    """A module ``__getattr__`` for a package that was one module in 0.1: each of its old
    names still resolves, from the module it moved to, with a warning."""

    def __getattr__(name: str):  # type: ignore[no-untyped-def]
        if name not in moved:
            raise AttributeError(name)
        import importlib
        import warnings

        warnings.warn(f"{package}.{name} is deprecated: import it from {moved[name]}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(moved[name]), name)

    return __getattr__


def install() -> None:
    # First in line: ``extvisor.spec.models`` must resolve to the module already loaded as
    # ``extvisor.documents.models``, not be found again on the aliased package's path and
    # loaded a second time (two copies, two sets of classes).
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
