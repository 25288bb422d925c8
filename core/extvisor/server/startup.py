"""What makes the daemon start fast: pidfds for its subprocesses, and the API's imports in a
thread while the first containers start (docs/performance.md)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def _pidfd_child_watcher() -> None:
    """Python 3.11 waits for each subprocess (every runc call) in a thread of its own; a pidfd in
    the event loop costs a start ~5 ms less. 3.12 does this by itself."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    policy = asyncio.get_event_loop_policy()
    if isinstance(getattr(policy, "_watcher", None), asyncio.PidfdChildWatcher):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))  # the kernel may lack pidfds (before 5.3)
    except OSError:
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    policy.set_child_watcher(watcher)


@contextmanager
def _absent(name: str) -> Iterator[None]:
    """While inside, ``import name`` fails as if *name* were not installed (unless already loaded).

    For optional imports of the server stack that the daemon has no use for: FastAPI imports
    ``pydantic.v1`` as it builds each route, only to refuse v1 models (23 ms, 2 MB); uvicorn
    imports ``watchfiles`` for ``--reload`` and falls back to polling without it (1 MB)."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


@contextmanager
def _deferred_model_builds() -> Iterator[None]:
    """FastAPI defines some thirty-five pydantic models for its OpenAPI document, needed only
    if someone asks for ``/docs``: building them at import is ~80 ms of a start.
    Models defined meanwhile get pydantic's ``defer_build`` and are built at first use."""
    from pydantic import BaseModel

    config = BaseModel.model_config
    if "defer_build" in config:
        yield
        return
    config["defer_build"] = True
    try:
        yield
    finally:
        del config["defer_build"]


def _import_server_stack() -> None:
    # The event loop needs the GIL for a moment at each step of a launch: hand it over every
    # 0.1 ms instead of 5 while this thread imports, so that starts are not held up by it.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    try:
        with _absent("watchfiles"):
            import uvicorn  # noqa: F401

        with _deferred_model_builds():
            from extvisor.server import api, listener, remote, routes_extensions  # noqa: F401
            from extvisor.server.declared import routes  # noqa: F401
    finally:
        sys.setswitchinterval(interval)
