"""Read a container's CPU, memory and processes from its cgroup, under cgroup v1 or v2.

Plugin-facing: backends answer ``extvisor_container_stats`` with :func:`read_stats`, and
the core falls back to it for a backend that does not answer. The cgroup is found from
``/proc/<pid>/cgroup`` of the container's init (or given as the OCI ``cgroupsPath``) and
the hierarchies from ``/proc/self/mountinfo``. A controller mounted as v1 is read there
(this machine: v1 controllers plus an empty v2 mount, "hybrid"); otherwise the v2 files.

Figures, as ``docker stats`` / kubelet compute them:

* CPU seconds: v1 ``cpuacct.usage`` (ns), v2 ``cpu.stat usage_usec``.
* working set: usage minus inactive file cache: v1 ``memory.usage_in_bytes -
  total_inactive_file``, v2 ``memory.current - inactive_file``.
* RSS (anonymous memory): v1 ``total_rss``, v2 ``anon``.
* processes: every PID in ``cgroup.procs`` of the cgroup and its children.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from extvisor.protocols import ContainerStats

V2 = ""  # the key of the unified hierarchy in the maps below


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[str, tuple[Path, str]]:
    """controller (or V2) -> (mount point, root of the mount within the hierarchy)."""
    found: dict[str, tuple[Path, str]] = {}
    with open(mountinfo) as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            parts, rest = head.split(), tail.split()
            if len(parts) < 5 or len(rest) < 3:
                continue
            fstype, options = rest[0], rest[2].split(",")
            where = (Path(parts[4].replace("\\040", " ")), parts[3])
            if fstype == "cgroup2":
                found.setdefault(V2, where)
            elif fstype == "cgroup":
                for opt in options:
                    if opt in ("cpu", "cpuacct", "memory", "pids") or opt.startswith("name="):
                        found.setdefault(opt, where)
    return found


def _pid_cgroups(pid: int) -> dict[str, str]:
    """controller (or V2) -> the cgroup path of *pid* in that hierarchy."""
    paths: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                paths[V2] = path
            for c in controllers.split(","):
                paths[c] = path
    return paths


@dataclass
class Cgroup:
    """A container's cgroup directories, by controller; V2 is the unified one."""

    dirs: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of_pid(cls, pid: int) -> Cgroup:
        return cls._resolve(_pid_cgroups(pid))

    @classmethod
    def of_path(cls, cgroups_path: str) -> Cgroup:
        """The cgroup an OCI ``linux.cgroupsPath`` names (absolute: the same in every hierarchy)."""
        return cls._resolve({c: cgroups_path for c in ("cpuacct", "memory", "pids", V2)})

    @classmethod
    def _resolve(cls, paths: dict[str, str]) -> Cgroup:
        dirs = {}
        for controller, (mount, root) in _mounts().items():
            path = paths.get(controller)
            if path is None:
                continue
            if root != "/" and path.startswith(root):
                path = path[len(root):]  # the mount shows only a subtree of the hierarchy
            d = mount / path.lstrip("/")
            if d.is_dir():
                dirs[controller] = d
        return cls(dirs)

    @property
    def version(self) -> int:
        return 1 if ("cpuacct" in self.dirs or "memory" in self.dirs) else 2

    def _dir(self, controller: str) -> Path | None:
        d = self.dirs.get(controller)
        if d is not None:
            return d
        v2 = self.dirs.get(V2)
        # The unified hierarchy of a hybrid host has no controllers: only its files count.
        if v2 is not None and (v2 / f"{'cpu' if controller == 'cpuacct' else controller}.stat").exists():
            return v2
        return None

    def cpu_seconds(self) -> float:
        d = self.dirs.get("cpuacct")
        if d is not None:
            return int((d / "cpuacct.usage").read_text()) / 1e9
        d = self._dir("cpu")
        if d is None:
            return 0.0
        return _flat(d / "cpu.stat").get("usage_usec", 0) / 1e6

    def memory(self) -> tuple[int, int]:
        """(working set, rss) in bytes."""
        d = self.dirs.get("memory")
        if d is not None:
            stat = _flat(d / "memory.stat")
            usage = int((d / "memory.usage_in_bytes").read_text())
            return max(0, usage - stat.get("total_inactive_file", 0)), stat.get("total_rss", 0)
        d = self._dir("memory")
        if d is None:
            return 0, 0
        stat = _flat(d / "memory.stat")
        usage = int((d / "memory.current").read_text())
        return max(0, usage - stat.get("inactive_file", 0)), stat.get("anon", 0)

    def pids(self) -> list[int]:
        """Every process in the cgroup and its children, as host PIDs."""
        for key in ("pids", "memory", "cpuacct", V2):
            d = self.dirs.get(key)
            if d is not None:
                break
        else:
            return []
        found: list[int] = []
        for root, _, files in os.walk(d):
            if "cgroup.procs" in files:
                try:
                    text = Path(root, "cgroup.procs").read_text()
                except OSError:
                    continue
                found += [int(p) for p in text.split()]
        return sorted(set(found))

    def stats(self) -> ContainerStats:
        working_set, rss = self.memory()
        pids = self.pids()
        return ContainerStats(
            cpu_seconds=self.cpu_seconds(), memory_bytes=working_set, rss_bytes=rss,
            pids=tuple(pids), processes=len(pids), source=f"cgroup v{self.version}",
        )  # fmt: skip


def _flat(path: Path) -> dict[str, int]:
    """A ``key value`` per line file (memory.stat, cpu.stat)."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def read_stats(pid: int | None = None, cgroups_path: str | None = None) -> ContainerStats | None:
    """The figures of the cgroup of *pid* (or of an absolute OCI *cgroups_path*).

    :returns: ``None`` when the process or cgroup is gone (the container just ended).
    """
    try:
        if cgroups_path and cgroups_path.startswith("/"):
            group = Cgroup.of_path(cgroups_path)
        elif pid:
            group = Cgroup.of_pid(pid)
        else:
            return None
        if not group.dirs:
            return None
        return group.stats()
    except (FileNotFoundError, ProcessLookupError):
        return None


def remove_cgroup_dirs(cgroups_path: str) -> list[str]:
    """Remove the cgroup dirs at *cgroups_path* (only empty ones go); list those that stay.

    Checks every hierarchy under /sys/fs/cgroup: v1 controllers, and the v2 mount of a
    hybrid host. A relative path (placed under the runtime's own cgroup) is not looked for.
    Backends call it for a container's cgroup after delete, and for the daemon's parent
    (``/extvisor/<instance>``) when they close.
    """
    if not cgroups_path.startswith("/"):
        return []
    left = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        path = hierarchy / cgroups_path.lstrip("/")
        if path.is_dir():
            try:
                path.rmdir()
            except OSError:
                left.append(str(path))
    return left


def daemon_parent(cgroups_path: str) -> str:
    """The daemon's own cgroup (``/extvisor/<instance>``) above a container's, or ''.

    Backends keep it while the daemon runs (runc would create it again at every start) and
    pass it to :func:`remove_cgroup_dirs` when they close; never ``/extvisor`` itself.
    """
    parent = posixpath.dirname(cgroups_path)
    return parent if parent.count("/") > 1 else ""
