"""Directories no other user can change: the one check behind every directory extvisor
writes what matters into (the state directory, the extension store, the instance locks, dev
mode's socket directory, the key directories of ``gen`` and ``config new``).

A directory passes when it is a real directory (not a symlink), this user's, writable by
nobody else, and its parent cannot be used by another user to rename it away (writable by
others without the sticky bit, as ``/tmp`` has, or owned by a third user). tmux checks its
socket directory this way; OpenSSH's StrictModes its key files; containerd keeps its roots
0700/0711.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeDirectory(Exception):
    """The directory is refused; the message says which and why, in one line."""


def _mode(st: os.stat_result) -> str:
    return f"mode {stat.S_IMODE(st.st_mode):04o}"


def private_dir(path: Path, purpose: str = "", *, parents: bool = False, tighten: bool = False) -> Path:
    """*path* as a directory only this user can change, made 0700 when missing (its missing
    parents too, each checked the same way, with *parents*).

    An existing directory of this user's that group or others can write is refused, or with
    *tighten* made 0700 (the state directory and the store: ours to fix, whatever mode an
    earlier install left). Raises :class:`UnsafeDirectory`.
    """
    path = Path(path)
    me = os.geteuid()
    what = f" for {purpose}" if purpose else ""

    def refuse(why: str) -> UnsafeDirectory:
        return UnsafeDirectory(f"refusing {path}{what}: {why}")

    if parents and path.parent != path and not os.path.lexists(path.parent):
        private_dir(path.parent, purpose, parents=True, tighten=tighten)
    try:
        parent = os.stat(path.parent)
    except OSError as exc:
        raise refuse(f"its parent directory cannot be used: {exc.strerror}") from None
    if parent.st_uid not in (0, me):
        raise refuse(f"its parent directory {path.parent} belongs to uid {parent.st_uid}")
    if parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX:
        raise refuse(f"its parent directory {path.parent} can be written by other users ({_mode(parent)})")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise refuse(f"cannot create it: {exc.strerror}") from None
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise refuse(f"it is a symlink (to {os.readlink(path)}); another user may have made it. Remove it")
    if not stat.S_ISDIR(st.st_mode):
        raise refuse("it exists and is not a directory")
    if st.st_uid != me:
        raise refuse(f"it belongs to uid {st.st_uid}, not to you (uid {me}); another user may have made it. Remove it")
    if st.st_mode & 0o022:
        if not tighten:
            who = "others" if st.st_mode & 0o002 else "its group"
            raise refuse(f"it can be written by {who} ({_mode(st)}): another user may have put something in it; "
                         "remove it, or chmod 700 it")
        os.chmod(path, 0o700, follow_symlinks=False)
    elif tighten and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700, follow_symlinks=False)
    return path


def open_private_dir(path: Path, purpose: str = "", *, parents: bool = False) -> int:
    """A descriptor of :func:`private_dir` *path*, opened without following a symlink and
    checked again through the descriptor (the name cannot be swapped after the check)."""
    private_dir(path, purpose, parents=parents)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeDirectory(f"refusing {path}: cannot open it: {exc.strerror}") from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise UnsafeDirectory(f"refusing {path}: it changed while it was checked")
    return fd
