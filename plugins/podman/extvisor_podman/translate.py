"""The OCI runtime spec core builds, turned into podman's container-create body (SpecGenerator).

Only the spec is read, never the YAML, so every backend runs the same container. What
podman cannot express is returned as short notes instead of being dropped silently.

Why not ``privileged``: podman ignores ``cap_drop`` for privileged containers (seen with
4.3.1) and would grant CAP_SYS_BOOT/CAP_SYS_MODULE, which Talos drops. An unprivileged
container with the spec's capabilities and seccomp profile, no AppArmor/SELinux confinement and the
spec's device rules is the same container as the spec describes.
"""

from __future__ import annotations

from typing import Any

LABEL = "io.extvisor.service"
OWNER_LABEL = "io.extvisor.owner"  # the state dir of the daemon that made it
LITTER_LABEL = "io.extvisor.litter"  # mountpoints podman made in a writeable rootfs, to remove

# podman mounts these itself with the same options; passing them would only duplicate.
PODMAN_MOUNTS = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/dev/mqueue": "mqueue"}

# Options podman (4.3) accepts on bind and tmpfs mounts; it refuses the others at create.
_OPTION_WORDS = {
    "ro", "rw", "nosuid", "suid", "noexec", "exec", "nodev", "dev", "bind", "rbind",
    "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable",
    "tmpcopyup", "notmpcopyup", "z", "Z", "U", "O", "copy", "nocopy", "idmap",
}  # fmt: skip
_OPTION_KEYS = ("mode=", "size=", "idmap=")
_ATIME = {"atime", "noatime", "relatime", "norelatime", "strictatime", "nostrictatime", "nodiratime", "diratime"}

# Paths podman masks or makes read-only by default (4.x and 5.x) in unprivileged containers.
# Only these can be read-only: podman has no way to add a read-only path.
PODMAN_MASKED = [
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux",
    "/sys/dev/block", "/sys/devices/virtual/powercap", "/proc/interrupts",
]  # fmt: skip
PODMAN_READONLY = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

_NAMESPACES = {"pid": "pidns", "uts": "utsns", "ipc": "ipcns", "network": "netns", "cgroup": "cgroupns"}

# Keys of the spec this module reads; any other key is reported as not expressed.
_PROCESS_KEYS = {"terminal", "user", "args", "env", "cwd", "capabilities", "noNewPrivileges", "oomScoreAdj",
                 "rlimits", "apparmorProfile"}  # fmt: skip
_LINUX_KEYS = {"namespaces", "maskedPaths", "readonlyPaths", "resources", "cgroupsPath", "rootfsPropagation",
               "sysctl", "seccomp"}  # fmt: skip
_TOP_KEYS = {"ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations"}


def parse_ulimits(text: str) -> list[dict[str, Any]]:
    """``nofile=1024:1024,nproc=512`` → podman's ``r_limits`` entries."""
    out = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, value = item.partition("=")
        soft, _, hard = value.partition(":")
        if not name or not soft:
            raise ValueError(f"bad ulimit {item!r}: expected name=soft[:hard]")
        out.append({"type": name.strip().lower(), "soft": int(soft), "hard": int(hard or soft)})
    return out


