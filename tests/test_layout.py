"""The tree says what docs/architecture.md says: parts import one way, no circles, paths exist."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core" / "extvisor"


def test_import_contracts_hold():
    # pyproject.toml [tool.importlinter]: layers, no circles between siblings, plugins see
    # only the plugin-facing modules, the core knows no plugin.
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v) & modules:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return found


def _graph(package: str) -> grimp.ImportGraph:
    """Every import of *package*, those inside functions too; only ``if TYPE_CHECKING:`` ones are left out."""
    return grimp.build_graph(package, exclude_type_checking_imports=True, cache_dir=None)


def _with_imports_by_name(graph: grimp.ImportGraph) -> grimp.ImportGraph:
    # The plugin manager imports the core's own plugins by name, and the CLI its commands
    # (importlib), which no static reading sees; count them as the plain imports they are.
    import importlib

    from extvisor.plugins import CORE_PLUGINS

    for name in CORE_PLUGINS:
        graph.add_import(importer="extvisor.plugins", imported=name)
    commands = getattr(importlib.import_module("extvisor.cli.main"), "COMMANDS", {})
    for target in commands.values():
        graph.add_import(importer="extvisor.cli.main", imported=target.split(":")[0])
    return graph


def test_no_module_imports_itself_back():
    # Finer than the sibling contract: no circle between any two modules of core/, counting
    # imports inside functions and the plugin manager's imports by name too.
    graph = _with_imports_by_name(_graph("extvisor"))
    modules = {m for m in graph.modules if m.startswith("extvisor")}
    assert _cycles(graph, modules) == []


def test_the_cycle_finder_sees_a_circle():
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph, {"p.a", "p.b", "p.c"}) == [["p.a", "p.b"]]


def test_the_cycle_finder_sees_a_circle_made_inside_functions(tmp_path, monkeypatch):
    # A real package on disk, read as the core is: both imports of the circle are inside
    # functions (the shape the loader and the plugin manager once had), while an
    # `if TYPE_CHECKING:` import back is left out, as it should be.
    pkg = tmp_path / "circlepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "host.py").write_text("def manager():\n    from circlepkg.loader import load\n    return load\n")
    (pkg / "loader.py").write_text("def load():\n    from circlepkg import host\n    return host\n")
    (pkg / "typed.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from circlepkg import typed2\n")
    (pkg / "typed2.py").write_text("from circlepkg import typed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = _graph("circlepkg")
    modules = {m for m in graph.modules if m != "circlepkg"}
    assert _cycles(graph, modules) == [["circlepkg.host", "circlepkg.loader"]]


def test_an_import_by_name_is_counted():
    # A core plugin importing the plugin manager back makes a circle through the manager's
    # import by name; the check must see it.
    from extvisor.plugins import CORE_PLUGINS

    graph = _with_imports_by_name(_graph("extvisor"))
    graph.add_import(importer=CORE_PLUGINS[0], imported="extvisor.plugins")
    modules = {m for m in graph.modules if m.startswith("extvisor")}
    assert sorted(["extvisor.plugins", CORE_PLUGINS[0]]) in _cycles(graph, modules)


def test_every_package_says_what_it_holds_and_may_import():
    for init in sorted(CORE.glob("*/__init__.py")):
        doc = init.read_text().lstrip()
        assert doc.startswith('"""'), f"{init.relative_to(ROOT)} opens without a docstring"
        head = doc.split('"""')[1]
        assert "May import:" in head, f"{init.relative_to(ROOT)}: the docstring does not say what it may import"
        modules = sorted(p.stem for p in init.parent.glob("*.py") if p.stem != "__init__")
        modules += sorted(p.name for p in init.parent.iterdir() if (p / "__init__.py").exists())
        unnamed = [m for m in modules if f"``{m}``" not in head and f":mod:`.{m}`" not in head]
        assert unnamed == [], f"{init.relative_to(ROOT)}: the docstring does not say it holds {unnamed}"


# The plugin surface: every package may import these (the top package's lazy names, the
# records, protocols and hook specs); the layers contract keeps them at the bottom.
SURFACE = {"extvisor", "_moved", "_version", "hookspecs", "records", "protocols", "state"}


