"""Every check of an unpacked extension: Talos's, then extvisor's own.

As Talos would (the extensions validator's set, which the imager and the build both rely
on): ``Load``, the version format, every service file, the version constraint, and the
content rules (allowed path prefixes, no special files). Unlike Talos, which stops at the
first problem, every problem is reported. Beyond Talos: service files are read by extvisor's
own loader (FILE:LINE:COL), each service must have its rootfs and entrypoint in the image,
and nothing that is read (manifest, service files) may be a symlink, which would make us
read a file of this host.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from extvisor.oci import ContainerSpecError, check_rootfs
from extvisor.documents.findings import Finding
from extvisor.documents.loader import load_service_text, mark_duplicates
from extvisor.documents.models import ServiceSpec
from extvisor.records import ConditionKind, LoadedService

from . import manifest as mf
from .semver import Version
from .unpack import CONTROL, SETID

SERVICES_DIR = ("usr", "local", "etc", "containers")
ROOTFS_DIR = ("usr", "local", "lib", "containers")
MAX_CONTENT_PROBLEMS = 50


@dataclass
class ServiceEntry:
    """A service an extension provides."""

    spec: ServiceSpec
    file: str  #: path inside the image
    rootfs: str  #: path inside the image

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class CheckResult:
    manifest: mf.Manifest | None = None
    problems: list[Finding] = field(default_factory=list)
    services: list[ServiceEntry] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  #: non-directories, as ``/usr/local/...``

    def errors(self, strict: bool = False) -> list[Finding]:
        return [p for p in self.problems if p.severity == "error" or strict]

    def ok(self, strict: bool = False) -> bool:
        return not self.errors(strict)


def _lstat(root: Path, parts: tuple[str, ...]) -> os.stat_result | None:
    """lstat of root/parts, or None when missing or reached only through a symlink."""
    path = root
    for i, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return None
    return st if parts else os.lstat(root)


def _read_regular(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def load(path: Path, result: CheckResult) -> mf.Extension | None:
    """Talos's ``Load``, refusing a symlinked manifest or rootfs first."""
    for name in (mf.MANIFEST, mf.ROOTFS):
        st = _lstat(path, (name,))
        if st is not None and stat.S_ISLNK(st.st_mode):
            result.problems.append(Finding.at_path(name, "error", f"{name} is a symlink: it must be a {'file' if name == mf.MANIFEST else 'directory'}"))
            return None
    try:
        ext = mf.load(path)
    except mf.ExtensionError as exc:
        text = str(exc)
        where = mf.MANIFEST if "manifest" in text or text == "EOF" else mf.ROOTFS if "rootfs" in text else ""
        if text.startswith("unexpected file"):
            where = text.split('"')[1] if '"' in text else ""
        result.problems.append(Finding.at_path(where, "error", text))
        return None
    if not stat.S_ISDIR(os.lstat(ext.rootfs).st_mode):
        result.problems.append(Finding.at_path(mf.ROOTFS, "error", "rootfs is not a directory"))
        return None
    return ext


def check_services(ext: mf.Extension, kinds: Mapping[str, ConditionKind], result: CheckResult, strict: bool) -> None:
    """Every ``rootfs/usr/local/etc/containers/*.yaml`` through extvisor's loader."""
    services_dir = ext.rootfs.joinpath(*SERVICES_DIR)
    st = _lstat(ext.rootfs, SERVICES_DIR)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return
    loaded: list[LoadedService] = []
    for name in sorted(os.listdir(services_dir)):
        if not name.endswith(".yaml"):
            continue
        rel = "/".join((mf.ROOTFS, *SERVICES_DIR, name))
        st = os.lstat(services_dir / name)
        if stat.S_ISDIR(st.st_mode):
            continue  # the loader skips directories, as Talos does
        if stat.S_ISLNK(st.st_mode):
            result.problems.append(Finding.at_path(rel, "error", "a service file must be a regular file, not a symlink"))
            continue
        data = _read_regular(services_dir / name)
        loaded.append(load_service_text(data, rel, kinds, strict))
    mark_duplicates(loaded)
    for one in loaded:
        for f in one.findings:
            # a finding the loader could not place (a duplicate's name) names the file alone, as ever
            result.problems.append(f if f.line else replace(f, line=None, column=None))
        if one.spec is None:
            continue
        rootfs_parts = (*ROOTFS_DIR, one.spec.name)
        rootfs_rel = "/".join((mf.ROOTFS, *rootfs_parts))
        st = _lstat(ext.rootfs, rootfs_parts)
        if st is None or not stat.S_ISDIR(st.st_mode):
            what = "is a symlink" if st is not None and stat.S_ISLNK(st.st_mode) else "is missing"
            result.problems.append(Finding.at_path(one.source, "error", f"the rootfs of service {one.spec.name}, {rootfs_rel}, {what}"))
            continue
        try:
            check_rootfs(one.spec, ext.rootfs.joinpath(*rootfs_parts))
        except ContainerSpecError as exc:
            result.problems.append(Finding.at_path(one.source, "warning", str(exc).replace(str(ext.path) + "/", "")))
        result.services.append(ServiceEntry(one.spec, one.source, rootfs_rel))


