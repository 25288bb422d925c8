"""The registration and loading hooks, with small inline plugins on a fresh PluginManager.

Covers extvisor_register_backends, extvisor_register_conditions and extvisor_load_services:
records are collected from every plugin and sorted, a name given twice is reported with
both plugins (the first registered is kept), and a plugin that raises is reported and
skipped while the others go on. The supervisor hooks are tested by tests/test_hook_*.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from extvisor import BackendType, ConditionKind, Finding, LoadContext, LoadedService, hookimpl
from extvisor.documents.loader import load_service_text
from extvisor.plugins import PluginManager


def _factory(*args):
    raise NotImplementedError


class Runtimes:
    @hookimpl
    def extvisor_register_backends(self):
        yield BackendType(name="zeta", factory=_factory, description="from runtimes")
        yield BackendType(name="alpha", factory=_factory, description="from runtimes")


class MoreRuntimes:
    @hookimpl
    def extvisor_register_backends(self):
        return [
            BackendType(name="alpha", factory=_factory, description="from more"),
            BackendType(name="beta", factory=_factory),
        ]


class Broken:
    @hookimpl
    def extvisor_register_backends(self):
        raise RuntimeError("no runtime here")

    @hookimpl
    def extvisor_register_conditions(self):
        yield ConditionKind(key="half", value_type=str, factory=_factory)
        raise RuntimeError("broke halfway")

    @hookimpl
    def extvisor_load_services(self, context):
        raise OSError("source offline")


class Tcp:
    @hookimpl
    def extvisor_register_conditions(self):
        yield ConditionKind(key="tcp", value_type=str, factory=_factory, description="a port accepts connections")


class PathKinds:
    @hookimpl
    def extvisor_register_conditions(self):
        yield ConditionKind(key="path", value_type=str, factory=_factory, aliases=("file",))


class OtherPath:
    @hookimpl
    def extvisor_register_conditions(self):
        yield ConditionKind(key="path", value_type=int, factory=_factory)


@pytest.fixture
def pm():
    return PluginManager()


def test_register_backends_collected_and_sorted(pm):
    pm.register_module(Runtimes(), name="runtimes")
    pm.register_module(MoreRuntimes(), name="more")
    backends = pm.backends()
    assert list(backends) == ["alpha", "beta", "zeta"]
    (problem,) = pm.problems
    assert "'alpha' is registered by both" in problem.message
    kept = problem.message.rsplit("kept ", 1)[1].strip("'")
    skipped = ({"runtimes", "more"} - {kept}).pop()
    assert problem.plugin == skipped and f"'{skipped}'" in problem.message
    assert backends["alpha"].description == {"runtimes": "from runtimes", "more": "from more"}[kept]
    assert pm.provider_of("extvisor_register_backends", "name", "beta") == "more"


def test_register_backends_broken_plugin_skipped(pm):
    pm.register_module(Broken(), name="broken")
    pm.register_module(Runtimes(), name="runtimes")
    assert list(pm.backends()) == ["alpha", "zeta"]
    assert [(p.plugin, "no runtime here" in p.message) for p in pm.problems] == [("broken", True)]


def test_register_conditions_collected(pm):
    pm.register_module(PathKinds(), name="paths")
    pm.register_module(Tcp(), name="tcp")
    kinds = pm.condition_kinds()
    assert list(kinds) == ["path", "tcp"] and kinds["path"].aliases == ("file",)
    assert pm.provider_of("extvisor_register_conditions", "key", "tcp") == "tcp"


def test_register_conditions_duplicate_key_reported_with_both_plugins(pm):
    pm.register_module(PathKinds(), name="paths")
    pm.register_module(OtherPath(), name="other")
    kinds = pm.condition_kinds()
    (problem,) = pm.problems
    assert "'path' is registered by both" in problem.message
    assert "'paths'" in problem.message and "'other'" in problem.message
    kept = problem.message.rsplit("kept ", 1)[1].strip("'")
    assert kinds["path"].value_type is {"paths": str, "other": int}[kept]


def test_register_conditions_broken_plugin_contributes_nothing(pm):
    pm.register_module(Broken(), name="broken")
    pm.register_module(Tcp(), name="tcp")
    assert list(pm.condition_kinds()) == ["tcp"]  # not even the record yielded before the error
    assert any(p.plugin == "broken" and "broke halfway" in p.message for p in pm.problems)


def test_registered_kind_validates_a_depends_key(pm):
    pm.register_module(Tcp(), name="tcp")
    text = "name: a\ncontainer: {entrypoint: ./a}\nrestart: always\ndepends:\n  - tcp: db:5432\n"
    loaded = load_service_text(text, "a.yaml", pm.condition_kinds())
    assert loaded.ok and (loaded.spec.depends[0].kind, loaded.spec.depends[0].value) == ("tcp", "db:5432")


def test_registering_a_non_module_plugin_with_a_bad_hook_signature_is_reported(pm):
    class Wrong:
        @hookimpl
        def extvisor_load_services(self, context, unknown_arg):
            return []

    pm.register_module(Wrong(), name="wrong")
    info = pm.plugin_infos()[0]
    assert info.status == "failed" and "unknown_arg" in info.error


# -- extvisor_load_services ------------------------------------------------------------

SPEC = "name: {name}\ncontainer:\n  entrypoint: ./{entry}\nrestart: always\n"


class Memory:
    """A source besides the directory: specs held in memory."""

    def __init__(self, *names):
        self.names = names

    @hookimpl
    def extvisor_load_services(self, context):
        return [load_service_text(SPEC.format(name=n, entry="memory"), f"memory:{n}", context.kinds) for n in self.names]


class Unusable:
    @hookimpl
    def extvisor_load_services(self, context):
        yield LoadedService("db:services", None, [Finding("db:services", 0, 0, "error", "", "cannot connect")])


def _core_pm(tmp_path: Path) -> PluginManager:
    import extvisor.documents.default_loader

    (tmp_path / "dir.yaml").write_text(SPEC.format(name="dir", entry="dir"))
    (tmp_path / "shared.yaml").write_text(SPEC.format(name="shared", entry="dir"))
    pm = PluginManager()
    pm.register_module(extvisor.documents.default_loader, name="extvisor.documents.default_loader", distribution="extvisor")
    return pm


def test_load_services_core_reads_the_directory(tmp_path):
    pm = _core_pm(tmp_path)
    results = pm.hook.extvisor_load_services(context=LoadContext(config_dir=tmp_path, kinds={}))
    assert [[s.spec.name for s in r] for r in results] == [["dir", "shared"]]


def test_load_services_sources_joined_in_plugin_name_order(tmp_path):
    pm = _core_pm(tmp_path)
    pm.register_module(Memory("mem", "shared"), name="zz-memory")
    pm.register_module(Unusable(), name="db")
    loaded = pm.load_services(LoadContext(config_dir=tmp_path, kinds={}))
    files = [str(tmp_path / "dir.yaml"), str(tmp_path / "shared.yaml")]
    assert [s.source for s in loaded] == ["db:services", *files, "memory:mem", "memory:shared"]
    ok = {s.spec.name: s.spec.container.entrypoint for s in loaded if s.ok}
    assert ok == {"dir": "./dir", "shared": "./dir", "mem": "./memory"}  # the directory came first
    dup = loaded[-1]
    assert dup.spec is None
    assert dup.findings[-1].message == f"duplicate service spec: name shared already declared by {files[1]}"
    assert loaded[0].findings[0].message == "cannot connect"


def test_load_services_broken_source_reported_and_skipped(tmp_path):
    pm = _core_pm(tmp_path)
    pm.register_module(Broken(), name="broken")
    loaded = pm.load_services(LoadContext(config_dir=tmp_path, kinds={}))
    assert [s.spec.name for s in loaded if s.ok] == ["dir", "shared"]
    failed = [s for s in loaded if s.source == "plugin:broken"]
    assert failed and "source offline" in failed[0].findings[0].message
    assert any(p.plugin == "broken" and "extvisor_load_services" in p.message for p in pm.problems)


def test_the_core_loader_uses_the_kinds_it_is_given_and_builds_no_manager(tmp_path, monkeypatch):
    import extvisor.plugins
    from extvisor.documents.default_loader import extvisor_load_services

    def no(*args, **kwargs):
        raise AssertionError("the loader built a plugin manager")

    monkeypatch.setattr(extvisor.plugins, "get_plugin_manager", no)
    monkeypatch.setattr(extvisor.plugins, "PluginManager", no)
    (tmp_path / "w.yaml").write_text(SPEC.format(name="w", entry="w") + "depends:\n  - path: /x\n")
    # no kinds given: `path` is unknown, not looked up elsewhere
    (unknown,) = extvisor_load_services(LoadContext(config_dir=tmp_path, kinds={}))
    assert unknown.spec is None and "unknown dependency kind `path` (known: none registered)" in unknown.findings[0].message
    from conftest import TEST_KINDS

    (known,) = extvisor_load_services(LoadContext(config_dir=tmp_path, kinds=TEST_KINDS))
    assert known.ok and known.spec.depends[0].kind == "path"


def test_services_are_collected_on_the_loop_of_every_registration_hook(tmp_path):
    # A source that raises is reported in the words a broken backend registration gets.
    pm = _core_pm(tmp_path)
    pm.register_module(Broken(), name="broken")
    pm.load_services(LoadContext(config_dir=tmp_path, kinds={}))
    pm.backends()
    said = sorted(p.message for p in pm.problems if p.plugin == "broken")
    assert said == ["extvisor_load_services raised OSError('source offline')",
                    "extvisor_register_backends raised RuntimeError('no runtime here')"]  # fmt: skip
