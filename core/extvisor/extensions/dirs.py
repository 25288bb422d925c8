"""The store's directories: only this user may enter them, whatever modes they had."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class StoreError(Exception):
    """The store's directory cannot be used safely; said in one line."""


def private_dir(path: Path) -> None:
    """Make *path*, or take the existing one, as a directory only this user can enter (0700).

    Refuses a symlink, a non-directory and a directory of another user (who could change it
    back); an existing directory of ours gets 0700 whatever its mode was.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path} is {'a symlink' if stat.S_ISLNK(st.st_mode) else 'not a directory'}: refusing to use it")
    if st.st_uid != os.geteuid():
        raise StoreError(f"{path} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}): refusing to use it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700, follow_symlinks=False)
