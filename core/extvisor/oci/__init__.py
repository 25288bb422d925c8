"""The OCI runtime spec of an extension service, built as Talos builds it, and the backends' toolbox.

Talos starts from containerd's default Linux spec and applies the extension's options
(internal/app/machined/pkg/system/services/extension.go); so does this module, ending
with containerd's default seccomp profile for the service's capabilities (``seccomp``).
Beside the builder, what every backend needs of the host: reading a container's cgroup
(v1 and v2) and removing cgroup dirs (``cgroups``), and killing a container's init through
a pidfd when its runtime does not answer (``procs``).

Plugin-facing: backends call :func:`fit_to_host` (and :func:`fit_to_rootless` without root),
``cgroups.read_stats``, ``remove_cgroup_dirs``, ``daemon_parent`` and ``procs.watch_kill``;
the contract suite builds specs here.

May import: ``extvisor.documents`` and the plugin surface (``cgroups`` answers with
``extvisor.protocols.ContainerStats``). Never ``extvisor.runtime``, ``extvisor.server`` or
any part above.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from extvisor.oci.seccomp import default_profile
from extvisor.documents.models import Mount, ServiceSpec

# containerd's defaults, which Talos keeps unless the spec gives lists (pkg/oci/spec.go).
DEFAULT_MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
]
DEFAULT_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# Talos drops these two from the capabilities it grants (constants.DefaultDroppedCapabilities).
DROPPED_CAPABILITIES = {"CAP_SYS_BOOT", "CAP_SYS_MODULE"}
_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]  # fmt: skip

OOM_SCORE_ADJ = -600
CGROUP_PARENT = "/extvisor"


class ContainerSpecError(ValueError):
    """The service cannot be turned into a container (missing rootfs, bad entrypoint...)."""


def _own_capabilities(field: str) -> int | None:
    """A capability mask of this process (``CapBnd``, ``CapEff``...), or None if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def grantable_capabilities() -> list[str]:
    """Every capability in this process's bounding set, less the two Talos drops.

    Talos grants machined's bounding set (``AllGrantableCapabilities``); a runtime cannot
    grant more than its own, so a sandbox that lacks one (CAP_SYS_RESOURCE here) still works.
    """
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = len(_CAPABILITIES) - 1
    bounding = _own_capabilities("CapBnd")
    return [
        c
        for i, c in enumerate(_CAPABILITIES[: last + 1])
        if c not in DROPPED_CAPABILITIES and (bounding is None or bounding >> i & 1)
    ]


def fit_to_host(oci: dict[str, Any]) -> list[str]:
    """Change *oci* in place where this host cannot do what Talos does; say what changed.

    Lowering ``oomScoreAdj`` needs CAP_SYS_RESOURCE; without it runc fails the start
    ("failed to update /proc/self/oom_score_adj: Permission denied"), so the value is
    raised to this process's own, the lowest it may set. Backends call this at launch.
    """
    notes: list[str] = []
    process = oci.get("process") or {}
    wanted = process.get("oomScoreAdj")
    eff = _own_capabilities("CapEff")
    if wanted is not None and eff is not None and not eff >> 24 & 1:  # 24 = CAP_SYS_RESOURCE
        try:
            own = int(Path("/proc/self/oom_score_adj").read_text())
        except (OSError, ValueError):
            own = 0
        if wanted < own:
            process["oomScoreAdj"] = own
            notes.append(f"oomScoreAdj {wanted} needs CAP_SYS_RESOURCE; using {own}")
    return notes


