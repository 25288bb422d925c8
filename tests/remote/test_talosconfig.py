"""The talosconfig-shaped client file: read, write (0600), contexts, merge."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from extvisor.remote.talosconfig import CONFIG_ENV, Config, ConfigError, Context, config_path, default_path

# The shape talosctl writes (keys abbreviated; they are opaque base64 here).
TALOSCONFIG = """\
context: admin@lab
contexts:
  admin@lab:
    endpoints:
    - 10.5.0.2
    nodes:
    - 10.5.0.2
    - 10.5.0.3
    ca: Y2E=
    crt: Y3J0
    key: a2V5
  old:
    target: 10.5.0.9
    endpoints: []
    auth:
      siderov1:
        identity: someone
cluster: lab
"""


def test_reads_a_talosconfig_as_it_is(tmp_path: Path) -> None:
    p = tmp_path / "talosconfig"
    p.write_text(TALOSCONFIG)
    cfg = Config.load(p)
    name, ctx = cfg.current()
    assert name == "admin@lab"
    assert ctx.endpoints == ["10.5.0.2"] and ctx.nodes == ["10.5.0.2", "10.5.0.3"]
    assert (ctx.ca_pem, ctx.crt_pem, ctx.key_pem) == (b"ca", b"crt", b"key")
    assert cfg.contexts["old"].endpoints == ["10.5.0.9"]  # Talos appends the deprecated target
    # unknown fields survive a round trip
    cfg.save(tmp_path / "copy")
    again = yaml.safe_load((tmp_path / "copy").read_text())
    assert again["cluster"] == "lab"
    assert again["contexts"]["old"]["auth"] == {"siderov1": {"identity": "someone"}}
    assert list(again) == ["context", "contexts", "cluster"]
    assert list(again["contexts"]["admin@lab"]) == ["endpoints", "nodes", "ca", "crt", "key"]


def test_save_is_0600_and_creates_directories(tmp_path: Path) -> None:
    cfg = Config(context="r", contexts={"r": Context.from_pems(b"CA", b"CRT", b"KEY", ["127.0.0.2:50001"])})
    target = tmp_path / "a" / "b" / "config"
    cfg.save(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    raw = yaml.safe_load(target.read_text())
    assert raw == {"context": "r", "contexts": {"r": {"endpoints": ["127.0.0.2:50001"],
                   "ca": base64.b64encode(b"CA").decode(), "crt": base64.b64encode(b"CRT").decode(),
                   "key": base64.b64encode(b"KEY").decode()}}}  # fmt: skip
    target.chmod(0o644)  # an existing file loosened by hand is tightened again
    Config.load(target).save()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["config"]  # no temp files left


def test_where_the_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path() == tmp_path / ".extvisor" / "config"
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "env-config"))
    assert config_path(None) == tmp_path / "env-config"
    assert config_path(tmp_path / "flag") == tmp_path / "flag"


def test_errors_say_what_is_wrong(tmp_path: Path) -> None:
    missing = Config.load(tmp_path / "none")
    assert missing.empty
    with pytest.raises(ConfigError, match="config file is empty"):
        missing.current()
    (tmp_path / "empty").write_text("")
    assert Config.load(tmp_path / "empty").empty
    (tmp_path / "list").write_text("- a\n")
    with pytest.raises(ConfigError, match="not a talosconfig"):
        Config.load(tmp_path / "list")
    (tmp_path / "bad").write_text("context: [\n")
    with pytest.raises(ConfigError, match="not YAML"):
        Config.load(tmp_path / "bad")
    p = tmp_path / "t"
    p.write_text(TALOSCONFIG)
    cfg = Config.load(p)
    with pytest.raises(ConfigError, match="context 'nope' is not defined"):
        cfg.current("nope")
    with pytest.raises(ConfigError, match="is not defined"):
        cfg.use("nope")
    cfg.use("old")
    assert cfg.current()[0] == "old"


def test_merge_renames_clashes_and_takes_the_merged_current() -> None:
    mine = Config(context="a", contexts={"a": Context(endpoints=["1"]), "a-1": Context(endpoints=["2"])})
    theirs = Config(context="a", contexts={"a": Context(endpoints=["3"]), "b": Context(endpoints=["4"])})
    notes = mine.merge(theirs)
    assert notes == ['renamed extvisor config context "a" -> "a-2"']
    assert {k: v.endpoints for k, v in mine.contexts.items()} == {"a": ["1"], "a-1": ["2"], "a-2": ["3"], "b": ["4"]}
    assert mine.context == "a-2"
