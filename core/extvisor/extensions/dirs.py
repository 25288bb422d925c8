"""The store's directories: only this user may enter them, whatever modes they had."""

from __future__ import annotations

from pathlib import Path

from extvisor.shared import dirs


class StoreError(Exception):
    """The store's directory cannot be used safely; said in one line."""


def private_dir(path: Path) -> None:
    """Make *path*, or take the existing one, as a directory only this user can enter (0700).

    Refuses a symlink, a non-directory and a directory of another user (who could change it
    back); an existing directory of ours gets 0700 whatever its mode was.
    """
    try:
        dirs.private_dir(path, "the extension store", tighten=True)
    except dirs.UnsafeDirectory as exc:
        raise StoreError(str(exc)) from None