def fit_to_rootless(oci: dict[str, Any], mqueue: str = "/dev/mqueue") -> list[str]:
    """Change *oci* in place for a runtime without root (rootless podman); say what changed.

    A user namespace may not mount a new sysfs for a network namespace it shares with the
    host, nor a new mqueue for a shared IPC namespace ("operation not permitted"). The
    host's are bound instead, as podman does for ``--network host``: the same objects the
    new mounts would show. ``/sys/fs/cgroup`` comes with the recursive bind of ``/sys``.
    Where the host has no *mqueue* directory, the container gets an empty tmpfs there
    (POSIX queues work through mq_open(3) all the same; only their listing is missing).
    """
    notes: list[str] = []
    private = {n.get("type") for n in (oci.get("linux") or {}).get("namespaces", [])}
    mounts = oci.get("mounts") or []
    out = []
    for m in mounts:
        dest, kind = m.get("destination"), m.get("type")
        flags = [o for o in m.get("options") or [] if o in ("nosuid", "noexec", "nodev", "ro")]
        if dest == "/sys" and kind == "sysfs" and "network" not in private:
            m = {"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", *flags]}
            notes.append("/sys: the host's, bound (a new sysfs needs root)")
        elif dest == "/sys/fs/cgroup" and kind == "cgroup" and "network" not in private:
            continue  # part of the bound /sys
        elif dest == "/dev/mqueue" and kind == "mqueue" and "ipc" not in private:
            if os.path.isdir(mqueue):
                m = {"destination": dest, "type": "bind", "source": mqueue, "options": ["rbind", *flags]}
                notes.append("/dev/mqueue: the host's, bound (a new mqueue needs root)")
            else:
                m = {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": [*flags, "mode=1777"]}
                notes.append(f"/dev/mqueue: the host has no {mqueue}; an empty tmpfs")
        out.append(m)
    oci["mounts"] = out
    return notes


def _default_mounts(writeable_sysfs: bool) -> list[dict[str, Any]]:
    sys_options = ["nosuid", "noexec", "nodev"] + ([] if writeable_sysfs else ["ro"])
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]  # fmt: skip


def _mount_dict(mount: Mount) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": mount.destination, "type": mount.type, "source": mount.source}
    if mount.options is not None:
        out["options"] = list(mount.options)
    for key in ("uidmappings", "gidmappings"):
        maps = getattr(mount, key)
        if maps:
            out[key.replace("mappings", "Mappings")] = [m.model_dump(exclude_none=True) for m in maps]
    return out


def merge_environment(*layers: Iterable[str]) -> list[str]:
    """``KEY=value`` lists, later layers winning per key, first position kept (containerd's rule)."""
    order: list[str] = []
    values: dict[str, str] = {}
    for layer in layers:
        for entry in layer:
            key = entry.split("=", 1)[0]
            if "=" not in entry:
                values.pop(key, None)  # a bare KEY removes it, as containerd does
                continue
            if key not in values:
                order.append(key)
            values[key] = entry
    return [values[k] for k in order if k in values]


def build_oci_spec(
    spec: ServiceSpec,
    rootfs: Path,
    *,
    env_file: Sequence[str] = (),
    extra_env: Sequence[str] = (),
    extra_mounts: Sequence[dict[str, Any]] = (),
    cgroup_parent: str = CGROUP_PARENT,
) -> dict[str, Any]:
    """The OCI runtime spec (config.json) for one run of *spec*.

    :param env_file: ``KEY=value`` entries read from ``environmentFile``.
    :param extra_env: ExtensionServiceConfig environment; it follows the spec's own.
    :param extra_mounts: OCI mounts appended after the spec's (ExtensionServiceConfig files).
    """
    security = spec.container.security
    args = [spec.container.entrypoint, *(spec.container.args or [])]
    env = merge_environment(env_file, spec.container.environment or [], extra_env)
    caps = grantable_capabilities()
    mounts = _default_mounts(security.writeableSysfs)
    mounts += [
        {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind", "ro"]},
        {"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rbind", "ro"]},
    ]
    mounts += [_mount_dict(m) for m in spec.container.mounts or []]
    mounts += [dict(m) for m in extra_mounts]
    linux: dict[str, Any] = {
        # No network or IPC namespace: the host's are shared, as Talos does. The UTS namespace
        # is private but no hostname is set, so the container keeps the node's (lldpd etc.
        # tell the network the node's name, not the service's).
        "namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}],
        "maskedPaths": list(DEFAULT_MASKED_PATHS if security.maskedPaths is None else security.maskedPaths),
        "readonlyPaths": list(DEFAULT_READONLY_PATHS if security.readonlyPaths is None else security.readonlyPaths),
        "resources": {"devices": [{"allow": True, "access": "rwm"}]},
        "cgroupsPath": posixpath.join(cgroup_parent, spec.id),
    }
    if security.rootfsPropagation:
        linux["rootfsPropagation"] = security.rootfsPropagation
    # Last, as Talos's seccomp.WithDefaultProfile(): the profile depends on the capabilities.
    linux["seccomp"] = default_profile(caps)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": env,
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": True,
            "oomScoreAdj": OOM_SCORE_ADJ,
            # No rlimits: the container inherits the daemon's, as under Talos.
        },
        "root": {"path": str(rootfs), "readonly": not security.writeableRootfs},
        "mounts": mounts,
        "linux": linux,
    }


