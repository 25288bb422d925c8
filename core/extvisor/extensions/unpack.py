"""Applying image layers to a directory, refusing every entry that would leave it.

Our own code rather than ``umoci raw unpack`` (docs/extensions.md says why): umoci cleans a
hostile name into the root and carries on, creates devices, and reports nothing we can show
the author; here each refusal names the entry. Every path is walked from the root one
component at a time with ``O_NOFOLLOW|O_DIRECTORY`` relative to the parent's descriptor, so
no write, link or removal ever goes through a symlink, whatever earlier layers left there.

Hostile archives are bounded as Go's ``archive/tar`` bounds them: a PAX or GNU long-name
header over 1 MiB (and special headers over 1 MiB in total before one entry) is refused before
it is read, where Python's ``tarfile`` would read it whole. Names with control characters are
refused (a newline would forge lines of a file list). Modes lose group and other write (the
tree belongs to root and a privileged container runs from it); setuid and setgid files are
refused unless the operator allows them.

Layers apply bottom to top with OCI whiteouts (``.wh.NAME`` hides NAME of lower layers,
``.wh..wh..opq`` hides every lower child of its directory). Every blob's digest and size are
checked before a byte of it is read as a tar. Owners are not applied: files belong to the
unpacking user, root on a node, as Talos's ``mksquashfs -all-root`` makes them.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import re
import stat
import tarfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .progress import Cancelled
from .tarread import HeaderTooLarge, open_bounded

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
GZIP_TYPES = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip")
ZSTD_TYPES = ("application/vnd.oci.image.layer.v1.tar+zstd",)
TAR_TYPES = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar")

SETID = stat.S_ISUID | stat.S_ISGID
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: a newline forges list lines, ESC the terminal

Parts = tuple[str, ...]


class UnpackError(Exception):
    """A layer that cannot be applied; names the layer and the entry (``entry``)."""

    def __init__(self, message: str, entry: str = ""):
        super().__init__(message)
        self.entry = entry


@dataclass
class Layer:
    path: Path  #: the blob file
    digest: str = ""  #: ``sha256:...``; empty for a plain tarball (nothing to check against)
    size: int = -1
    media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip"
    label: str = ""  #: how messages name it, e.g. ``layer 2 (sha256:ab12...)``


@dataclass
class UnpackReport:
    warnings: list[str] = field(default_factory=list)
    writable: list[tuple[str, bool, int]] = field(default_factory=list)  #: world-writeable (entry, is a dir, mode)
    entries: int = 0
    bytes: int = 0


def verify_blob(path: Path, digest: str, size: int = -1, label: str = "") -> None:
    """Check a blob's size and sha256 before anything reads it."""
    algo, _, expected = digest.partition(":")
    if algo != "sha256" or len(expected) != 64:
        raise UnpackError(f"{label or path.name}: unsupported digest {digest!r}")
    try:
        actual_size = path.stat().st_size
        if size >= 0 and actual_size != size:
            raise UnpackError(f"{label}: blob {digest} is {actual_size} bytes, the manifest says {size}")
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        raise UnpackError(f"{label}: blob {digest} is missing") from None
    if h.hexdigest() != expected:
        raise UnpackError(f"{label}: blob {digest} is corrupted: its content has digest sha256:{h.hexdigest()}")


