"""``extvisor validate`` and ``extvisor schema``, run as a user runs them."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import require_corpus

from extvisor.cli import documents as cli_spec
from extvisor.cli import main

HERE = Path(__file__).parents[1]  # tests/
CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus"
LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning): (?P<rest>.+)$")

GOOD = "name: good\ncontainer:\n  entrypoint: ./good\nrestart: always\n"
WARN = GOOD.replace("good", "warn") + "mounts: []\n"
BAD = "name: BAD\ncontainer:\n  entrypoint: ./bad\nrestart: random\n"
CONFIG = "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: good\nenvironment: [A=1]\n"
BAD_CONFIG = "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: good\nenvironment: [A=1]\nbogus: 1\n"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def files(tmp_path):
    for name, text in {"a-bad.yaml": BAD, "b-good.yaml": GOOD, "c-warn.yaml": WARN, "d-config.yaml": CONFIG}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_valid_file_exits_0(files):
    result = run("validate", str(files / "b-good.yaml"))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "1 file(s): 1 ok" in result.stderr


def test_findings_one_per_line_and_exit_1(files):
    result = run("validate", str(files / "a-bad.yaml"))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed)
    assert [(m["line"], m["col"], m["sev"]) for m in parsed] == [("1", "7", "error"), ("4", "10", "error")]
    assert lines[0] == f'{files / "a-bad.yaml"}:1:7: error: name: name "BAD" is invalid (must match ^[-_a-z0-9]+$)'
    assert "2 error(s)" in result.stderr


def test_goes_on_past_bad_files_and_tells_kinds_apart(files):
    (files / "e-bad-config.yaml").write_text(BAD_CONFIG)
    result = run("validate", str(files))
    assert result.exit_code == 1
    named = {Path(LINE.match(line)["file"]).name for line in result.stdout.splitlines()}
    assert named == {"a-bad.yaml", "c-warn.yaml", "e-bad-config.yaml"}
    assert "unknown key `bogus`" in result.stdout  # strict config, not a lenient service


def test_warnings_alone_exit_0_and_strict_makes_them_errors(files):
    result = run("validate", str(files / "c-warn.yaml"))
    assert result.exit_code == 0 and ": warning: mounts: unknown key `mounts`" in result.stdout
    strict = run("validate", "--strict", str(files / "c-warn.yaml"))
    assert strict.exit_code == 1 and ": error: mounts: unknown key `mounts`" in strict.stdout


def test_json_output(files):
    result = run("validate", "-o", "json", str(files))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    status = {Path(f["file"]).name: (f["kind"], f["ok"]) for f in doc["files"]}
    assert status == {
        "a-bad.yaml": ("service", False),
        "b-good.yaml": ("service", True),
        "c-warn.yaml": ("service", True),
        "d-config.yaml": ("config", True),
    }
    first = doc["findings"][0]
    assert set(first) == {"file", "line", "column", "severity", "field", "message"}
    assert (first["line"], first["column"], first["field"]) == (1, 7, "name")


def test_missing_path_and_syntax_error(tmp_path):
    (tmp_path / "broken.yaml").write_bytes(b"name: [\n")
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    result = run("validate", str(tmp_path / "nope.yaml"), str(tmp_path / "broken.yaml"), str(tmp_path / "latin1.yaml"))
    assert result.exit_code == 1
    out = result.stdout
    assert "nope.yaml:0:0: error: no such file or directory" in out
    assert re.search(r"broken.yaml:2:1: error: YAML syntax error", out)
    assert "latin1.yaml:1:10: error: not valid UTF-8" in out


def test_duplicate_names_are_an_error_as_in_the_daemon(tmp_path):
    """Issue 17, item 11: validate said warning while the daemon (and Talos) refuse the later file."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("./good", "./other"))
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1
    expected = f"b.yaml:1:7: error: name: duplicate service spec: name good already declared by {tmp_path / 'a.yaml'}"
    assert expected in result.stdout


def test_corpus_validates():
    require_corpus()
    result = run("validate", str(CORPUS / "extension-services"), str(CORPUS / "extension-service-configs" / "whole-files"))
    # the nvidia lts/production pairs share names: in one directory Talos skips the later of each
    assert result.exit_code == 1, result.output
    assert "33 file(s): 30 ok, 3 with errors; 3 error(s), 0 warning(s)" in result.stderr, result.output
    assert result.stdout.count("duplicate service spec") == 3


