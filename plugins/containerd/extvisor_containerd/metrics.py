"""A task's figures from containerd's own ``Tasks.Metrics`` call.

The answer is an ``Any`` holding containerd/cgroups' ``io.containerd.cgroups.v1.Metrics``
(or ``.v2.Metrics``). Those protos are not vendored (they are not part of containerd's
API module); the few fields used are read straight from the protobuf wire format, with
the field numbers of cgroups' stats/v1/metrics.proto and cgroup2/stats/metrics.proto.
"""

from __future__ import annotations

from typing import Any

from extvisor.oci.cgroups import read_stats
from extvisor.protocols import ContainerStats


def _fields(data: bytes) -> dict[int, Any]:
    """field number -> last value: an int for varints, bytes for length-delimited fields."""
    out: dict[int, Any] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            out[number], i = data[i : i + size], i + size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def decode(type_url: str, value: bytes) -> tuple[float, int, int, int]:
    """(cpu seconds, working set, rss, processes) from a cgroups Metrics message."""
    top = _fields(value)
    if type_url.endswith("cgroups.v1.Metrics"):
        pids = _fields(top.get(2, b"")).get(1, 0)
        usage = _fields(_fields(top.get(3, b"")).get(1, b""))
        memory = _fields(top.get(4, b""))
        in_use = _fields(memory.get(33, b"")).get(2, 0)  # MemoryEntry usage.usage
        working = max(0, in_use - memory.get(30, 0))  # - total_inactive_file
        return usage.get(1, 0) / 1e9, working, memory.get(19, 0), pids  # total ns; total_rss
    if type_url.endswith("cgroups.v2.Metrics"):
        pids = _fields(top.get(1, b"")).get(1, 0)
        cpu = _fields(top.get(2, b""))
        memory = _fields(top.get(4, b""))
        working = max(0, memory.get(32, 0) - memory.get(13, 0))  # usage - inactive_file
        return cpu.get(1, 0) / 1e6, working, memory.get(1, 0), pids  # usage_usec; anon
    raise ValueError(f"unknown metrics type {type_url!r}")


async def task_stats(client: Any, cid: str, pid: int) -> ContainerStats | None:
    from .api.services.tasks.v1 import tasks_pb2

    reply = await client.call(client.tasks.Metrics, tasks_pb2.MetricsRequest(filters=[f"id=={cid}"]))
    for metric in reply.metrics:
        if metric.id == cid:
            cpu, working, rss, count = decode(metric.data.type_url, metric.data.value)
            local = read_stats(pid=pid)  # PIDs for `extvisor processes`: containerd gives only a count
            return ContainerStats(cpu_seconds=cpu, memory_bytes=working, rss_bytes=rss,
                                  pids=local.pids if local else (), processes=count, source="containerd")  # fmt: skip
    return None
