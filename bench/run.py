"""Every benchmark in one table (as root, after ``scripts/setup.sh --dev``; about four minutes
on 2 cores):

    python bench/run.py [--json FILE] [--only cli,daemon,runc,restart,logs,containerd,podman,extensions,build,nodes,health,
                                              verify,declared,follow]

Each figure is measured in this run, next to what a user would otherwise type (a bare
interpreter, runc, ctr, podman, skopeo + umoci), and printed as: figure, extvisor,
reference, ratio, goal, pass or fail. Benchmarks are not tests: nothing fails on them, the
exit code is 0 whatever the figures. docs/performance.md quotes this table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row  # noqa: E402

PARTS = ["cli", "daemon", "runc", "restart", "logs", "containerd", "podman", "extensions", "build", "nodes", "health",
         "verify", "declared", "follow"]


def measure(part: str) -> list[Row]:
    import figures_cli as fc
    import figures_others as fo
    import figures_runc as fr

    if part == "cli":
        return fc.cli_rows()
    if part == "daemon":
        return [fc.daemon_start_row()]
    if part == "runc":
        return [*fr.first_start_rows(), fr.restart_row(), *fr.fifty_rows()]
    if part == "restart":
        import figures_restart as fz

        return [*fz.restart_rows("runc"), *fz.restart_rows("containerd"), *fz.monitor_rows()]
    if part == "logs":
        return [fr.log_latency_row(), *fr.flood_rows()]
    if part == "containerd":
        return [fo.containerd_row()]
    if part == "podman":
        return [fo.podman_row()]
    if part == "extensions":
        return [fo.extensions_row()]
    if part == "build":
        return [fo.build_row()]
    if part == "nodes":
        return [fo.nodes_row()]
    if part == "verify":
        return fo.verify_rows()
    if part == "declared":
        return fo.declared_rows()
    if part == "follow":
        return fo.follow_rows()
    if part == "health":
        import bench_health as bh

        return [row for p in bh.PARTS for row in bh.measure(p)]
    raise ValueError(part)


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.2f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def goal_text(row: Row) -> str:
    if math.isinf(row.goal):
        return "-"
    sign = {"ratio": "<=", "max": "<=", "min": ">="}[row.kind]
    return f"{sign} {row.goal:g}x" if row.kind == "ratio" else f"{sign} {row.goal:g} {row.unit}"


def table(rows: list[Row]) -> str:
    head = ["figure", "extvisor", "reference", "ratio", "goal", "result"]
    body = []
    for r in rows:
        ref = f"{fmt(r.reference, r.unit)} ({r.reference_name})" if r.reference_name else fmt(r.reference, r.unit)
        result = "-" if math.isinf(r.goal) else ("pass" if r.passed else "FAIL")
        body.append([r.figure, fmt(r.ours, r.unit), ref, f"{r.ratio:.2f}" if r.ratio else "-", goal_text(r),
                     result + (f" ({r.note})" if r.note else "")])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON, for tracking")
    ap.add_argument("--only", default=",".join(PARTS), help="a comma-separated subset of: " + ",".join(PARTS))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmarks start runc, containerd and podman")
    try:  # the registry, the CA and the ports come from the test suite's own fixtures
        import pytest  # noqa: F401
    except ImportError:
        sys.exit("the benchmarks use the test suite's fixtures: run `bash scripts/setup.sh --dev` first")
    rows: list[Row] = []
    errors: list[str] = []
    began = time.time()
    for part in args.only.split(","):
        t0 = time.perf_counter()
        try:
            rows += measure(part)
        except Exception as exc:  # one broken part does not hide the others' figures
            errors.append(f"{part}: {exc}")
            traceback.print_exc()
        print(f"[{part}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"extvisor benchmarks, {time.strftime('%Y-%m-%d %H:%M', time.localtime(began))}, {machine}, "
          f"{time.time() - began:.0f} s\n")
    print(table(rows))
    for e in errors:
        print(f"not measured: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(began)), "machine": machine,
            "seconds": round(time.time() - began, 1), "figures": [r.as_dict() for r in rows], "errors": errors,
        }, indent=2, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