def test_python_dash_m(tmp_path):
    (tmp_path / "a.yaml").write_text(BAD)
    command = [sys.executable, "-m", "extvisor", "validate", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and 'name "BAD" is invalid' in proc.stdout


# -- a third party's condition kind --------------------------------------------------


def _fake_ok_plugin():
    spec = importlib.util.spec_from_file_location("extvisor_fake_ok_bypath", HERE / "fakedist" / "extvisor_fake_ok.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def with_tcp_plugin(monkeypatch):
    from extvisor.plugins import get_plugin_manager

    def pm():
        manager = get_plugin_manager()
        manager.register_module(_fake_ok_plugin(), name="fake-tcp", distribution="extvisor-fake")
        return manager

    monkeypatch.setattr(cli_spec, "_plugin_manager", pm)


def test_third_party_key_validates(tmp_path, with_tcp_plugin):
    (tmp_path / "ok.yaml").write_text(GOOD + "depends:\n  - faketcp: db:5432\n")
    (tmp_path / "bad.yaml").write_text(GOOD.replace("good", "bad") + "depends:\n  - faketcp: nope\n")
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout.strip() == f'{tmp_path / "bad.yaml"}:6:14: error: depends.0.faketcp: "nope" is not host:port'


def test_unknown_key_without_the_plugin(tmp_path):
    (tmp_path / "ok.yaml").write_text(GOOD + "depends:\n  - faketcp: db:5432\n")
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1 and "unknown dependency kind `faketcp` (known: " in result.stdout


# -- schema --------------------------------------------------------------------------


def test_schema_kinds(with_tcp_plugin):
    service = json.loads(run("schema", "--kind", "service").stdout)
    items = service["properties"]["depends"]["anyOf"][0]["items"]["oneOf"]
    keys = [next(iter(choice["properties"])) for choice in items]
    assert {"service", "path", "file", "network", "time", "configuration", "faketcp"} <= set(keys)
    assert service["additionalProperties"] is False and "Dependency" not in service["$defs"]
    config = json.loads(run("schema", "--kind", "config").stdout)
    assert config["properties"]["kind"] == {"const": "ExtensionServiceConfig"}
    assert config["additionalProperties"] is False
    both = json.loads(run("schema").stdout)
    assert {"ServiceSpec", "ExtensionServiceConfig"} <= set(both["$defs"])


def test_schema_accepts_the_corpus_and_rejects_mistakes():
    import jsonschema  # a dev dependency

    require_corpus()
    schema = json.loads(run("schema").stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((CORPUS / "extension-services").glob("*.yaml")):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
    good = yaml.safe_load(GOOD)
    assert list(validator.iter_errors({**good, "mounts": []}))
    assert list(validator.iter_errors({**good, "depends": [{"nothing": True}]}))
    assert list(validator.iter_errors({**good, "depends": [{"path": "/a", "service": "b"}]}))


def test_machine_config_without_extension_service_config(tmp_path):
    (tmp_path / "machine.yaml").write_text("apiVersion: v1alpha1\nkind: SysctlConfig\nname: x\n")
    result = run("validate", str(tmp_path / "machine.yaml"))
    assert result.exit_code == 0
    assert "machine.yaml:1:1: warning: no ExtensionServiceConfig document (other kinds are not checked)" in result.stdout


def test_validate_refuses_a_nameless_environment_entry_without_printing_it(tmp_path):
    (tmp_path / "svc.yaml").write_text(GOOD.replace("  entrypoint", '  environment: ["=hunter2", "BAD NAME=hunter2"]\n  entrypoint'))
    (tmp_path / "cfg.yaml").write_text(CONFIG.replace("[A=1]", "[TS_AUTHKEY hunter2]"))
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1
    lines = [LINE.match(line) for line in result.output.splitlines() if ": error: " in line]
    where = sorted((Path(m["file"]).name, int(m["line"]), m["rest"].split(":")[0]) for m in lines)
    assert where == [("cfg.yaml", 4, "environment.0"), ("svc.yaml", 3, "container.environment.0"),
                     ("svc.yaml", 3, "container.environment.1")]  # fmt: skip
    assert "hunter2" not in result.output


def test_schema_of_image_verification_config():
    import jsonschema  # a dev dependency

    schema = json.loads(run("schema", "--kind", "image-verification").stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    check = jsonschema.Draft202012Validator(schema)
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n"
    good = {"apiVersion": "v1alpha1", "kind": "ImageVerificationConfig", "rules": [
        {"image": "registry.example.com/extensions/*", "publicKey": {"certificate": pem}},
        {"image": "registry.example.com/experimental/*", "skip": True},
        {"image": "*", "deny": True}]}  # fmt: skip
    assert not list(check.iter_errors(good))
    for bad_rule in ({"image": "r/x", "skip": True, "deny": True}, {"image": "r/x"},
                     {"image": "r/x", "keyless": {"issuer": "i"}}, {"image": "r/x@sha256:ab", "deny": True}):  # fmt: skip
        assert list(check.iter_errors({**good, "rules": [bad_rule]})), bad_rule
    both = json.loads(run("schema").stdout)
    jsonschema.Draft202012Validator.check_schema(both)
    assert not list(jsonschema.Draft202012Validator(both).iter_errors(good))