def check_contents(ext: mf.Extension, result: CheckResult, allow_setuid: bool = False) -> None:
    """Talos's ``validateContents`` over the whole rootfs, without following symlinks; beyond
    Talos, no control character in a name, no setuid or setgid file unless *allow_setuid*."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(ext.rootfs, followlinks=False):
        rel_dir = os.path.relpath(dirpath, ext.rootfs)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = os.lstat(os.path.join(dirpath, name))
            item = "/" + rel
            where = f"{mf.ROOTFS}/{rel}"
            problem = None
            if CONTROL.search(name):  # quoted in ASCII: the name must not reach a terminal or a list as it is
                problem = Finding.at_path(json.dumps(where)[1:-1], "error", f"control characters are not allowed in names: {json.dumps(item)}")
            elif stat.S_ISDIR(st.st_mode):
                if st.st_mode & 0o002:
                    problem = Finding.at_path(where, "warning", f"world-writeable directories are not allowed: {mf.go_q(item)}")
            elif not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                problem = Finding.at_path(where, "error", f"special files are not allowed: {mf.go_q(item)}")
            elif not mf.allowed(item):
                problem = Finding.at_path(where, "error", f"path {mf.go_q(item)} is not allowed in extensions")
            elif not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o002:
                # Talos's check never fires (DirEntry.Type has no permission bits): warn only
                problem = Finding.at_path(where, "warning", f"world-writeable files are not allowed: {mf.go_q(item)}")
            elif stat.S_ISREG(st.st_mode) and st.st_mode & SETID and not allow_setuid:
                problem = Finding.at_path(where, "error", f"setuid and setgid files are not allowed: {mf.go_q(item)} "
                                                  f"(mode {stat.S_IMODE(st.st_mode):04o}; the operator may allow them: --allow-setuid)")  # fmt: skip
            if (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)) and not CONTROL.search(rel):
                result.files.append(item)
            if problem is not None:
                count += 1
                if count <= MAX_CONTENT_PROBLEMS:
                    result.problems.append(problem)
    if count > MAX_CONTENT_PROBLEMS:
        result.problems.append(Finding.at_path(mf.ROOTFS, "error", f"... and {count - MAX_CONTENT_PROBLEMS} more problems in the rootfs"))
    result.files.sort()


def check_extension(
    path: Path,
    talos: Version,
    kinds: Mapping[str, ConditionKind],
    strict: bool = False,
    allow_setuid: bool = False,
) -> CheckResult:
    """Run every check on the unpacked extension at *path* (``manifest.yaml`` + ``rootfs/``)."""
    result = CheckResult()
    ext = load(Path(path), result)
    if ext is None:
        return result
    result.manifest = ext.manifest
    try:
        mf.check_version_format(ext.manifest)
    except mf.ExtensionError as exc:
        result.problems.append(Finding.at_path(mf.MANIFEST, "error", str(exc)))
    check_services(ext, kinds, result, strict)
    try:
        mf.check_constraint(ext.manifest, talos)
    except mf.ExtensionError as exc:
        message = f"error validating extension {mf.go_q(ext.manifest.name)}: {exc}"
        result.problems.append(Finding.at_path(mf.MANIFEST, "error", message))
    check_contents(ext, result, allow_setuid)
    return result


def default_kinds() -> dict[str, ConditionKind]:
    """The ``depends`` kinds the installed plugins register."""
    from extvisor.plugins import get_plugin_manager

    return get_plugin_manager().condition_kinds()
