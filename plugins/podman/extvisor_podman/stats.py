"""A container's figures from podman's own stats call (``GET /containers/stats``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from extvisor.oci.cgroups import read_stats
from extvisor.protocols import ContainerStats


def _read(container: Any) -> dict[str, Any]:
    raw = container.stats(stream=False, decode=False)  # libpod: {"Error": ..., "Stats": [...]}
    data = json.loads(raw)
    if data.get("Error"):
        raise RuntimeError(str(data["Error"]))
    return (data.get("Stats") or [{}])[0]


async def container_stats(container: Any, pid: int) -> ContainerStats | None:
    entry = await asyncio.to_thread(_read, container)
    if not entry:
        return None
    local = read_stats(pid=pid) if pid else None  # PIDs and RSS: podman reports neither
    return ContainerStats(
        cpu_seconds=entry.get("CPUNano", 0) / 1e9,
        memory_bytes=int(entry.get("MemUsage", 0)),  # podman's usage, inactive file cache excluded
        rss_bytes=local.rss_bytes if local else 0,
        pids=local.pids if local else (),
        processes=int(entry.get("PIDs", 0)),
        source="podman",
    )
