"""The project folder an extension image is built from, checked as ``extensions validate`` would.

A project folder is the one ``extvisor dev`` runs: ``DIR/<file>.yaml`` service files, each
service's rootfs in ``DIR/<name>/`` (or ``DIR/rootfs/<name>/``), and ``DIR/manifest.yaml``.
:func:`scan` reads it without writing anything and applies the rules an image is checked by
(the manifest's fields and constraint, service files that load, the rootfs and entrypoint of
each service, the file types and modes Talos allows), with every finding at a path in the
folder, not in the image. It returns the entries of the image's one layer, in order.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from extvisor.documents.findings import Finding
from extvisor.documents.loader import load_service_text, mark_duplicates
from extvisor.oci import ContainerSpecError, check_rootfs
from extvisor.records import ConditionKind

from . import manifest as mf
from .semver import Version

SERVICES = "rootfs/usr/local/etc/containers"
ROOTFS = "rootfs/usr/local/lib/containers"
SKIPPED = {mf.MANIFEST, "service-configs", "rootfs", ".extvisor", ".git"}
MAX_CONTENT_FINDINGS = 50


def rootfs_for(project: Path, name: str) -> Path:
    """``DIR/<name>``, or ``DIR/rootfs/<name>`` when only that one exists."""
    direct = project / name
    fallback = project / "rootfs" / name
    if not direct.is_dir() and fallback.is_dir():
        return fallback
    return direct


@dataclass(frozen=True)
class Entry:
    """One entry of the layer: its name in the image and where its content comes from."""

    name: str  #: in the layer, without a leading ``/`` (``rootfs/usr/local/...``)
    kind: str  #: ``dir``, ``file`` or ``symlink``
    mode: int = 0o755  #: permission bits as written (normalised: see :func:`image_mode`)
    source: str = ""  #: the file to copy (``file``); empty for a directory made here
    size: int = 0
    target: str = ""  #: a symlink's target
    data: bytes | None = None  #: content made here (a manifest from flags)


@dataclass
class Project:
    path: Path
    manifest: mf.Manifest | None = None
    services: list[str] = field(default_factory=list)  #: ids, ``ext-<name>``
    entries: list[Entry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def image_mode(st: os.stat_result, allow_setuid: bool) -> int:
    """0755 or 0644 by the owner's execute bit (what any checkout reproduces, whatever the
    umask), plus setuid/setgid when allowed and the sticky bit of a directory."""
    mode = 0o755 if stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR else 0o644
    if allow_setuid:
        mode |= st.st_mode & (stat.S_ISUID | stat.S_ISGID)
    if stat.S_ISDIR(st.st_mode):
        mode |= st.st_mode & stat.S_ISVTX
    return mode


class _Scan:
    def __init__(self, project: Project, shown: str, allow_setuid: bool):
        self.p = project
        self.shown = shown  # the folder as the user wrote it: findings name paths under it
        self.allow_setuid = allow_setuid
        self.content_findings = 0

    def where(self, path: Path) -> str:
        rel = os.path.relpath(path, self.p.path)
        shown = self.shown if rel == "." else os.path.join(self.shown, rel)
        # a name may hold a newline or an escape sequence: never print one raw
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)

    def add(self, path: Path | str, message: str, severity: str = "error", line: int = 0, column: int = 0,
            name: str = "") -> None:  # fmt: skip
        file = path if isinstance(path, str) else self.where(path)
        self.p.findings.append(Finding(file, line, column, severity, name, message))  # type: ignore[arg-type]

    def content(self, path: Path, message: str) -> None:
        self.content_findings += 1
        if self.content_findings <= MAX_CONTENT_FINDINGS:
            self.add(path, message)

    def tree(self, top: Path, image_dir: str) -> None:
        """Every entry under *top* (a service's rootfs), without following symlinks."""
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False, onerror=self._walk_error):
            dirnames.sort()
            here = Path(dirpath)
            rel_dir = os.path.relpath(here, top)
            prefix = image_dir if rel_dir == "." else f"{image_dir}/{rel_dir}"
            for name in sorted(dirnames + filenames):
                self.entry(here / name, f"{prefix}/{name}")
            # a symlink to a directory is listed in dirnames; walk never enters it

    def _walk_error(self, exc: OSError) -> None:
        self.content(Path(exc.filename or self.p.path), f"cannot read: {exc.strerror}")

    def entry(self, path: Path, name: str) -> None:
        st = os.lstat(path)
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path.name):
            self.content(path, "file names with control characters are not allowed")
            return
        try:
            path.name.encode()
        except UnicodeEncodeError:
            self.content(path, "file names must be UTF-8")
            return
        mode = image_mode(st, self.allow_setuid)
        if stat.S_ISDIR(st.st_mode):
            kind = Entry(name, "dir", mode)
        elif stat.S_ISLNK(st.st_mode):
            kind = Entry(name, "symlink", 0o777, target=os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            if not os.access(path, os.R_OK):
                self.content(path, "cannot read: permission denied")
                return
            kind = Entry(name, "file", mode, source=str(path), size=st.st_size)
        else:
            self.content(path, "special files (devices, FIFOs, sockets) are not allowed")
            return
        if not stat.S_ISLNK(st.st_mode):
            if st.st_mode & 0o002 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
                self.content(path, "world-writeable files are not allowed (chmod o-w)")
                return
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISDIR(st.st_mode) and not self.allow_setuid:
                self.content(path, "setuid and setgid files are not allowed without --allow-setuid")
                return
        self.p.entries.append(kind)


def _parents(name: str) -> list[Entry]:
    parts = name.split("/")
    return [Entry("/".join(parts[: i + 1]), "dir") for i in range(len(parts))]


def scan(path: Path, manifest_data: bytes | None, talos: Version, kinds: Mapping[str, ConditionKind],
         allow_setuid: bool = False, shown: str | None = None) -> Project:  # fmt: skip
    """Check the folder at *path* and list the layer's entries; *manifest_data* replaces
    ``DIR/manifest.yaml`` (a manifest made from flags)."""
    project = Project(path.resolve())
    sc = _Scan(project, shown if shown is not None else str(path), allow_setuid)
    root = project.path
    manifest_file = root / mf.MANIFEST
    if manifest_data is None:
        if not manifest_file.is_file() or manifest_file.is_symlink():
            sc.add(manifest_file, f"no {mf.MANIFEST}: write one, or give --name and --version")
        else:
            manifest_data = manifest_file.read_bytes()
    if manifest_data is not None:
        _manifest(sc, manifest_file, manifest_data, talos)
        project.entries.append(Entry(mf.MANIFEST, "file", 0o644, data=manifest_data, size=len(manifest_data)))
    services: list[tuple[Path, object]] = []
    loaded = []
    for file in sorted(root.glob("*.yaml")):
        if file.name == mf.MANIFEST or not file.is_file():
            continue
        if file.is_symlink():
            sc.add(file, "a service file must be a regular file, not a symlink")
            continue
        one = load_service_text(file.read_bytes(), sc.where(file), kinds)
        loaded.append(one)
        services.append((file, one))
    mark_duplicates(loaded)
    project.entries += _parents(ROOTFS) + _parents(SERVICES)
    rootfs_entries: list[tuple[str, Path]] = []
    for file, one in services:
        project.findings += one.findings  # type: ignore[attr-defined]
        spec = one.spec  # type: ignore[attr-defined]
        if spec is None:
            continue
        project.services.append(spec.id)
        project.entries.append(Entry(f"{SERVICES}/{file.name}", "file", 0o644, source=str(file), size=file.stat().st_size))
        rootfs = rootfs_for(root, spec.name)
        if not rootfs.is_dir() or rootfs.is_symlink():
            sc.add(file, f"the rootfs of service {spec.name} is missing: make {sc.where(root / spec.name)}/ "
                         f"(or {sc.where(root / 'rootfs' / spec.name)}/)")  # fmt: skip
            continue
        try:
            check_rootfs(spec, rootfs)
        except ContainerSpecError as exc:
            sc.add(file, str(exc).replace(str(root) + "/", sc.shown.rstrip("/") + "/"), "warning")
        rootfs_entries.append((f"{ROOTFS}/{spec.name}", rootfs))
    if not project.services and not project.errors():
        sc.add(root, "no service file (DIR/<name>.yaml) in the folder")
    for image_dir, rootfs in sorted(rootfs_entries):
        st = os.lstat(rootfs)
        project.entries.append(Entry(image_dir, "dir", image_mode(st, allow_setuid)))
        sc.tree(rootfs, image_dir)
    if sc.content_findings > MAX_CONTENT_FINDINGS:
        sc.add(root, f"... and {sc.content_findings - MAX_CONTENT_FINDINGS} more problems in the rootfs directories")
    project.entries = _ordered(project.entries)
    return project


def _manifest(sc: _Scan, file: Path, data: bytes, talos: Version) -> None:
    try:
        manifest = mf.parse_manifest(data)
    except mf.ExtensionError as exc:
        sc.add(file, str(exc))
        return
    sc.p.manifest = manifest
    for check in (mf.check_version_format, lambda m: mf.check_constraint(m, talos)):
        try:
            check(manifest)
        except mf.ExtensionError as exc:
            sc.add(file, str(exc))
    if not manifest.name:
        sc.add(file, "metadata.name is empty")


def _ordered(entries: list[Entry]) -> list[Entry]:
    """Each name once (the first wins), sorted as ``tar --sort=name`` walks a tree."""
    seen: dict[str, Entry] = {}
    for e in entries:
        seen.setdefault(e.name, e)
    return sorted(seen.values(), key=lambda e: e.name.split("/"))
