"""How fast the CLI answers and the daemon comes up, against a bare interpreter and curl."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import EXTVISOR, PYTHON, DaemonProcess, Row, all_running, paired, wall, write_services

from extvisor.client.http import Client, ClientError

# (figure, arguments, goal as a multiple of `python -c pass`)
CALLS = [
    ("extvisor --version", ["--version"], 3.0),
    ("extvisor --help", ["--help"], 5.0),
    ("extvisor services (10 services)", ["services"], 5.0),
    ("extvisor services -o json", ["services", "-o", "json"], 5.0),
    ("extvisor service ext-svc000", ["service", "ext-svc000"], 5.0),
    ("extvisor logs ext-svc000 --tail 20", ["logs", "ext-svc000", "--tail", "20"], 5.0),
    ("extvisor events (history)", ["events", "--tail", "20", "--no-follow"], 5.0),
    ("extvisor extensions", ["extensions"], 5.0),
    ("extvisor stats", ["stats"], 5.0),
]


def cli_rows(runs: int = 11) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        d = DaemonProcess(Path(tmp))
        ids = write_services(d, 10, "echo started; sleep 100000")
        d.start()
        try:
            d.wait(lambda: all_running(d, ids), timeout=60, what="10 services running")
            env = {**os.environ, "EXTVISOR_SOCKET": str(d.socket)}
            for figure, args, goal in CALLS:
                check = subprocess.run([EXTVISOR, *args], env=env, capture_output=True, text=True)
                if check.returncode != 0:
                    rows.append(Row(figure, float("nan"), None, "s", goal, note=f"failed: {check.stderr.strip()[:80]}"))
                    continue
                ours, base = paired([EXTVISOR, *args], [PYTHON, "-c", "pass"], runs, env)
                rows.append(Row(figure, ours, base, "s", goal, reference_name="python -c pass"))
            if shutil.which("curl"):
                curl = wall(["curl", "-s", "--unix-socket", str(d.socket), "http://x/v1/services"], runs)
                ours = wall([EXTVISOR, "services"], runs, env)
                rows.append(Row("extvisor services against curl (for scale)", ours, curl, "s", float("inf"),
                                reference_name="curl --unix-socket", note="no goal: curl is C"))
        finally:
            d.stop()
    return rows


def daemon_start_row(runs: int = 5) -> Row:
    """From exec of `extvisor daemon` (10 services) to its API answering."""
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        d = DaemonProcess(Path(tmp))
        ids = write_services(d, 10, "sleep 100000")
        for _ in range(runs):
            t0 = time.perf_counter()
            proc = subprocess.Popen(d.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            try:
                while True:
                    try:
                        Client(str(d.socket), timeout=1).daemon()
                        break
                    except ClientError:
                        if proc.poll() is not None or time.perf_counter() - t0 > 30:
                            raise RuntimeError("the daemon did not come up") from None
                        time.sleep(0.002)
                times.append(time.perf_counter() - t0)
                d.proc = proc
                d.wait(lambda: all_running(d, ids), timeout=60, what="services running")
            finally:
                proc.terminate()
                proc.wait(60)
    return Row("daemon exec -> API answering (10 services)", statistics.median(times), None, "s", 0.5, kind="max")