def _mount(m: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    dest, kind = m.get("destination", ""), m.get("type", "")
    if PODMAN_MOUNTS.get(dest) == kind:
        return None
    for key in ("uidMappings", "gidMappings"):
        if m.get(key):
            notes.append(f"mount {dest} {key}")
    options = list(m.get("options") or [])
    if kind in ("bind", "tmpfs") or "bind" in options or "rbind" in options:
        kept = [o for o in options if o in _OPTION_WORDS or o.startswith(_OPTION_KEYS)]
        dropped = [o for o in options if o not in kept and o not in _ATIME]
        if dropped:
            notes.append(f"mount {dest} options {','.join(dropped)}")
        options = kept
    return {"destination": dest, "type": kind, "source": m.get("source", ""), "options": options}


def _paths(linux: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    masked = list(linux.get("maskedPaths") or [])
    readonly = list(linux.get("readonlyPaths") or [])
    wanted = set(masked) | set(readonly)
    cannot = [p for p in readonly if p not in PODMAN_READONLY and p not in masked]
    cannot += [p for p in readonly if p in PODMAN_MASKED and p not in masked]
    if cannot:
        notes.append("readonlyPaths " + ",".join(sorted(set(cannot))))
    unmask = [p for p in PODMAN_MASKED + PODMAN_READONLY if p not in wanted]
    return {"mask": masked, "unmask": unmask}


def _rlimits(process: dict[str, Any], ulimits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The spec sets none (the container inherits the daemon's); podman always sets some,
    # and its defaults can exceed the hard limit (the "podman-ulimits" option).
    spec = {}
    for r in process.get("rlimits") or []:
        name = r["type"].lower().removeprefix("rlimit_")
        spec[name] = {"type": name, "soft": r.get("soft", 0), "hard": r.get("hard", 0)}
    merged = {u["type"]: u for u in ulimits}
    merged.update(spec)
    return list(merged.values())


def _unknown(where: str, d: dict[str, Any], known: set[str], notes: list[str]) -> None:
    notes.extend(f"{where}{k}" for k in d if k not in known)


def translate(
    oci: dict[str, Any],
    service_id: str,
    *,
    runtime: str = "",
    ulimits: list[dict[str, Any]] | None = None,
    owner: str = "",
    node_hostname: str = "",
    seccomp_path: str = "",
) -> tuple[dict[str, Any], list[str]]:
    """Return podman's create body for *oci*, and the names of settings it cannot express.

    :param node_hostname: the hostname of the machine podman runs on. A spec without a
        hostname keeps the node's; podman would invent one (the container id) for a private
        UTS namespace, so it is told this one, or shares the host's UTS namespace if unknown.
    :param seccomp_path: a file on podman's host holding the spec's ``linux.seccomp`` as
        JSON (podman reads a profile only from a file); without it the profile is a note.
    """
    notes: list[str] = []
    process = oci.get("process", {})
    linux = oci.get("linux", {})
    root = oci.get("root", {})
    _unknown("", oci, _TOP_KEYS, notes)
    _unknown("process.", process, _PROCESS_KEYS, notes)
    _unknown("linux.", linux, _LINUX_KEYS, notes)
    readonly = bool(root.get("readonly"))
    env = dict(e.split("=", 1) for e in process.get("env", []) if "=" in e)
    body: dict[str, Any] = {
        "name": service_id,
        "labels": {LABEL: service_id, OWNER_LABEL: owner},
        "image": "",
        "rootfs": root["path"],
        # A read-only root is mounted as an overlay: podman then writes its mountpoints
        # (etc/hostname, run/.containerenv...) into the overlay, not into the directory.
        "rootfs_overlay": readonly,
        "read_only_filesystem": readonly,
        "read_write_tmpfs": False,
        "command": list(process.get("args", [])),
        "env": env,
        "unsetenvall": True,  # no PATH/TERM/container= of podman's: the spec's environment only
        "work_dir": process.get("cwd", "/"),
        "terminal": bool(process.get("terminal")),
        "hostname": oci.get("hostname") or node_hostname,
        "privileged": False,
        "cap_drop": ["ALL"],
        "no_new_privileges": bool(process.get("noNewPrivileges")),
        "seccomp_profile_path": seccomp_path if linux.get("seccomp") and seccomp_path else "unconfined",
        "apparmor_profile": process.get("apparmorProfile") or "unconfined",
        "selinux_opts": ["disable"],
        "r_limits": _rlimits(process, ulimits or []),
        "mounts": [m for m in (_mount(m, notes) for m in oci.get("mounts", [])) if m is not None],
        "log_configuration": {"driver": "k8s-file"},
    }
    if runtime:
        body["oci_runtime"] = runtime
    user = process.get("user", {})
    body["user"] = f"{user.get('uid', 0)}:{user.get('gid', 0)}"
    if user.get("additionalGids"):
        body["groups"] = [str(g) for g in user["additionalGids"]]
    caps = process.get("capabilities", {})
    body["cap_add"] = list(caps.get("bounding", []))
    if any(set(caps.get(k, [])) != set(body["cap_add"]) for k in ("effective", "permitted") if k in caps):
        notes.append("process.capabilities (effective/permitted differ from bounding)")
    if "oomScoreAdj" in process:
        body["oom_score_adj"] = int(process["oomScoreAdj"])
    private = {n["type"]: n for n in linux.get("namespaces", [])}
    for oci_type, key in _NAMESPACES.items():
        ns = private.get(oci_type)
        if ns is None:
            body[key] = {"nsmode": "host"}
        elif ns.get("path"):
            body[key] = {"nsmode": "path", "value": ns["path"]}
        else:
            body[key] = {"nsmode": "private"}
    if not body["hostname"] and body["utsns"]["nsmode"] == "private":
        body["utsns"] = {"nsmode": "host"}  # the node's name, as the spec means
    if linux.get("seccomp") and not seccomp_path:
        notes.append("linux.seccomp")
    if "mount" not in private:
        notes.append("linux.namespaces without mount")
    if "user" in private:
        notes.append("linux.namespaces user")
    if linux.get("uidMappings") or linux.get("gidMappings"):
        notes.append("linux.uidMappings/gidMappings")
    body.update(_paths(linux, notes))
    resources = dict(linux.get("resources") or {})
    body["device_cgroup_rule"] = resources.pop("devices", [])
    notes.extend(f"linux.resources.{k}" for k in resources)
    # linux.cgroupsPath is not passed: podman names the container's cgroup itself (README).
    if linux.get("rootfsPropagation"):
        body["rootfs_propagation"] = linux["rootfsPropagation"]
    if linux.get("sysctl"):
        body["sysctl"] = dict(linux["sysctl"])
    if oci.get("annotations"):
        body["annotations"] = dict(oci["annotations"])
    return body, notes


# What podman creates in a rootfs it mounts directly (a writeable root): mountpoints
# for its own bind mounts, and the mtab link. Removed again after the container if new.
PODMAN_LITTER = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab", "run/.containerenv")
