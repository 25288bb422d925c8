"""The real-world corpus (../shared/corpus): what Talos accepts, extvisor accepts, and the reverse.

Runs twice: with the real plugin manager (the built-in conditions plugin, as a user gets
it) and with equivalent kinds from a test plugin, so a loader bug is told from a plugin bug.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import CORPUS, TEST_KINDS, require_corpus

from extvisor.documents.loader import load_directory, load_service_file
from extvisor.documents.validate import validate_file, validate_files
from extvisor.documents.models import Restart

EXTSERVICES_PREFIX = "internal__app__machined__pkg__controllers__runtime__testdata__extservices__"



@pytest.fixture(autouse=True)
def _corpus() -> None:
    require_corpus()

# Why each file the manifest marks `invalid` is rejected: every one must be listed here.
INVALID_REASONS = {
    "extension-service-configs/talos__pkg__machinery__config__configloader__internal__decoder__decoder_test.go__01.yaml": [
        "missing apiVersion"
    ],
    f"talos-testdata/{EXTSERVICES_PREFIX}invalid.yaml": ['restart kind is invalid: "random"'],
    "talos-testdata/derived-from-go-tests/validate-empty.yaml": [
        'name "" is invalid',
        "restart is required",
        "container entrypoint can't be empty",
    ],
    "talos-testdata/derived-from-go-tests/validate-invalid-name.yaml": ['name "FOO" is invalid (must match ^[-_a-z0-9]+$)'],
    "talos-testdata/derived-from-go-tests/validate-invalid-deps.yaml": [
        "no dependency specified",
        'path is not absolute: "./somefile"',
        "more than a single dependency is set",
    ],
    "talos-testdata/derived-from-go-tests/decode-invalid-network-status.yaml": ['"bogus"'],
}


@pytest.fixture(scope="module", params=["real-plugins", "test-kinds"])
def kinds(request):
    if request.param == "test-kinds":
        return TEST_KINDS
    from extvisor.plugins import get_plugin_manager

    found = get_plugin_manager().condition_kinds()
    assert {"service", "path", "network", "time", "configuration"} <= set(found)
    return found


def manifest_entries():
    if not CORPUS.is_dir():
        return [{"file": "corpus-missing"}]  # one item, failed by _corpus: an empty list would skip
    # patch fragments, ignored and invalid-in-context files are covered by the directory tests.
    skip = ("patch", "ignored", "invalid-in-context")
    return [e for e in json.loads((CORPUS / "manifest.json").read_text())["files"] if e.get("expected") not in (None, *skip)]


def errors(findings):
    return [f for f in findings if f.severity == "error"]


def test_all_31_extension_services_load_cleanly(kinds):
    files = sorted((CORPUS / "extension-services").glob("*.yaml"))
    assert len(files) == 31
    for path in files:
        loaded = load_service_file(path, kinds, strict=True)
        assert loaded.ok and loaded.findings == [], [str(f) for f in loaded.findings]
    names = {load_service_file(p, kinds).spec.name for p in files}
    assert len(names) == 28


@pytest.mark.parametrize("entry", manifest_entries(), ids=lambda e: e["file"].rsplit("/", 1)[-1][:60])
def test_manifest_expectation(entry, kinds):
    path = CORPUS / entry["file"]
    expected = entry["expected"]
    result = validate_file(path, kinds)
    if expected == "valid":
        assert not errors(result.findings), [str(f) for f in result.findings]
        if entry["category"].startswith("extension-service-config"):
            assert result.kind == "config" and result.names
        else:
            assert result.kind == "service" and result.names
        return
    assert expected == "invalid"
    assert errors(result.findings), f"{entry['file']} should be rejected: {entry.get('note')}"
    reasons = INVALID_REASONS[entry["file"]]  # a new invalid file needs its reason listed
    messages = " | ".join(f.message for f in errors(result.findings))
    for reason in reasons:
        assert reason in messages


def test_validate_empty_gives_exactly_three_errors(kinds):
    result = validate_file(CORPUS / "talos-testdata/derived-from-go-tests/validate-empty.yaml", kinds)
    assert sorted(f.field for f in errors(result.findings)) == ["container.entrypoint", "name", "restart"]


def test_talos_extservices_dir(tmp_path, kinds):
    # Talos's controller test directory, under its original file names.
    for path in (CORPUS / "talos-testdata").iterdir():
        if path.name.startswith(EXTSERVICES_PREFIX):
            shutil.copy(path, tmp_path / path.name.removeprefix(EXTSERVICES_PREFIX))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["foo.bar", "frr.yaml", "hello.yaml", "invalid.yaml", "zduplicate.yaml"]
    loaded = load_directory(tmp_path, kinds)
    assert [Path(s.source).name for s in loaded] == ["frr.yaml", "hello.yaml", "invalid.yaml", "zduplicate.yaml"]
    registered = {s.spec.id: s.spec for s in loaded if s.ok}
    assert sorted(registered) == ["ext-frr", "ext-hello-world"]
    assert registered["ext-hello-world"].container.entrypoint == "./hello-world"
    by_file = {Path(s.source).name: s for s in loaded}
    assert any("restart kind is invalid" in f.message for f in by_file["invalid.yaml"].findings)
    (dup,) = by_file["zduplicate.yaml"].findings
    assert dup.severity == "error" and dup.message.startswith("duplicate service spec: name hello-world")


def test_golden_hello(kinds):
    golden = CORPUS / "talos-testdata" / "pkg__machinery__extensions__services__testdata__hello.yaml"
    spec = load_service_file(golden, kinds).spec
    assert spec.name == "hello"
    assert spec.container.entrypoint == "hello-world"
    assert spec.container.args == ["--development", "--log=debug"]
    (mount,) = spec.container.mounts
    assert (mount.source, mount.destination, mount.type) == ("/var/lib/example", "/var/lib/example", "bind")
    assert mount.options == ["rbind", "ro"]
    assert [(d.kind, d.value) for d in spec.depends] == [
        ("service", "cri"),
        ("path", "/system/run/machined/machined.sock"),
        ("network", ["addresses"]),
    ]
    assert spec.restart is Restart.never


def test_supplementary(kinds):
    aws_file = "container-runtime__aws-iam-authenticator__aws-iam-authenticator@e8cebbe90616.yaml"
    aws = load_service_file(CORPUS / "supplementary" / aws_file, kinds)
    assert aws.ok
    (warn,) = aws.findings
    assert warn.severity == "warning" and warn.field == "mounts" and "unknown key `mounts`" in warn.message
    assert (warn.line, warn.column) == (16, 1)
    assert aws.spec.container.mounts is None  # Talos runs it without mounts
    assert ("time", True) in [(d.kind, d.value) for d in aws.spec.depends]
    tailscale = load_service_file(CORPUS / "supplementary/network__tailscale__tailscale@fbaefd573c86.yaml", kinds)
    assert tailscale.ok and tailscale.spec.container.environmentFile == "/var/etc/tailscale/auth.env"


def test_nvidia_pairs_in_one_dir_are_duplicates(kinds):
    loaded = load_directory(CORPUS / "extension-services", kinds)
    assert len(loaded) == 31
    dups = [s for s in loaded if not s.ok]
    assert sorted(Path(s.source).name for s in dups) == [
        "nvidia-gpu__nvidia-container-toolkit__production__nvidia-cdi-gen.yaml",
        "nvidia-gpu__nvidia-container-toolkit__production__nvidia-persistenced.yaml",
        "nvidia-gpu__nvidia-fabricmanager__production__nvidia-fabricmanager.yaml",
    ]
    assert all("duplicate service spec" in s.findings[0].message and "__lts__" in s.findings[0].message for s in dups)


def test_field_semantics_from_the_corpus(kinds):
    def spec(name):
        return load_service_file(CORPUS / "extension-services" / name, kinds).spec

    iscsid = spec("storage__iscsi-tools__iscsid.yaml")
    assert iscsid.container.security.maskedPaths == [] and iscsid.container.security.readonlyPaths == []
    assert spec("examples__hello-world-service__hello-world.yaml").container.security.maskedPaths is None
    metal = spec("guest-agents__metal-agent__metal-agent.yaml")
    assert metal.container.args == [] and metal.logToConsole is True
    cloudflared = spec("network__cloudflared__cloudflared.yaml")
    network = next(d.value for d in cloudflared.depends if d.kind == "network")
    assert set(network) == {"addresses", "connectivity", "etcfiles", "hostname"}
    assert spec("storage__zfs__zfs-service.yaml").restart is Restart.untilSuccess


def test_whole_config_streams(kinds):
    results = validate_files([CORPUS / "extension-service-configs" / "whole-files"], kinds)
    assert [r.kind for r in results] == ["config", "config"]
    assert all(r.ok and r.findings == [] for r in results)
    assert len(results[0].names) == 4 and len(results[1].names) == 1


def test_corpus_dirs_validate_without_errors_but_the_duplicates(kinds):
    results = validate_files([CORPUS / "extension-services", CORPUS / "supplementary"], kinds)
    errors = [f for r in results for f in r.findings if f.severity == "error"]
    # in one directory the nvidia production files repeat the lts names: Talos skips them
    assert sorted(Path(f.file).name for f in errors) == [
        "nvidia-gpu__nvidia-container-toolkit__production__nvidia-cdi-gen.yaml",
        "nvidia-gpu__nvidia-container-toolkit__production__nvidia-persistenced.yaml",
        "nvidia-gpu__nvidia-fabricmanager__production__nvidia-fabricmanager.yaml",
    ], [str(f) for f in errors]
    assert all("duplicate service spec" in f.message for f in errors)
