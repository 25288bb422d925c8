"""Plugin discovery through a checked-in fake distribution (tests/fakedist), as a third party's.

tests/fakedist/extvisor_fake-1.0.dist-info declares three ``extvisor`` entry points:
``ok`` (a backend and a ``faketcp`` condition kind), ``importerror`` (its module does not
exist) and ``blocked`` (its module raises when imported). The directory is put on sys.path
only inside these tests, and importlib.metadata finds the dist-info there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from extvisor.cli import main
from extvisor.plugins import CORE_PLUGINS, DISABLE_ENV, get_plugin_manager

FAKEDIST = Path(__file__).parent / "fakedist"


@pytest.fixture
def fakedist(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKEDIST))
    monkeypatch.setenv(DISABLE_ENV, "blocked")


def infos(pm):
    return {i.name: i for i in pm.plugin_infos()}


def test_discovery_reports_and_skips_the_broken_plugin(fakedist):
    pm = get_plugin_manager()
    by_name = infos(pm)
    ok = by_name["ok"]
    assert (ok.status, ok.distribution, ok.version, ok.module) == ("active", "extvisor-fake", "1.0", "extvisor_fake_ok")
    assert ok.hooks == ["extvisor_register_backends", "extvisor_register_conditions"]
    broken = by_name["importerror"]
    assert broken.status == "failed" and "extvisor_fake_missing" in broken.error and broken.hooks == []
    assert any(p.plugin == "importerror" for p in pm.problems)
    # the others go on
    assert "faketcp" in pm.condition_kinds() and "fake" in pm.backends()
    assert by_name["extvisor.documents.default_loader"].status == "active"


def test_disable_env_blocks_by_name(fakedist):
    pm = get_plugin_manager()
    blocked = infos(pm)["blocked"]
    assert blocked.status == "blocked" and blocked.error == ""  # never imported (it would raise)


def test_several_names_can_be_blocked(fakedist, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, " blocked , ok,conditions")
    pm = get_plugin_manager()
    by_name = infos(pm)
    assert by_name["ok"].status == by_name["blocked"].status == by_name["conditions"].status == "blocked"
    assert "faketcp" not in pm.condition_kinds() and "path" not in pm.condition_kinds()


def test_a_plugin_raising_on_import_is_reported_not_fatal(fakedist, monkeypatch):
    monkeypatch.delenv(DISABLE_ENV)
    by_name = infos(get_plugin_manager())
    assert by_name["blocked"].status == "failed"
    assert "must never be imported" in by_name["blocked"].error
    assert by_name["ok"].status == "active"


def test_blocked_argument_overrides_env(fakedist):
    by_name = infos(get_plugin_manager(blocked=["ok", "blocked"]))
    assert by_name["ok"].status == "blocked"


def test_no_autoload_has_only_the_core():
    pm = get_plugin_manager(autoload=False)
    assert [i.name for i in pm.plugin_infos()] == sorted(CORE_PLUGINS)


def test_plugins_json(fakedist):
    result = CliRunner().invoke(main, ["plugins", "-o", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    plugins = {p["name"]: p for p in doc["plugins"]}
    assert set(plugins["ok"]) >= {"name", "distribution", "version", "hooks", "status", "error"}
    statuses = [plugins[name]["status"] for name in ("ok", "importerror", "blocked")]
    assert statuses == ["active", "failed", "blocked"]
    assert plugins["ok"]["distribution"] == "extvisor-fake" and plugins["ok"]["version"] == "1.0"
    assert {"name": "fake", "plugin": "ok", "description": "a fake backend", "options": []} in doc["backends"]
    kinds = {c["key"]: c for c in doc["conditions"]}
    assert kinds["faketcp"]["plugin"] == "ok"
    assert kinds["path"]["plugin"] == "conditions" and kinds["path"]["aliases"] == ["file"]
    assert any(p["plugin"] == "importerror" for p in doc["problems"])


def test_plugins_table(fakedist):
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert "blocked" in rows["blocked"].split() and "failed" in rows["importerror"].split()
    assert "register_backends, register_conditions" in rows["ok"]
    assert "  faketcp " in result.stdout and "problems:" in result.stdout


def test_a_backend_contract_without_a_backend_fails_rather_than_skips(tmp_path):
    (tmp_path / "test_forgot.py").write_text(
        "from extvisor.testing import BackendContract\n\n\nclass TestForgot(BackendContract):\n    pass\n"
    )
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert r.returncode == 1, r.stdout
    assert "TestForgot defines no backend_factory fixture" in r.stdout
    assert " skipped" not in r.stdout
