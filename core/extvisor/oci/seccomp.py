"""containerd's default seccomp profile for a set of capabilities, as Talos applies it.

Talos's containerd runner ends its spec options with ``seccomp.WithDefaultProfile()``;
the profile depends on the process's bounding capabilities. The rules are data in
``seccomp_default.json``, generated from containerd's Go source by
``scripts/gen_seccomp.py`` (never edited by hand); :func:`default_profile` combines them
in the order containerd's ``DefaultProfile`` appends them.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("seccomp_default.json")

# platform.machine() -> Go's runtime.GOARCH, which the Go function switches on.
GOARCH = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "386", "i686": "386", "aarch64": "arm64",
    "arm64": "arm64", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
    "riscv64": "riscv64", "mips64": "mips64",
}  # fmt: skip


@cache
def rules() -> dict[str, Any]:
    """The generated data (base rules, by kernel, by architecture, by capability)."""
    return json.loads(DATA.read_text())


def _kernel() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return 0, 0


def default_profile(
    capabilities: Iterable[str], machine: str | None = None, kernel: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object containerd's ``DefaultProfile`` gives a process whose
    bounding set is *capabilities*, on *machine* (``platform.machine()``) and *kernel*."""
    data = rules()
    goarch = GOARCH.get(machine or platform.machine(), machine or "")
    version = kernel or _kernel()
    syscalls = [dict(r) for r in data["syscalls"]]
    for item in data.get("byKernel", []):
        if version >= tuple(item["atLeast"]):
            syscalls += item["syscalls"]
    syscalls += data["byArch"].get(goarch, [])
    caps = list(capabilities)
    for cap in caps:  # in the order of the bounding set, as the Go loop goes
        syscalls += data["byCapability"].get(cap, [])
    if data["adminCapability"] not in caps:
        without = data["withoutAdmin"]
        syscalls += without["byArch"].get(goarch, without["byArch"].get("default", []))
        syscalls += without["always"]
    return {
        "defaultAction": data["defaultAction"],
        "architectures": list(data["architectures"].get(goarch, data["architectures"].get("default", []))),
        "syscalls": [json.loads(json.dumps(r)) for r in syscalls],  # the caller may change its copy
    }


def allowed(profile: dict[str, Any], name: str) -> bool:
    """Whether *profile* allows the syscall *name* unconditionally (no argument rules)."""
    return any(
        name in r["names"] and r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for r in profile["syscalls"]
    )