def _contracts() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per part of extvisor: what the import contracts allow it, and what they forbid it."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    parts = {p.stem if p.suffix == ".py" else p.name for p in CORE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem != "__init__"}  # fmt: skip
    layers = next(c for c in config if c["type"] == "layers")["layers"]
    level = {name.strip().removeprefix("extvisor."): i for i, layer in enumerate(layers) for name in layer.split("|")}
    forbidden = {p: set() for p in parts}
    for part in parts:
        if part in level:
            forbidden[part] |= {q for q in parts if q in level and q != part and level[q] <= level[part]}
    for c in config:
        if c["type"] == "forbidden":
            for source in c["source_modules"]:
                if source.startswith("extvisor."):
                    forbidden[source.removeprefix("extvisor.")] |= {m.removeprefix("extvisor.") for m in c["forbidden_modules"]}
    allowed = {p: parts - forbidden[p] - {p} for p in parts}
    return allowed, forbidden


def _said(head: str) -> tuple[set[str], set[str]]:
    """The parts a docstring's "May import:" paragraph allows, and those it says it never imports."""
    para = head.split("May import:", 1)[1].split("\n\n", 1)[0]
    may, _, never = para.partition("Never")
    names = re.compile(r"``extvisor\.([a-z_]+)")
    return set(names.findall(may)), set(names.findall(never))


def test_may_import_lines_match_the_import_contracts():
    # Each package's "May import:" line is what pyproject.toml's contracts let it import:
    # it names nothing they forbid, every part its modules do import, and each part it
    # says it never imports is forbidden there (so the sentence is checked, not believed).
    allowed, forbidden = _contracts()
    graph = _graph("extvisor")
    for init in sorted(CORE.glob("*/__init__.py")):
        part = init.parent.name
        may, never = _said(init.read_text().split('"""')[1])
        where = init.relative_to(ROOT)
        assert may <= allowed[part], f"{where} may import {sorted(may - allowed[part])}, which the contracts forbid"
        assert never <= forbidden[part], f"{where} says it never imports {sorted(never - forbidden[part])}: add a contract"
        imported = {
            t.split(".")[1] if t.count(".") else t
            for m in graph.find_descendants(f"extvisor.{part}") | {f"extvisor.{part}"}
            for t in graph.find_modules_directly_imported_by(m)
            if t.startswith("extvisor")
        } - {part}  # fmt: skip
        assert imported - SURFACE <= may, f"{where} imports {sorted(imported - SURFACE - may)} but does not say so"


def test_the_contract_reader_reads_them():
    allowed, forbidden = _contracts()
    assert "server" in forbidden["runtime"] and "client" in forbidden["server"] and "runtime" in allowed["server"]
    assert "runtime" in forbidden["testing"] and "documents" in allowed["testing"]
    assert _said("May import: ``extvisor.oci`` and the surface.\nNever ``extvisor.server``.\n\nMore") == ({"oci"}, {"server"})


def test_the_top_holds_only_plugin_facing_modules_and_entry_points():
    top = {p.name for p in CORE.glob("*.py")}
    assert top <= {
        "__init__.py", "__main__.py", "_moved.py", "_version.py",
        "hookspecs.py", "records.py", "protocols.py", "state.py", "plugins.py",
    }, top


def test_every_path_the_architecture_names_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:core|plugins|tests|bench|scripts|examples|docs|contrib)/[^`\s]*)`", text))
    assert len(paths) > 20, "the architecture names too few paths to be a map"
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert missing == []


@pytest.mark.parametrize("old, new", [
    ("extvisor.loader", "extvisor.documents.loader"),
    ("extvisor.models", "extvisor.documents.models"),
    ("extvisor.supervisor", "extvisor.runtime.supervisor"),
    ("extvisor.daemon", "extvisor.server.daemon"),
])
def test_moved_modules_still_import_with_a_warning(old, new):
    import importlib
    import sys

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_the_plugin_surface_did_not_move():
    import extvisor
    from extvisor import hookimpl, testing  # noqa: F401
    from extvisor.oci import fit_to_host  # noqa: F401

    for name in ("BackendType", "ConditionKind", "LaunchRequest", "ServiceSpec", "ConditionContext", "LoadContext"):
        assert hasattr(extvisor, name)