def check_rootfs(spec: ServiceSpec, rootfs: Path) -> None:
    """Refuse a missing rootfs, or an entrypoint that is missing or resolves outside it.

    An entrypoint under a mount destination may come from the host, so it is not looked for.
    """
    if not rootfs.is_dir():
        raise ContainerSpecError(f"rootfs {str(rootfs)!r} does not exist or is not a directory")
    entry = spec.container.entrypoint
    if "/" not in entry:
        return  # looked up in PATH by the runtime
    target = posixpath.normpath(posixpath.join("/", entry))
    if ".." in entry.split("/"):
        raise ContainerSpecError(f"entrypoint {entry!r} must not contain '..'")
    for m in spec.container.mounts or []:
        dest = posixpath.normpath(m.destination or "/")
        if target == dest or target.startswith(dest.rstrip("/") + "/"):
            return
    resolved = resolve_in_root(rootfs, target)
    if not resolved.exists():
        raise ContainerSpecError(f"entrypoint {entry!r} not found: {str(rootfs / target.lstrip('/'))!r} does not exist")
    if not resolved.is_file() or not os.access(resolved, os.X_OK):
        raise ContainerSpecError(f"entrypoint {entry!r} is not an executable file ({str(resolved)!r})")


def resolve_in_root(rootfs: Path, path: str, _depth: int = 0) -> Path:
    """Resolve *path* inside *rootfs* as the container will, refusing symlinks that leave it."""
    if _depth > 40:
        raise ContainerSpecError(f"too many symlinks resolving {path!r} in {str(rootfs)!r}")
    parts = [p for p in path.split("/") if p and p != "."]
    current: list[str] = []
    for i, part in enumerate(parts):
        if part == "..":
            if not current:
                raise ContainerSpecError(f"{path!r} resolves outside the rootfs {str(rootfs)!r}")
            current.pop()
            continue
        candidate = rootfs.joinpath(*current, part)
        if candidate.is_symlink():
            link = os.readlink(candidate)
            rest = "/".join(parts[i + 1 :])
            if link.startswith("/"):
                base = link
            else:
                # A relative link that climbs above / would leave the rootfs on the host.
                base = posixpath.normpath(posixpath.join("/", *current, link)) if _climbs_ok(current, link) else None
                if base is None:
                    raise ContainerSpecError(
                        f"{path!r} resolves outside the rootfs {str(rootfs)!r} (symlink {str(candidate)!r} -> {link!r})"
                    )
            return resolve_in_root(rootfs, posixpath.join(base, rest), _depth + 1)
        current.append(part)
    return rootfs.joinpath(*current)


def _climbs_ok(current: list[str], link: str) -> bool:
    depth = len(current)
    for part in link.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part and part != ".":
            depth += 1
    return True


def create_missing_sources(spec: ServiceSpec) -> None:
    """Create each missing mount source as a directory (mode 0700), as Talos does before a start."""
    for m in spec.container.mounts or []:
        if m.source and m.source.startswith("/") and not os.path.lexists(m.source):
            os.makedirs(m.source, mode=0o700, exist_ok=True)
