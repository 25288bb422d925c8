"""What every benchmark figure shares: a row of the table, timing whole processes, a daemon."""

from __future__ import annotations

import atexit
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from daemon_process import DaemonProcess  # noqa: E402

from extvisor.oci import build_oci_spec, fit_to_host  # noqa: E402
from extvisor.oci.cgroups import remove_cgroup_dirs  # noqa: E402
from extvisor.testing import make_busybox_rootfs, make_service  # noqa: E402

PYTHON = sys.executable
EXTVISOR = str(Path(sys.executable).with_name("extvisor"))
# Raw runs get a cgroup as deep as a daemon's (/extvisor/<instance>/<id>): the same bundle.
RAW_CGROUP_PARENT = "/extvisor/bench-raw"


atexit.register(remove_cgroup_dirs, RAW_CGROUP_PARENT)  # empty by then: each run deletes its own


@dataclass
class Row:
    """One figure: ours against a reference measured in the same run.

    ``kind`` says how the goal reads: ``ratio`` (ours / reference <= goal), ``max`` (ours <= goal),
    ``min`` (ours >= goal).
    """

    figure: str
    ours: float
    reference: float | None
    unit: str
    goal: float
    kind: str = "ratio"
    reference_name: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.ours / self.reference if self.reference else None

    @property
    def passed(self) -> bool:
        value = self.ratio if self.kind == "ratio" else self.ours
        if value is None:
            return False
        return value >= self.goal if self.kind == "min" else value <= self.goal

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "pass": self.passed}


def wall(cmd: list[str], runs: int = 11, env: dict | None = None) -> float:
    """Median wall time of a whole process, after one warm-up run."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired(cmd: list[str], ref: list[str], runs: int = 11, env: dict | None = None) -> tuple[float, float]:
    """Medians of two commands run in turn (A B A B ...), so that drift hits both alike."""
    ours, theirs = [], []
    for i in range(runs + 1):
        for out, c in ((ours, cmd), (theirs, ref)):
            t0 = time.perf_counter()
            subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
            if i:
                out.append(time.perf_counter() - t0)
    return statistics.median(ours), statistics.median(theirs)


def write_services(d: DaemonProcess, n: int, script: str, restart: str = "always", prefix: str = "svc",
                   extra: dict | None = None) -> list[str]:
    base = d.rootfs_dir / "_base"
    if not base.exists():
        make_busybox_rootfs(base)
    ids = []
    for i in range(n):
        name = f"{prefix}{i:03d}"
        if not (d.rootfs_dir / name).exists():
            shutil.copytree(base, d.rootfs_dir / name, symlinks=True)
        doc = {"name": name, "restart": restart, "container": {"entrypoint": "/bin/sh", "args": ["-c", script]}}
        for key, value in (extra or {}).items():
            doc["container"][key] = value
        (d.config_dir / f"{name}.yaml").write_text(json.dumps(doc))
        ids.append(f"ext-{name}")
    return ids


def all_running(d: DaemonProcess, ids: list[str]) -> bool:
    states = {s["id"]: s["state"] for s in d.client.services()}
    return all(states.get(i) == "Running" for i in ids)


def event_ts(service: dict, state: str) -> float:
    """The time of the service's first event in *state* (events come newest first)."""
    return min(e["ts"] for e in service["events"] if e["state"] == state)


def raw_bundle(base: Path, name: str, script: str) -> Path:
    """A runc bundle with the OCI spec extvisor would give *script* (fitted to this host)."""
    rootfs = base / "raw-rootfs"
    if not rootfs.exists():
        make_busybox_rootfs(rootfs)
    bundle = base / f"bundle-{name}"
    bundle.mkdir(parents=True, exist_ok=True)
    oci = build_oci_spec(make_service(name, script), rootfs, cgroup_parent=RAW_CGROUP_PARENT)
    fit_to_host(oci)
    oci.pop("hostname", None)
    (bundle / "config.json").write_text(json.dumps(oci))
    return bundle


def raw_runc_once(base: Path, i: int) -> float:
    """One ``runc run --detach`` of a sleeping service's bundle (the container is removed after)."""
    bundle = raw_bundle(base, "raw", "sleep 1000")
    root = base / "raw-state"
    cid = f"raw{i}"
    t0 = time.perf_counter()
    subprocess.run(["runc", "--root", str(root), "run", "--detach", "--bundle", str(bundle), cid],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - t0
    subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True)
    return elapsed


def raw_runc_loop(base: Path, n: int) -> float:
    """A shell loop of `runc run --detach` over *n* bundles with the OCI spec extvisor would give."""
    root = base / "loop-state"
    script = []
    for i in range(n):
        bundle = raw_bundle(base, f"raw{i:03d}", "sleep 1000")
        script.append(f"runc --root {root} run --detach --bundle {bundle} raw{i:03d} </dev/null >/dev/null 2>&1")
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", "\n".join(script)], check=True)
    elapsed = time.perf_counter() - t0
    for i in range(n):
        subprocess.run(["runc", "--root", str(root), "delete", "--force", f"raw{i:03d}"], capture_output=True)
    return elapsed
