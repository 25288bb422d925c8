"""Installed extensions on disk, changed atomically.

Layout under ``<state-dir>/extensions``::

    installed/<name>  -> ../trees/<token>   one symlink per installed extension
    trees/<token>/image/{manifest.yaml,rootfs/}, record.json, files.json
    staging/<token>/                         an install in progress
    merged -> merged.d/<token>               every extension's rootfs merged, later on top

An install unpacks and checks in ``staging/`` (same filesystem), syncs it, renames it into
``trees/`` and then swaps the ``installed/<name>`` symlink with one ``rename``: before that
rename the old version (or nothing) is installed, after it the new one, whatever kills the
process in between. Removal is one ``unlink``. ``recover`` (at daemon start) deletes staging
dirs and trees no symlink points to; ``collect`` does the same after services moved on.

Every directory of the store is made (or, when it existed, made again) 0700 and must belong to
this user, as containerd's root is: privileged containers run from these trees, so no other
user may reach into them, whatever modes an image or an earlier install gave its files.

A declared node (``server/declared``) stages every image first (:meth:`Store.stage`), then
switches them together (:meth:`Store.switch`), and keeps its earlier generations' trees
(``kept.json``, :meth:`Store.keep`) so that a rollback needs no registry.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extvisor.documents.findings import Finding
from extvisor.records import ConditionKind

from . import image
from .check import ROOTFS_DIR, _lstat
from .dirs import StoreError, private_dir
from .fetch import FetchOptions
from .manifest import ALLOWED_PATHS, ROOTFS
from .progress import Cancelled, Progress, ProgressFn, nothing
from .refs import Ref
from .semver import Version
from .verify import Policy

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class InstallError(Exception):
    """The image was refused; ``problems`` says why, each with its path in the image."""

    def __init__(self, ref: str, problems: list[Finding]):
        self.ref = ref
        self.problems = problems
        super().__init__(f"{ref}: " + "; ".join(str(p) for p in problems if p.severity == "error"))


@dataclass
class Installed:
    """One installed extension, as ``extvisor extensions`` lists it."""

    name: str
    version: str
    author: str
    description: str
    digest: str
    ref: str
    services: list[str]  #: ``ext-...`` ids
    seq: int
    tree: Path
    installed_at: float = 0.0
    arch: str = ""
    media_type: str = ""
    compatibility: str = ""
    warnings: list[str] = field(default_factory=list)
    id: str = ""  #: position in stacking order, as Talos's ExtensionStatus IDs ("0", "1"...)
    verified: str = "none"  #: ``key <fingerprint>``, ``skip`` or ``none`` (extensions/verify.py)
    verified_rule: str = ""  #: the ImageVerificationConfig rule that decided

    @property
    def rootfs(self) -> Path:
        return self.tree / image.IMAGE_DIR / ROOTFS

    def service_files(self) -> list[Path]:
        return sorted((self.rootfs / "usr/local/etc/containers").glob("*.yaml"))

    def service_rootfs(self, name: str) -> Path:
        return self.rootfs.joinpath(*ROOTFS_DIR, name)

    def as_dict(self) -> dict[str, Any]:
        keys = ("id", "name", "version", "author", "description", "digest", "ref", "services", "arch",
                "media_type", "compatibility", "installed_at", "warnings", "verified", "verified_rule")  # fmt: skip
        return {k: getattr(self, k) for k in keys}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding *path* (one call, not one fsync per unpacked file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.installed_dir = self.root / "installed"
        self.trees = self.root / "trees"
        self.staging = self.root / "staging"
        self.merged_d = self.root / "merged.d"
        self.merged_link = self.root / "merged"
        self._lock = threading.RLock()
        self._depth = 0
        self._fd = -1
        self._unsynced = False  #: trees staged without a sync, synced by the next switch

    # -- locking and recovery ------------------------------------------------------------

    def _flock(self) -> int:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for d in (self.root, self.installed_dir, self.trees, self.staging, self.merged_d):
            private_dir(d)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    class _Held:
        def __init__(self, store: Store):
            self.store = store

        def __enter__(self) -> None:
            self.store._lock.acquire()
            self.store._depth += 1  # re-entered (install calls stage): one flock for all
            if self.store._depth == 1:
                self.store._fd = self.store._flock()

        def __exit__(self, *exc: object) -> None:
            self.store._depth -= 1
            if self.store._depth == 0:
                os.close(self.store._fd)
            self.store._lock.release()

    def locked(self) -> Store._Held:
        return Store._Held(self)

    def recover(self) -> list[str]:
        """Delete what an interrupted install or removal left; returns what was removed."""
        with self.locked():
            removed = [str(p) for p in self.staging.iterdir()]
            for p in self.staging.iterdir():
                _rmtree(p)
            for p in self.installed_dir.iterdir():
                if p.name.startswith(".") or not p.is_symlink() or not p.exists():
                    removed.append(str(p))
                    p.unlink(missing_ok=True)  # a half-made symlink, or one whose tree is gone
            removed += self._collect(merged=True)
            if not self.merged_link.exists():
                self._rebuild_merged()
            return removed

    def collect(self) -> list[str]:
        """Delete trees no extension uses any more (after its services moved to the new one).

        Earlier merged trees stay until :meth:`recover`: running services may bind-mount them.
        """
        with self.locked():
            return self._collect(merged=False)

    def _collect(self, merged: bool) -> list[str]:
        used = {os.path.basename(os.readlink(p)) for p in self.installed_dir.iterdir() if p.is_symlink()}
        used |= self.kept()
        removed = []
        for tree in self.trees.iterdir():
            if tree.name not in used:
                removed.append(str(tree))
                _rmtree(tree)
        current = os.path.basename(os.readlink(self.merged_link)) if self.merged_link.is_symlink() else ""
        for old in self.merged_d.iterdir() if merged else ():
            if old.name != current:
                _rmtree(old)
        return removed

    # -- reading -----------------------------------------------------------------------

    def _read(self, link: Path) -> Installed | None:
        try:
            return self._read_tree(self.trees / os.path.basename(os.readlink(link)))
        except OSError:
            return None

    def list(self) -> list[Installed]:
        """Installed extensions in stacking order (later ones on top), ``id`` set."""
        if not self.installed_dir.is_dir():
            return []
        found = [r for p in self.installed_dir.iterdir() if not p.name.startswith(".") and (r := self._read(p))]
        found.sort(key=lambda r: (r.seq, r.name))
        for i, r in enumerate(found):
            r.id = str(i)
        return found

    def get(self, name: str) -> Installed | None:
        return next((r for r in self.list() if r.name == name), None)

    def files_of(self, record: Installed) -> list[str]:
        """The files *record* provides: ``files.json``, or an older install's ``files.txt``,
        whose lines a file name holding a newline could forge (such lines are dropped)."""
        try:
            files = json.loads((record.tree / "files.json").read_text())
            return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            return []
        try:
            lines = (record.tree / "files.txt").read_text().splitlines()
        except OSError:
            return []
        return [f for f in lines if f.startswith("/") and _is_file(record.rootfs, f)]

    # -- installing ----------------------------------------------------------------------

    def install(
        self,
        ref: Ref,
        options: FetchOptions,
        talos: Version,
        kinds: Mapping[str, ConditionKind],
        strict: bool = False,
        taken: Mapping[str, str] | None = None,
        progress: ProgressFn = nothing,
        allow_setuid: bool = False,
        cancel: threading.Event | None = None,
        policy: Policy | None = None,
    ) -> tuple[Installed, Installed | None]:
        """Install *ref*, or upgrade the extension of the same name. Returns (new, old).

        *taken* maps service names loaded from elsewhere (``--config-dir``) to their source;
        a clash refuses the image. The old tree stays on disk until :meth:`collect`. Setting
        *cancel* stops the install (:class:`Cancelled`) and deletes its staging directory. With a
        *policy* (the node's ImageVerificationConfig) the image is verified before it is fetched.
        """
        with self.locked():
            staged = self.stage(ref, options, talos, kinds, strict, taken, progress, None, allow_setuid, cancel, policy)
            old = self.get(staged.name)
            self._link(staged.name, staged.tree.name)
            self._rebuild_merged()
            new = self.get(staged.name)
            assert new is not None
            return new, old

    def stage(
        self,
        ref: Ref,
        options: FetchOptions,
        talos: Version,
        kinds: Mapping[str, ConditionKind],
        strict: bool = False,
        taken: Mapping[str, str] | None = None,
        progress: ProgressFn = nothing,
        others: list[Installed] | None = None,
        allow_setuid: bool = False,
        cancel: threading.Event | None = None,
        policy: Policy | None = None,
        sync: bool = True,
    ) -> Installed:
        """Fetch, unpack and check *ref* into a tree of its own, installed by nothing yet.

        *others* are the extensions it will sit beside (default: those installed now, but
        one of its name); :meth:`switch` installs it. A tree no link points to goes at the
        next :meth:`collect` or :meth:`recover`, unless :meth:`keep` holds it. With *sync*
        False the filesystem is synced once, by the :meth:`switch` that installs it.
        """
        with self.locked():
            token = uuid.uuid4().hex[:16]
            work = self.staging / token
            work.mkdir()
            try:
                unpacked = image.unpack(ref, work, options, progress, allow_setuid, cancel, policy)
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"{ref.given}: cancelled")
                unpacked = image.check(unpacked, talos, kinds, strict, progress, allow_setuid)
                problems = list(unpacked.problems)
                manifest = unpacked.check.manifest
                if not unpacked.unpacked or manifest is None or not unpacked.check.ok(False):
                    raise InstallError(ref.given, problems)
                name = manifest.name
                if not NAME_RE.match(name):
                    raise InstallError(ref.given, [Finding.at_path("manifest.yaml", "error", f"extension name {name!r} cannot be installed "
                                                           "(letters, digits, '.', '_', '+', '-'; at most 128)")])  # fmt: skip
                old = self.get(name)
                if others is None:
                    others = [r for r in self.list() if r.name != name]
                seq = old.seq if old else max((r.seq for r in self.list()), default=-1) + 1
                problems += self._clashes(name, unpacked, others, taken or {})
                problems += self._conflicts(name, seq, unpacked.check.files, others, strict)
                if any(p.severity == "error" or (strict and p.severity == "warning") for p in problems):
                    raise InstallError(ref.given, problems)
                progress(Progress("install", f"{name} {manifest.ext_version}", ref=ref.given))
                record = {
                    "name": name, "version": manifest.ext_version, "author": manifest.author,
                    "description": manifest.description, "digest": unpacked.digest, "ref": ref.given,
                    "services": [s.id for s in unpacked.check.services], "seq": seq, "installed_at": time.time(),
                    "arch": options.arch, "media_type": unpacked.media_type,
                    "compatibility": manifest.talos_constraint, "warnings": [str(p) for p in problems],
                    **_verdict(unpacked),
                }  # fmt: skip
                (work / "record.json").write_text(json.dumps(record, indent=2))
                (work / "files.json").write_text(json.dumps(unpacked.check.files))
                if sync:
                    _syncfs(work)
                else:
                    self._unsynced = True
                os.rename(work, self.trees / token)
                _fsync_dir(self.trees)
            finally:
                _rmtree(work)
            staged = self.tree(token)
            assert staged is not None
            return staged

    def _link(self, name: str, token: str) -> None:
        tmp = self.installed_dir / f".{name}.{token}"
        os.symlink(f"../trees/{token}", tmp)
        os.rename(tmp, self.installed_dir / name)  # the switch: atomic
        _fsync_dir(self.installed_dir)

    def _clashes(self, name: str, unpacked: image.Unpacked, others: list[Installed], taken: Mapping[str, str]) -> list[Finding]:
        problems = []
        mine = {s.spec.name: s.file for s in unpacked.check.services}
        for other in others:
            for sid in other.services:
                svc = sid.removeprefix("ext-")
                if svc in mine:
                    problems.append(Finding.at_path(mine[svc], "error", f"service {svc} of extension {name!r} clashes with "
                                                                f"service {svc} of installed extension {other.name!r}"))  # fmt: skip
        for svc, source in taken.items():
            if svc in mine:
                problems.append(Finding.at_path(mine[svc], "error", f"service {svc} of extension {name!r} clashes with "
                                                            f"service {svc} loaded from {source}"))  # fmt: skip
        return problems

    def _conflicts(self, name: str, seq: int, files: list[str], others: list[Installed], strict: bool) -> list[Finding]:
        """Files another extension provides too: Talos lets the upper one win in silence."""
        mine = {f for f in files if not _ignored(f)}
        problems = []
        for other in others:
            both = sorted(mine.intersection(self.files_of(other)))
            upper, lower = (name, other.name) if seq > other.seq else (other.name, name)
            for path in both[:20]:
                message = f"file {path} is provided by both {other.name!r} and {name!r} ({upper!r} shadows {lower!r})"
                problems.append(Finding.at_path(ROOTFS + path, "error" if strict else "warning", message))
            if len(both) > 20:
                problems.append(Finding.at_path(ROOTFS, "error" if strict else "warning",
                                        f"... and {len(both) - 20} more files provided by both {other.name!r} and {name!r}"))  # fmt: skip
        return problems

    def remove(self, name: str) -> Installed:
        """Uninstall *name* (one unlink); its tree goes at the next :meth:`collect`."""
        with self.locked():
            record = self.get(name)
            if record is None:
                raise KeyError(name)
            (self.installed_dir / name).unlink()
            _fsync_dir(self.installed_dir)
            self._rebuild_merged()
            return record

    # -- trees kept for declared generations (server/declared) ------------------------------

    def tree(self, token: str) -> Installed | None:
        """The extension a tree holds, installed or not."""
        return self._read_tree(self.trees / token)

    def _read_tree(self, tree: Path) -> Installed | None:
        try:
            data = json.loads((tree / "record.json").read_text())
        except (OSError, ValueError):
            return None
        keys = Installed.__dataclass_fields__.keys() - {"tree", "id"}
        return Installed(tree=tree, **{k: v for k, v in data.items() if k in keys})

    def trees_by_digest(self) -> dict[str, Installed]:
        """Every tree on disk (installed, kept or just staged) by its image digest."""
        found: dict[str, Installed] = {}
        for tree in sorted(self.trees.iterdir()) if self.trees.is_dir() else ():
            record = self._read_tree(tree)
            if record is not None and record.digest:
                found.setdefault(record.digest, record)
        return found

    def kept(self) -> set[str]:
        """Tokens of trees that :meth:`collect` must leave (an earlier generation's, for a rollback)."""
        try:
            held = json.loads((self.root / "kept.json").read_text())
        except (OSError, ValueError):
            return set()
        return {t for tokens in held.values() if isinstance(tokens, list) for t in tokens if isinstance(t, str)}

    def keep(self, held: Mapping[str, list[str]]) -> None:
        """Replace the kept trees: label -> tokens (written atomically)."""
        with self.locked():
            tmp = self.root / ".kept.json.tmp"
            tmp.write_text(json.dumps(dict(held), indent=1))
            os.replace(tmp, self.root / "kept.json")
            _fsync_dir(self.root)

    def switch(self, links: Mapping[str, str | None]) -> None:
        """Point each ``installed/<name>`` at a tree (a token) or remove it (None), then merge once.

        Each link changes with one rename or unlink, so a process killed half-way leaves every
        extension either as it was or as asked, never a broken link.
        """
        with self.locked():
            if self._unsynced:  # one syncfs for every tree staged since, before a link points at one
                _syncfs(self.trees)
                self._unsynced = False
            for name, token in links.items():
                if token is None:
                    (self.installed_dir / name).unlink(missing_ok=True)
                elif not (self.trees / token).is_dir():
                    raise KeyError(f"no tree {token} for extension {name}")
                else:
                    self._link(name, token)
            _fsync_dir(self.installed_dir)
            self._rebuild_merged()

    def discard(self, token: str) -> None:
        """Delete a staged tree that will not be installed."""
        with self.locked():
            if not any(os.path.basename(os.readlink(p)) == token for p in self.installed_dir.iterdir() if p.is_symlink()):
                _rmtree(self.trees / token)

    # -- the merged tree -------------------------------------------------------------------

    def _rebuild_merged(self) -> None:
        """Hard-link every extension's rootfs into one tree, later extensions on top."""
        token = uuid.uuid4().hex[:16]
        target = self.merged_d / token
        target.mkdir(parents=True)
        for record in self.list():
            _merge(record.rootfs, target)
        tmp = self.root / f".merged.{token}"
        os.symlink(f"merged.d/{token}", tmp)
        os.rename(tmp, self.merged_link)

    def merged_root(self) -> Path:
        return self.root / "merged.d" / os.path.basename(os.readlink(self.merged_link))

    def mount_source(self, source: str) -> Path | None:
        """Where a service's mount *source* comes from when an extension provides it.

        Only under Talos's extension prefixes (``/usr/local``...), as on a node, where those
        paths are the merged extensions: zfs-service mounts ``/usr/local/sbin``.
        """
        norm = os.path.normpath("/" + source.lstrip("/"))
        if not any(norm == p or norm.startswith(p.rstrip("/") + "/") for p in ALLOWED_PATHS):
            return None
        if not self.merged_link.is_symlink():
            return None
        candidate = self.merged_root() / norm.lstrip("/")
        return candidate if os.path.lexists(candidate) else None


def _is_file(rootfs: Path, path: str) -> bool:
    """Whether *path* is a non-directory in *rootfs*, reached without following a symlink."""
    st = _lstat(rootfs, tuple(p for p in path.split("/") if p))
    return st is not None and not stat.S_ISDIR(st.st_mode)


def _verdict(unpacked: image.Unpacked) -> dict[str, str]:
    verdict = unpacked.verdict
    return {"verified": verdict.verified, "verified_rule": verdict.rule} if verdict else {"verified": "none"}


def _ignored(path: str) -> bool:
    """What the duplicate-file check of the extensions repository ignores (depmod output)."""
    return os.path.basename(path).startswith("modules.") and path.startswith("/usr/lib/modules/")


def _merge(src_root: Path, dst_root: Path) -> None:
    """Overlay *src_root* onto *dst_root* with hard links; never follows a symlink."""
    for dirpath, dirnames, filenames in os.walk(src_root, followlinks=False):
        rel = os.path.relpath(dirpath, src_root)
        dst_dir = dst_root if rel == "." else dst_root / rel
        for name in dirnames:
            src, dst = os.path.join(dirpath, name), dst_dir / name
            if os.path.islink(src):
                _rmtree(dst)
                os.link(src, dst, follow_symlinks=False)
                continue
            try:
                st = os.lstat(dst)
                if not stat.S_ISDIR(st.st_mode):
                    dst.unlink()  # an upper directory hides a lower file or symlink
                    os.mkdir(dst, 0o755)
            except FileNotFoundError:
                os.mkdir(dst, 0o755)
            shutil.copymode(src, dst, follow_symlinks=False)
        for name in filenames:
            src, dst = os.path.join(dirpath, name), dst_dir / name
            if os.path.lexists(dst):
                _rmtree(dst)  # an upper file hides a lower one, or a whole lower directory
            os.link(src, dst, follow_symlinks=False)
