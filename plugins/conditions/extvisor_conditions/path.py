"""``path: P``: wait until P exists (Talos's ``WaitForFileToExist``), woken by inotify.

Talos stats the path every second. Here the nearest existing ancestor directory is watched
and the watch moves down as directories appear (or up when one is removed), so an idle
wait costs nothing. A stat error other than "does not exist" fails the service, as in Talos.
"""

from __future__ import annotations

import asyncio
import errno
import os
import posixpath
from typing import Annotated

from extvisor import ConditionContext
from pydantic import AfterValidator

from .inotify import DirWatch
from .text import goquote

# inotify misses a few ways a path can appear (a mount over an ancestor, a dangling
# symlink's target being created elsewhere); a rare re-check covers them. Not a poll loop.
SAFETY_RECHECK = 10.0
POLL = 1.0  # Talos's interval, only where inotify is refused


def _absolute(value: str) -> str:
    if not value:
        raise ValueError("path must not be empty")
    if not posixpath.isabs(value):
        raise ValueError(f"path is not absolute: {goquote(value)}")
    return value


PathValue = Annotated[str, AfterValidator(_absolute)]


def exists(path: str) -> bool:
    """``True`` if *path* exists, ``False`` if it does not; other stat errors raise."""
    try:
        os.stat(path)
        return True
    except FileNotFoundError:
        return False


def nearest_dir(path: str) -> str:
    """The deepest existing ancestor of *path* (``/`` at worst)."""
    parent = posixpath.dirname(posixpath.normpath(path))
    while True:
        try:
            os.stat(parent)
            return parent
        except FileNotFoundError:
            if parent == "/":
                return parent
            parent = posixpath.dirname(parent)
        except NotADirectoryError as exc:
            # an ancestor is a file: the path can never exist under it; say so
            raise NotADirectoryError(exc.errno, os.strerror(errno.ENOTDIR), path) from None


class PathCondition:
    def __init__(self, path: str, ctx: ConditionContext | None = None):
        self.path = path
        self.safety_recheck = SAFETY_RECHECK

    def describe(self) -> str:
        return f"file {goquote(self.path)} to exist"

    def __repr__(self) -> str:
        return f"PathCondition({self.path!r})"

    async def wait(self) -> None:
        if exists(self.path):
            return
        watch = DirWatch()
        try:
            while True:
                # Arm first, then check: anything created after the check wakes us.
                target = nearest_dir(self.path)
                try:
                    watch.watch(target)
                except FileNotFoundError:
                    continue  # removed meanwhile: look again
                except PermissionError:
                    # a directory we may search but not read cannot be watched: do as
                    # Talos does there, stat once a second
                    if exists(self.path):
                        return
                    await asyncio.sleep(POLL)
                    continue
                if exists(self.path):
                    return
                if nearest_dir(self.path) != target:
                    continue  # a directory appeared before the watch was armed
                await watch.wait(self.safety_recheck)
        finally:
            watch.close()


def factory(value: str, ctx: ConditionContext) -> PathCondition:
    return PathCondition(value, ctx)
