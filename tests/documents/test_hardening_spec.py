"""Issue 17: name limits (item 3), validator gaps (item 11), config files read safely (item 8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from extvisor.documents.loader import MAX_FILE_BYTES, load_config_text, load_directory, load_service_text
from extvisor.documents.models import ExtensionServiceConfig, ServiceSpec
from extvisor.documents.validate import validate_files, validate_paths

SERVICE = "name: {name}\ncontainer:\n  entrypoint: /bin/sh\nrestart: never\n"


@pytest.mark.parametrize("length", [64, 65, 247, 300])
def test_names_longer_than_a_hostname_label_are_refused(length: int) -> None:
    loaded = load_service_text(SERVICE.format(name="a" * length), "long.yaml", {})
    assert loaded.spec is None
    [finding] = [f for f in loaded.findings if f.severity == "error"]
    assert (finding.line, finding.column) == (1, 7)
    assert f"name is too long ({length} characters; at most 63, a hostname label)" in finding.message
    with pytest.raises(ValidationError, match="at most 63"):
        ServiceSpec(name="a" * length)


def test_a_63_character_name_is_fine() -> None:
    assert load_service_text(SERVICE.format(name="a" * 63), "ok.yaml", {}).spec is not None


CONFIG = "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: {name}\nconfigFiles:\n  - content: x\n    mountPath: {path}\n"


@pytest.mark.parametrize("path", ["/", "//", "/.", "/./"])
def test_config_mount_path_of_the_root_is_refused(path: str) -> None:
    configs, findings = load_config_text(CONFIG.format(name="svc", path=path), "c.yaml")
    assert configs == []
    assert any("would cover the container's whole root filesystem" in f.message and f.line == 6 for f in findings)


@pytest.mark.parametrize("name", ["../escape", "../../etc", "a/b", "..", "A", "x" * 64])
def test_config_names_that_are_not_service_names_are_refused(name: str) -> None:
    configs, findings = load_config_text(CONFIG.format(name=f'"{name}"', path="/etc/x"), "c.yaml")
    assert configs == []
    assert any("is not a service name" in f.message and f.line == 3 for f in findings), findings
    with pytest.raises(ValidationError):
        ExtensionServiceConfig(apiVersion="v1alpha1", kind="ExtensionServiceConfig", name=name,
                               configFiles=[{"content": "x", "mountPath": "/etc/x"}])  # fmt: skip


def test_validate_and_daemon_agree_on_duplicates(tmp_path: Path) -> None:
    """Talos: the first file in name order wins; a later one with the same name is an error, skipped."""
    (tmp_path / "a.yaml").write_text(SERVICE.format(name="same"))
    (tmp_path / "b.yaml").write_text(SERVICE.format(name="same"))
    daemon_view = load_directory(tmp_path, {})
    assert [bool(s.spec) for s in daemon_view] == [True, False]
    [dup] = daemon_view[1].findings
    results = validate_files([tmp_path], {})
    assert [r.ok for r in results] == [True, False]
    [vdup] = results[1].findings
    assert (vdup.severity, vdup.message, vdup.line) == (dup.severity, dup.message, dup.line) == (
        "error", f"duplicate service spec: name same already declared by {tmp_path / 'a.yaml'}", 1)


def test_special_and_huge_files_are_skipped_with_the_reason(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    with open(tmp_path / "big.yaml", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    (tmp_path / "ok.yaml").write_text(SERVICE.format(name="ok"))
    messages = {Path(f.file).name: f.message for f in validate_paths([tmp_path], {})}
    assert messages == {
        "big.yaml": f"skipped: {MAX_FILE_BYTES + 1} bytes, larger than the {MAX_FILE_BYTES} byte limit",
        "fifo.yaml": "skipped: a FIFO, not a regular file",
        "zero.yaml": "skipped: a character device, not a regular file",
    }
    assert [s.spec.name for s in load_directory(tmp_path, {}) if s.spec] == ["ok"]


# -- issue 24 item 3: an environment entry without a name leaks its value -----------------

ENV_SERVICE = "name: env\ncontainer:\n  entrypoint: ./env\n  environment:\n{entries}restart: never\n"
ENV_CONFIG = "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: env\nenvironment:\n{entries}"


@pytest.mark.parametrize("entry, says", [
    ('"=hunter2"', "no name before '='"),
    ("BAD NAME=hunter2", "is not a variable name"),
    ("9LIVES=hunter2", "is not a variable name"),
    ("hunter2", "no '='"),
    ('"TS_AUTHKEY hunter2"', "no '='"),
    ('"OK=hun\\0ter2"', "NUL byte"),
])  # fmt: skip
def test_a_bad_environment_entry_is_refused_at_its_line_without_its_value(entry: str, says: str) -> None:
    text = ENV_SERVICE.format(entries=f"    - A=1\n    - {entry}\n")
    loaded = load_service_text(text, "env.yaml", {})
    assert loaded.spec is None
    [finding] = loaded.findings
    assert (finding.line, finding.column, finding.field) == (6, 7, "container.environment.1")
    assert says in finding.message and "hun" not in str(finding) and "ter2" not in str(finding)
    configs, findings = load_config_text(ENV_CONFIG.format(entries=f"  - {entry}\n  - B=2\n"), "c.yaml")
    assert configs == []
    [finding] = findings
    assert (finding.line, finding.column, finding.field) == (5, 5, "environment.0")
    assert says in finding.message and "hun" not in str(finding) and "ter2" not in str(finding)
    with pytest.raises(ValidationError) as exc:
        ExtensionServiceConfig(apiVersion="v1alpha1", kind="ExtensionServiceConfig", name="env",
                               environment=[yaml_text(entry)])  # fmt: skip
    assert says in str(exc.value.errors()[0]["msg"])


def yaml_text(entry: str) -> str:
    import yaml

    return yaml.safe_load(entry)


@pytest.mark.parametrize("entry", ["A=", "a.b-c_d=x=y", "_X= spaced value ", "PATH=/usr/bin:/bin", "E=\u00e9"])
def test_good_environment_entries_pass(entry: str) -> None:
    loaded = load_service_text(ENV_SERVICE.format(entries=f"    - '{entry}'\n"), "env.yaml", {})
    assert loaded.spec is not None and loaded.spec.container.environment == [entry], loaded.findings
