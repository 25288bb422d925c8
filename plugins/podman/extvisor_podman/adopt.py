"""Adopting the podman container an earlier daemon left running (``Backend.adopt``).

conmon runs on without extvisor and keeps writing the container's output to its log file;
the earlier daemon recorded how far it had read (``logfile.py``). The new daemon finds the
container by its name (``<id>.<instance>``), checks it is ours and still runs, and reads its
log on from that position: same PID, no output missed or repeated. Without a recorded
position (a remote podman, read through its attach stream; a daemon killed before its
first read) where the earlier daemon stopped is unknown: None, and the container is replaced.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from extvisor import BackendError, LaunchRequest

from .logfile import FileTail, load_position
from .translate import LABEL, LITTER_LABEL, OWNER_LABEL

if TYPE_CHECKING:
    from .backend import PodmanBackend, PodmanContainer

log = logging.getLogger("extvisor.podman")


async def adopt(backend: PodmanBackend, request: LaunchRequest) -> PodmanContainer | None:
    from .backend import PodmanContainer, _message, _not_found, log_path

    if not backend.files:
        return None  # output through the attach stream: what was written meanwhile is not kept
    sid = request.service_id
    name = f"{sid}.{backend.scope}"
    client = backend._client()
    try:
        container = await asyncio.to_thread(client.containers.get, name)
    except Exception as exc:
        if _not_found(exc):
            return None
        raise BackendError(f"podman could not look up {name}: {_message(exc)}") from exc
    labels = container.labels or {}
    if labels.get(LABEL) != sid or labels.get(OWNER_LABEL) != backend.owner:
        return None  # not ours: cleanup() leaves it, launch() says so
    state = container.attrs.get("State") or {}
    ended = not state.get("Running") and state.get("Status") in ("exited", "stopped")
    if not ended and (not state.get("Running") or not state.get("Pid")):
        return None  # neither running nor ended (created, paused...): cleanup removes it
    position = load_position(Path(request.state_dir))
    if position is None or position.container != container.id:
        return None
    try:
        tail = FileTail(request.log, sid, log_path(container.attrs), Path(request.state_dir), container.id,
                        resume=position)  # fmt: skip
    except (OSError, BackendError) as exc:
        log.warning("%s: cannot read its output on: %s", sid, exc)
        return None
    rootfs = Path(request.rootfs)
    litter = [rootfs / n for n in (labels.get(LITTER_LABEL) or "").split(",") if n]
    handle = PodmanContainer(backend, request, container, tail, [], litter)
    handle.pid = int(state.get("Pid") or 0)
    handle._start_waiter()  # ended while no daemon watched: conmon kept the exit code, wait() gives it
    return handle