def _open_stream(layer: Layer, raw: IO[bytes]) -> IO[bytes]:
    """Decompress by content: docker-archive layers say ``tar.gzip`` but are plain tars."""
    head = raw.read(4)
    raw.seek(0)
    if head == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise UnpackError(f"{layer.label}: zstd layers need the zstandard package (pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[no-any-return]
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if layer.media_type and layer.media_type not in (*GZIP_TYPES, *ZSTD_TYPES, *TAR_TYPES):
        raise UnpackError(f"{layer.label}: unsupported layer media type {layer.media_type}")
    return raw


def _zstd_errors() -> tuple[type[Exception], ...]:
    try:
        import zstandard
    except ImportError:
        return ()
    return (zstandard.ZstdError,)


def split_name(name: str) -> Parts:
    """The components of an entry name; raises for absolute names, ``..`` and control characters."""
    if CONTROL.search(name):
        raise ValueError("name contains a control character")
    if name.startswith("/"):
        raise ValueError("absolute name")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError("name contains '..'")
    return parts


class _Tree:
    """The directory being written, reached only through descriptors (no symlink followed)."""

    def __init__(self, root: Path):
        self.root_fd = os.open(root, DIR_FLAGS)
        self.fds: dict[Parts, int] = {(): self.root_fd}
        self.created: set[Parts] = set()  # directories made because an entry needed them

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    def forget(self, parts: Parts) -> None:
        """Drop cached descriptors at or under *parts* (the directory was removed or replaced)."""
        n = len(parts)
        for key in [k for k in self.fds if k[:n] == parts and k]:
            os.close(self.fds.pop(key))

    def dir(self, parts: Parts, create: bool) -> int:
        """A descriptor of the directory *parts*; refuses a symlink or a non-directory on the way."""
        if parts in self.fds:
            return self.fds[parts]
        parent = self.dir(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)  # a parent the layer does not list, as umoci does
            self.created.add(parts)
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise UnpackError(f'"{"/".join(parts)}" is {what}: nothing may be written through it') from None
        self.fds[parts] = fd
        return fd

    def lstat(self, parts: Parts) -> os.stat_result | None:
        try:
            return os.stat(parts[-1], dir_fd=self.dir(parts[:-1], False), follow_symlinks=False)
        except FileNotFoundError:
            return None

    def remove(self, parts: Parts) -> None:
        """Remove *parts* (a whole directory tree too) without following symlinks."""
        st = self.lstat(parts)
        if st is None:
            return
        parent = self.dir(parts[:-1], False)
        if stat.S_ISDIR(st.st_mode):
            fd = self.dir(parts, False)
            for child in os.listdir(fd):
                self.remove((*parts, child))
            self.forget(parts)
            os.rmdir(parts[-1], dir_fd=parent)
        else:
            os.unlink(parts[-1], dir_fd=parent)


class _Applier:
    def __init__(self, root: Path, whiteouts: bool, report: UnpackReport, allow_setuid: bool = False,
                 cancel: threading.Event | None = None):  # fmt: skip
        self.tree = _Tree(root)
        self.whiteouts = whiteouts
        self.report = report
        self.allow_setuid = allow_setuid
        self.cancel = cancel
        self.dir_modes: dict[Parts, int] = {}
        self.layer_paths: set[Parts] = set()  # written by the layer being applied

    def layer(self, layer: Layer) -> None:
        self.layer_paths = set()
        self.tree.created = self.layer_paths
        with open(layer.path, "rb") as raw:
            stream = _open_stream(layer, raw)
            try:
                with open_bounded(stream) as tar:
                    while (member := tar.next()) is not None:
                        if self.cancel is not None and self.cancel.is_set():
                            raise Cancelled(f"{layer.label}: cancelled")
                        self.entry(layer, tar, member)
                        tar.members.clear()  # tarfile keeps every member: millions of entries would stay in memory
            except HeaderTooLarge as exc:
                raise UnpackError(f"{layer.label}: {exc}") from None
            except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, *_zstd_errors()) as exc:
                raise UnpackError(f"{layer.label}: not a valid tar stream: {exc}") from None
            finally:
                if stream is not raw:
                    stream.close()

    def refuse(self, layer: Layer, member: tarfile.TarInfo, why: str) -> UnpackError:
        entry = member.name if not CONTROL.search(member.name) else repr(member.name)[1:-1]  # never printed raw
        return UnpackError(f"{layer.label}: entry {member.name!r}: {why}", entry)

    def entry(self, layer: Layer, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        if CONTROL.search(member.name):  # a newline would forge lines of a file list, an escape the terminal
            raise self.refuse(layer, member, "name contains a control character")
        try:
            parts = split_name(member.name)
        except ValueError as exc:
            raise self.refuse(layer, member, f"{exc}: it would be written outside the extension") from None
        if not parts:
            return  # the root itself ("./")
        base = parts[-1]
        try:
            if self.whiteouts and base.startswith(WHITEOUT):
                self.whiteout(layer, member, parts)
                return
            if member.ischr() or member.isblk() or member.isfifo():
                kind = "a FIFO" if member.isfifo() else "a device"
                raise self.refuse(layer, member, f"special files are not allowed ({kind})")
            parent = self.tree.dir(parts[:-1], create=True)
            mode = self.mode(layer, member)
            if member.isdir():
                self.mkdir(parts, parent, mode)
            elif member.isreg():
                self.replace(parts)
                self.write(tar, member, parts, parent, mode)
            elif member.issym():
                self.replace(parts)
                os.symlink(member.linkname, base, dir_fd=parent)
            elif member.islnk():
                self.hardlink(layer, member, parts, parent)
            else:
                raise self.refuse(layer, member, f"unsupported tar entry type {member.type!r}")
        except UnpackError as exc:
            if str(exc).startswith(layer.label + ": entry"):
                raise
            raise self.refuse(layer, member, str(exc)) from None
        except OSError as exc:
            raise self.refuse(layer, member, f"cannot be written: {exc.strerror or exc}") from None
        for i in range(len(parts), 0, -1):  # the entry and its parents now belong to this layer
            if parts[:i] in self.layer_paths:
                break
            self.layer_paths.add(parts[:i])
        self.report.entries += 1

    def mode(self, layer: Layer, member: tarfile.TarInfo) -> int:
        """The mode to give: no group or other write, no setuid or setgid file unless allowed."""
        mode = member.mode & 0o7777
        if member.isreg() and mode & SETID and not self.allow_setuid:
            bits = " and ".join(b for b, m in (("setuid", stat.S_ISUID), ("setgid", stat.S_ISGID)) if mode & m)
            raise self.refuse(layer, member, f"{bits} file (mode {mode:04o}): not installed unless the operator "
                                             "allows it (--allow-setuid)")  # fmt: skip
        if member.isdir():
            mode &= ~SETID  # meaningless in a tree nothing writes to
        if mode & 0o002 and (member.isreg() or member.isdir()):
            self.report.writable.append((member.name, member.isdir(), mode))
        return mode & ~0o022

    def replace(self, parts: Parts) -> None:
        """Make room for a new non-directory: an older entry of any kind goes first."""
        st = self.tree.lstat(parts)
        if st is not None:
            self.tree.remove(parts)
            self.dir_modes.pop(parts, None)

    def mkdir(self, parts: Parts, parent: int, mode: int) -> None:
        st = self.tree.lstat(parts)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            self.tree.remove(parts)
            st = None
        if st is None:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        self.dir_modes[parts] = mode  # set at the end: a 0555 dir must still take children

    def write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: Parts, parent: int, mode: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(parts[-1], flags, 0o600, dir_fd=parent)
        try:
            src = tar.extractfile(member)
            if src is not None:
                while chunk := src.read(CHUNK):
                    os.write(fd, chunk)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self.report.bytes += member.size

    def hardlink(self, layer: Layer, member: tarfile.TarInfo, parts: Parts, parent: int) -> None:
        try:
            target = split_name(member.linkname)
        except ValueError as exc:
            raise self.refuse(layer, member, f"hard link to {member.linkname!r}: {exc}: it points outside the extension") from None
        if not target:
            raise self.refuse(layer, member, "hard link to the extension's root")
        try:
            st = self.tree.lstat(target)
        except UnpackError as exc:
            raise self.refuse(layer, member, f"hard link to {member.linkname!r}: {exc}") from None
        except FileNotFoundError:
            st = None
        if st is None:
            raise self.refuse(layer, member, f"hard link to {member.linkname!r}, which does not exist")
        if stat.S_ISDIR(st.st_mode):
            raise self.refuse(layer, member, f"hard link to the directory {member.linkname!r}")
        if target == parts:
            return
        self.replace(parts)
        os.link(target[-1], parts[-1], src_dir_fd=self.tree.dir(target[:-1], False), dst_dir_fd=parent,
                follow_symlinks=False)  # fmt: skip
        self.report.warnings.append(
            f"{layer.label}: entry {member.name!r} is a hard link to {member.linkname!r}: "
            "Talos's imager writes hard links as empty files"
        )

    def whiteout(self, layer: Layer, member: tarfile.TarInfo, parts: Parts) -> None:
        base = parts[-1]
        directory = parts[:-1]
        try:
            self.tree.dir(directory, create=False)
        except FileNotFoundError:
            return  # nothing below to hide
        if base == OPAQUE:
            self.purge(directory)
            return
        if base.startswith(WHITEOUT + WHITEOUT):
            raise self.refuse(layer, member, "unsupported whiteout (only .wh.NAME and .wh..wh..opq exist)")
        name = base[len(WHITEOUT) :]
        if name in ("", ".", ".."):
            raise self.refuse(layer, member, "whiteout of an invalid name")
        target = (*directory, name)
        if target in self.layer_paths:
            return  # a whiteout hides lower layers only
        self.tree.remove(target)
        self.drop_modes(target)

    def purge(self, directory: Parts) -> None:
        """Opaque directory: remove every child that a lower layer put there."""
        fd = self.tree.dir(directory, create=False)
        for child in os.listdir(fd):
            path = (*directory, child)
            if path not in self.layer_paths:
                self.tree.remove(path)
                self.drop_modes(path)
            elif stat.S_ISDIR(os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode):
                self.purge(path)

    def drop_modes(self, parts: Parts) -> None:
        n = len(parts)
        for key in [k for k in self.dir_modes if k[:n] == parts]:
            del self.dir_modes[key]

    def finish(self) -> None:
        for parts, mode in sorted(self.dir_modes.items(), key=lambda kv: -len(kv[0])):
            os.chmod(self.tree.dir(parts, False), mode)
        self.tree.close()


def apply_layers(
    layers: list[Layer],
    root: Path,
    whiteouts: bool = True,
    on_layer: Callable[[int, Layer], None] | None = None,
    allow_setuid: bool = False,
    cancel: threading.Event | None = None,
) -> UnpackReport:
    """Apply *layers* in order into the existing empty directory *root*.

    Raises :class:`UnpackError` naming the layer and entry (or :class:`Cancelled` once *cancel*
    is set); what was written stays under *root* (the caller's staging directory) and nothing
    is ever written elsewhere. Setuid and setgid files are refused unless *allow_setuid*.
    """
    for layer in layers:
        if layer.digest:
            verify_blob(layer.path, layer.digest, layer.size, layer.label)
    report = UnpackReport()
    applier = _Applier(root, whiteouts, report, allow_setuid, cancel)
    try:
        for i, layer in enumerate(layers, 1):
            applier.layer(layer)
            if on_layer:
                on_layer(i, layer)
        applier.finish()
    finally:
        applier.tree.close()
    return report
