"""ExtensionServiceConfig documents, directories of specs, and the loader's own plugin hook."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from extvisor import LoadContext
from extvisor.documents.default_loader import extvisor_load_services
from extvisor.documents.loader import (
    load_config_documents,
    load_config_text,
    load_directory,
    load_service_file,
)
from extvisor.documents.validate import validate_paths

from conftest import TEST_KINDS as KINDS  # noqa: E402

HERE = Path(__file__).parents[1]  # tests/


CONFIG = """\
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: nut-client
configFiles:
  - content: |-
      MONITOR ${upsmonHost} 1 remote
    mountPath: /usr/local/etc/nut/upsmon.conf
environment:
  - UPS_NAME=ups
"""


def configs(text: str):
    return load_config_text(textwrap.dedent(text), "cfg.yaml")


def errors(findings):
    return [f for f in findings if f.severity == "error"]


def test_config_valid():
    docs, findings = configs(CONFIG)
    assert findings == []
    (doc,) = docs
    assert doc.name == "nut-client" and doc.environment == ["UPS_NAME=ups"]
    assert doc.configFiles[0].content == "MONITOR ${upsmonHost} 1 remote"
    assert doc.configFiles[0].mountPath == "/usr/local/etc/nut/upsmon.conf"


def test_config_env_only_and_files_only():
    env_only = "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: a\nenvironment: [X=1]\n"
    files_only = "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: a\nconfigFiles: [{content: x, mountPath: /x}]\n"
    assert configs(env_only)[1] == [] and configs(files_only)[1] == []


def test_config_needs_files_or_environment():
    docs, findings = configs("apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: a\n")
    assert docs == [] and "no config files or environment" in errors(findings)[0].message
    docs, findings = configs("apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: a\nenvironment: []\n")
    assert docs == [] and errors(findings)


def test_config_unknown_key_is_an_error():
    docs, findings = configs(CONFIG + "extra: 1\n")
    (err,) = errors(findings)
    assert docs == [] and err.message == "unknown key `extra`" and (err.line, err.column) == (10, 1)


def test_config_unknown_key_in_a_file_entry():
    docs, findings = configs(CONFIG.replace("    mountPath:", "    mode: 0o644\n    mountPath:"))
    (err,) = errors(findings)
    assert err.field == "configFiles.0.mode"


def test_config_api_version():
    docs, findings = configs(CONFIG.replace("v1alpha1", "v1alpha2"))
    assert docs == [] and errors(findings)[0].field == "apiVersion"
    docs, findings = configs(CONFIG.replace("apiVersion", "apiversion"))
    assert "missing apiVersion" in [e.message for e in errors(findings)]


def test_config_name_required():
    docs, findings = configs(CONFIG.replace("name: nut-client\n", ""))
    assert docs == [] and "missing name" in [e.message for e in errors(findings)]
    docs, findings = configs(CONFIG.replace("name: nut-client", "name: ''"))
    assert docs == [] and errors(findings)[0].field == "name"


@pytest.mark.parametrize("path", ["usr/local/etc/x", "/etc/../x", "''"])
def test_config_mount_path_absolute_and_clean(path):
    docs, findings = configs(CONFIG.replace("/usr/local/etc/nut/upsmon.conf", path))
    (err,) = errors(findings)
    assert docs == [] and err.field == "configFiles.0.mountPath" and err.line == 7


def test_config_several_documents_and_other_kinds():
    others = "---\nversion: v1alpha1\nmachine: {}\n---\napiVersion: v1alpha1\nkind: EtcFileConfig\nname: x\n---\n"
    text = CONFIG + others + CONFIG.replace("nut-client", "tailscale")
    docs, findings = configs(text)
    assert findings == [] and [d.name for d in docs] == ["nut-client", "tailscale"]


def test_config_duplicate_documents():
    docs, findings = configs(CONFIG + "---\n" + CONFIG)
    (err,) = errors(findings)
    assert err.message == "duplicate document: ExtensionServiceConfig/nut-client"
    assert err.line == 13 and [d.name for d in docs] == ["nut-client"]


def test_config_document_not_a_mapping():
    docs, findings = configs(CONFIG + "---\n- a\n")
    assert [d.name for d in docs] == ["nut-client"] and "must be a mapping" in errors(findings)[0].message


def test_config_syntax_error_and_bytes():
    docs, findings = load_config_text(b"kind: [\n", "cfg.yaml")
    assert docs == [] and errors(findings)[0].message.startswith("YAML syntax error")
    docs, findings = load_config_text(b"\xff\xfekind", "cfg.yaml")
    assert docs == []


def test_config_from_file(tmp_path):
    (tmp_path / "a.yaml").write_text(CONFIG)
    docs, findings = load_config_documents(tmp_path / "a.yaml")
    assert findings == [] and docs[0].name == "nut-client"
    docs, findings = load_config_documents(tmp_path / "missing.yaml")
    assert docs == [] and "cannot read" in errors(findings)[0].message


# -- directories ---------------------------------------------------------------------

SPEC = "name: {name}\ncontainer:\n  entrypoint: ./{entry}\nrestart: always\n"


def write(directory: Path, filename: str, name: str, entry: str = "x") -> None:
    (directory / filename).write_text(SPEC.format(name=name, entry=entry))


def test_directory_reads_only_yaml_in_name_order(tmp_path):
    write(tmp_path, "b.yaml", "bee")
    write(tmp_path, "a.yaml", "ay")
    write(tmp_path, "c.yml", "yml")
    write(tmp_path, "d.YAML", "upper")
    write(tmp_path, "e.yaml.bak", "bak")
    (tmp_path / "f.bar").write_text("")
    (tmp_path / "dir.yaml").mkdir()
    write(tmp_path, "with space.yaml", "spaced")
    loaded = load_directory(tmp_path, KINDS)
    assert [Path(s.source).name for s in loaded] == ["a.yaml", "b.yaml", "with space.yaml"]
    assert [s.spec.name for s in loaded] == ["ay", "bee", "spaced"]


def test_directory_duplicate_first_wins(tmp_path):
    write(tmp_path, "hello.yaml", "hello-world", "hello-world")
    write(tmp_path, "zduplicate.yaml", "hello-world", "duplicate")
    first, second = load_directory(tmp_path, KINDS)
    assert first.spec.container.entrypoint == "./hello-world"
    assert second.spec is None
    (err,) = second.findings
    assert err.message == f"duplicate service spec: name hello-world already declared by {tmp_path / 'hello.yaml'}"
    assert (err.line, err.column, err.field) == (1, 7, "name")


def test_directory_invalid_file_does_not_claim_its_name(tmp_path):
    (tmp_path / "a.yaml").write_text(SPEC.format(name="svc", entry="x").replace("always", "random"))
    write(tmp_path, "b.yaml", "svc", "good")
    bad, good = load_directory(tmp_path, KINDS)
    assert bad.spec is None and good.spec.container.entrypoint == "./good"


def test_directory_strict(tmp_path):
    (tmp_path / "a.yaml").write_text(SPEC.format(name="svc", entry="x") + "mounts: []\n")
    assert load_directory(tmp_path, KINDS)[0].ok
    assert not load_directory(tmp_path, KINDS, strict=True)[0].ok


def test_service_file_unreadable(tmp_path):
    loaded = load_service_file(tmp_path / "nope.yaml", KINDS)
    assert loaded.spec is None and "cannot read" in loaded.findings[0].message


def test_core_hook_reads_the_config_dir(tmp_path):
    write(tmp_path, "a.yaml", "a")
    (tmp_path / "b.yaml").write_text(SPEC.format(name="b", entry="x") + "depends:\n  - path: /x\n")
    loaded = extvisor_load_services(LoadContext(config_dir=tmp_path, kinds=KINDS))
    assert [s.spec.name for s in loaded] == ["a", "b"]
    assert extvisor_load_services(LoadContext(config_dir=tmp_path / "missing", kinds=KINDS)) == []
    strict = extvisor_load_services(LoadContext(config_dir=tmp_path, kinds=KINDS, strict=True))
    assert all(s.ok for s in strict)


def test_validate_paths_mixes_kinds(tmp_path):
    write(tmp_path, "svc.yaml", "svc")
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    (tmp_path / "bad.yaml").write_text("name: BAD\n")
    findings = validate_paths([tmp_path], KINDS)
    assert {Path(f.file).name for f in findings} == {"bad.yaml"}
    assert validate_paths([tmp_path / "svc.yaml", tmp_path / "cfg.yaml"], KINDS) == []
