"""Which directories of a project folder dev mode watches.

watchfiles' recursive watch follows symlinks and gives up on the first directory it cannot
read: a rootfs holding a link to ``/`` (or ``/proc``) took it into the host's tree, and a
root-owned 0700 directory (any rootfs made as root, for a dev user who is not) stopped it,
and every later edit was ignored. So dev mode lists the directories itself and watches each
one alone: a symlink is never followed (in a rootfs, ``/`` is the container's root, not the
host's), a directory it cannot read is left out and named once, as ``docker compose watch``
and ``skaffold dev`` do.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path


def watched_dirs(project: Path, skip: Collection[Path] = (),
                 skip_names: Collection[str] = ()) -> tuple[list[Path], dict[Path, str]]:
    """Every directory under *project* (itself included) that can be read, never through a
    symlink, without *skip* and directories named in *skip_names*; and those that could not
    be read, with the reason."""
    found: list[Path] = []
    unreadable: dict[Path, str] = {}
    stack = [project]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone since its parent was listed (a build at work): nothing to say
        except OSError as exc:
            unreadable[d] = exc.strerror or str(exc)
            continue
        found.append(d)
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            path = Path(entry.path)
            if is_dir and entry.name not in skip_names and path not in skip:
                stack.append(path)
    return found, unreadable


def is_new_dir(path: str, watched: Collection[str]) -> bool:
    """A directory (not a link to one) that appeared since the watch began."""
    return path not in watched and os.path.isdir(path) and not os.path.islink(path)
