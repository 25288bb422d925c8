"""Talos's rules in Talos's words, and extvisor's own, on plain tarballs and directories."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from extensions.images import Entry, extension_entries, file, manifest_yaml, plain_tarball, service_yaml, symlink

from extvisor.extensions import FetchOptions, parse_ref
from extvisor.extensions import image as img
from extvisor.extensions.manifest import talos_version


def validate(tmp_path: Path, entries: list[Entry], kinds, talos, strict: bool = False, name: str = "x.tar"):
    path = tmp_path / name
    plain_tarball(path, entries)
    return img.validate(parse_ref(f"tarball:{path}"), FetchOptions(), talos, kinds, strict, tmp=str(tmp_path))


def lines(result) -> list[str]:
    return [str(p) for p in result.problems]


def hello(**kw) -> list[Entry]:
    return extension_entries("hello-world", {"hello-world": service_yaml("hello-world")}, **kw)


def test_good_extension_has_no_problem(tmp_path, kinds, talos):
    result = validate(tmp_path, hello(), kinds, talos)
    assert lines(result) == []
    assert result.check.manifest.name == "hello-world"
    assert [s.id for s in result.check.services] == ["ext-hello-world"]
    assert "/usr/local/etc/containers/hello-world.yaml" in result.check.files
    assert result.digest.startswith("sha256:")


def test_manifest_v1alpha2(tmp_path, kinds, talos):
    entries = [file("manifest.yaml", manifest_yaml("x", manifest_version="v1alpha2")), *hello()[1:]]
    assert lines(validate(tmp_path, entries, kinds, talos)) == ['manifest.yaml: error: unsupported manifest version: "v1alpha2"']


def test_unsatisfiable_constraint_in_talos_words(tmp_path, kinds, talos):
    result = validate(tmp_path, hello(constraint=">= v1.13.0"), kinds, talos)
    assert lines(result) == ['manifest.yaml: error: error validating extension "hello-world": '
                             "version constraint >= v1.13.0 can't be satisfied with Talos version 1.12.11"]  # fmt: skip
    assert lines(validate(tmp_path, hello(constraint=">= v1.13.0"), kinds, talos_version("v1.13.0-beta.1"))) == []


def test_constraint_that_does_not_parse(tmp_path, kinds, talos):
    result = validate(tmp_path, hello(constraint=">= 1.x.y"), kinds, talos)
    assert lines(result) == ['manifest.yaml: error: error validating extension "hello-world": error parsing Talos version '
                             'constraint: Could not parse Range ">=1.0.y": Could not parse version "1.0.y" in ">=1.0.y": '
                             'Invalid character(s) found in patch number "y"']  # fmt: skip


def test_disallowed_path(tmp_path, kinds, talos):
    entries = [*hello(), file("rootfs/etc/foo", "x"), file("rootfs/usr/localfoo", "quirk: a plain prefix match passes"),
               symlink("rootfs/usr/lib/modules/x", "/etc")]  # fmt: skip
    result = validate(tmp_path, entries, kinds, talos)
    assert lines(result) == ['rootfs/etc/foo: error: path "/etc/foo" is not allowed in extensions']


def test_special_file_in_a_tarball_refused(tmp_path, kinds, talos):
    entries = [*hello(), Entry("rootfs/usr/local/pipe", type=tarfile.FIFOTYPE)]
    assert lines(validate(tmp_path, entries, kinds, talos)) == [
        "rootfs/usr/local/pipe: error: tarball: entry 'rootfs/usr/local/pipe': special files are not allowed (a FIFO)"
    ]


def test_version_format_of_the_extensions_validator(tmp_path, kinds, talos):
    for good in ("1.94.2", "v2.8.4", "20220117", "20220117.1", "535.129.03-v1.8.0-alpha.0-10-g336fa0f-dirty",
                 "5815ee3-v1.8.0", "4.3", "v4.3", "1.0.0-rc.1"):  # fmt: skip
        assert lines(validate(tmp_path, hello(version=good), kinds, talos)) == [], good
    for bad in ("latest", "1.0.0.1", "20220117.0-v1.0.0", "1.0.0+build"):
        assert lines(validate(tmp_path, hello(version=bad), kinds, talos)) == [
            f"manifest.yaml: error: invalid version format {bad} for extension: hello-world"
        ], bad


def test_top_level_must_be_manifest_and_rootfs(tmp_path, kinds, talos):
    assert lines(validate(tmp_path, [*hello(), file("README", "x")], kinds, talos)) == ['README: error: unexpected file "README"']
    assert lines(validate(tmp_path, hello()[1:], kinds, talos)) == ["manifest.yaml: error: extension manifest is missing"]
    assert lines(validate(tmp_path, hello()[:1], kinds, talos)) == ["rootfs: error: extension rootfs is missing"]


def test_service_file_problems_located(tmp_path, kinds, talos):
    bad = "name: bad\ncontainer:\n  entrypoint: ./x\nrestart: sometimes\n"
    entries = extension_entries("two", {"good": service_yaml("good"), "bad": bad})
    result = validate(tmp_path, entries, kinds, talos)
    out = lines(result)
    assert any(line.startswith("rootfs/usr/local/etc/containers/bad.yaml:4:10: error: restart: restart kind is invalid")
               for line in out), out  # fmt: skip
    assert [s.spec.name for s in result.check.services] == ["good"]


def test_one_diagnostic_type_for_files_documents_and_images(tmp_path, kinds, talos):
    # Image problems are the loader's Finding: a place in a file keeps its line and field,
    # a path inside the image has no position.
    from extvisor import Finding

    bad = "name: bad\ncontainer:\n  entrypoint: ./x\nrestart: sometimes\n"
    entries = [*extension_entries("two", {"bad": bad}), file("rootfs/etc/foo", "x")]
    problems = validate(tmp_path, entries, kinds, talos).problems
    assert problems and all(type(p) is Finding for p in problems)
    placed = next(p for p in problems if p.field == "restart")
    assert (placed.file, placed.line, placed.column) == ("rootfs/usr/local/etc/containers/bad.yaml", 4, 10)
    path = next(p for p in problems if p.file == "rootfs/etc/foo")
    assert path.as_dict() == {"file": "rootfs/etc/foo", "line": None, "column": None, "severity": "error", "field": "",
                              "message": 'path "/etc/foo" is not allowed in extensions'}  # fmt: skip
    assert str(Finding.at_path("", "warning", "from skopeo")) == "warning: from skopeo"
    assert str(Finding("x.yaml", 0, 0, "error", "", "cannot read")) == "x.yaml:0:0: error: cannot read"


def test_service_without_its_rootfs(tmp_path, kinds, talos):
    entries = [e for e in hello() if not e.name.startswith("rootfs/usr/local/lib/containers/hello-world")]
    assert lines(validate(tmp_path, entries, kinds, talos)) == [
        "rootfs/usr/local/etc/containers/hello-world.yaml: error: the rootfs of service hello-world, "
        "rootfs/usr/local/lib/containers/hello-world, is missing"
    ]


def test_symlinked_manifest_or_service_file_is_not_read(tmp_path, kinds, talos):
    secret = tmp_path / "secret.yaml"
    secret.write_text(manifest_yaml("stolen"))
    entries = [symlink("manifest.yaml", str(secret)), *hello()[1:]]
    assert lines(validate(tmp_path, entries, kinds, talos)) == ["manifest.yaml: error: manifest.yaml is a symlink: it must be a file"]
    entries = [*hello(), symlink("rootfs/usr/local/etc/containers/evil.yaml", "/etc/hostname")]
    assert lines(validate(tmp_path, entries, kinds, talos)) == [
        "rootfs/usr/local/etc/containers/evil.yaml: error: a service file must be a regular file, not a symlink"
    ]


def test_two_services_with_one_name(tmp_path, kinds, talos):
    entries = [*hello(), file("rootfs/usr/local/etc/containers/zz-again.yaml", service_yaml("hello-world"))]
    out = lines(validate(tmp_path, entries, kinds, talos))
    assert out == ["rootfs/usr/local/etc/containers/zz-again.yaml: error: name: duplicate service spec: name hello-world "
                   "already declared by rootfs/usr/local/etc/containers/hello-world.yaml"]


def test_directory_validates_in_place(tmp_path, kinds, talos):
    d = tmp_path / "unpacked"
    d.mkdir()
    plain_tarball(tmp_path / "t.tar", hello())
    with tarfile.open(tmp_path / "t.tar") as tar:
        tar.extractall(d)  # noqa: S202 - our own tar
    os.mkfifo(d / "rootfs/usr/local/fifo")
    result = img.validate(parse_ref(str(d), allow_dir=True), FetchOptions(), talos, kinds)
    assert lines(result) == ['rootfs/usr/local/fifo: error: special files are not allowed: "/usr/local/fifo"']


def test_missing_file_is_a_clear_error(tmp_path, kinds, talos):
    result = img.validate(parse_ref(f"tarball:{tmp_path}/nope.tar"), FetchOptions(), talos, kinds)
    assert lines(result) == [f"error: tarball:{tmp_path}/nope.tar: {tmp_path}/nope.tar is not a file"]


@pytest.mark.parametrize("strict", [False, True])
def test_strict_makes_warnings_errors(tmp_path, kinds, talos, strict):
    entries = [*hello(), file("rootfs/usr/local/share/w", "x", 0o666)]
    result = validate(tmp_path, entries, kinds, talos, strict)
    assert lines(result) == ['rootfs/usr/local/share/w: warning: world-writeable files are not allowed: "/usr/local/share/w" '
                             '(mode 0666, unpacked as 0644)']
    assert result.check.ok(strict) is not strict
