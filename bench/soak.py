"""Soak test, run by hand as root (not in CI): python bench/soak.py [--minutes 10] [--backend runc]

Runs together, for the whole period, against one daemon:
  * crash loops (services that exit 1 after a moment, restart: always);
  * log floods (services writing numbered lines flat out, small --log-max-bytes so logs rotate);
  * API clients (list, one service, events, logs --tail) and `logs -f` followers;
  * stop/start/restart storms on a set of services.
Then reports: lines lost (numbers missing in the flood logs' kept files, and in the followers'
streams apart from what their rotation markers declare), orphans (runc containers and
processes of the daemon's cgroup parent left after it stopped), the daemon's RSS growth from
the first to the last minute, and the API's worst and 99th-percentile latency.

python bench/soak.py --listener [--idle 20000] [--slow 200] [--seconds 30] [--no-reopen]: the TLS listener
under an unauthenticated flood instead (docs/remote.md, "Limits"). Helper processes hold
that many TCP connections that never send a byte and TLS handshakes that stop half-way,
opening a new one whenever the daemon closes one; meanwhile an admin's call over TLS (a new
connection each) and a call over the Unix socket are timed against the same calls before the
flood. Reports their worst and median times, the daemon's log growth, descriptors and RSS
(before, at its peak, and after the connections closed).

python bench/soak.py --tails [--readers 20] [--seconds 30] [--cli-readers]: twenty clients reading a 30 MB
rotated log whole (tail=1e9) while GET /v1/services is timed (tails_soak.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_process import DaemonProcess  # noqa: E402

from extvisor.client.http import Client, ClientError  # noqa: E402
from extvisor.protocols import instance_name  # noqa: E402
from extvisor.testing import make_busybox_rootfs  # noqa: E402

FLOOD = "i=0; while :; do echo flood-$i; i=$((i+1)); done"
CRASH = "echo up; sleep 0.3; exit 1"
TICK = "trap 'exit 0' TERM; while :; do echo tick; sleep 0.2; done"


def add(d: DaemonProcess, name: str, script: str) -> str:
    make_busybox_rootfs(d.rootfs_dir / name)
    (d.config_dir / f"{name}.yaml").write_text(json.dumps(
        {"name": name, "restart": "always", "container": {"entrypoint": "/bin/sh", "args": ["-c", script]}}))
    return f"ext-{name}"


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


class Latency:
    def __init__(self) -> None:
        self.samples: list[float] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def time(self, fn) -> None:  # type: ignore[no-untyped-def]
        t = time.monotonic()
        try:
            fn()
        except ClientError as exc:
            if "not registered" not in str(exc):
                with self.lock:
                    self.errors.append(str(exc)[:200])
        with self.lock:
            self.samples.append(time.monotonic() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listener", action="store_true", help="the TLS listener under a flood (listener_soak.py)")
    ap.add_argument("--idle", type=int, default=20000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--no-reopen", action="store_true", help="--listener: closed connections are not opened again")
    ap.add_argument("--tails", action="store_true", help="huge log tails against the API's latency (tails_soak.py)")
    ap.add_argument("--readers", type=int, default=20)
    ap.add_argument("--cli-readers", action="store_true", help="--tails: the readers are `extvisor logs`, not curl")
    ap.add_argument("--hold", nargs=4, metavar=("HOST", "PORT", "COUNT", "KIND"), help=argparse.SUPPRESS)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--backend", default="runc")
    ap.add_argument("--floods", type=int, default=4)
    ap.add_argument("--crashers", type=int, default=4)
    ap.add_argument("--stormed", type=int, default=6)
    args = ap.parse_args()
    if args.hold:
        from listener_soak import hold

        return hold(*args.hold)
    if args.tails:
        from tails_soak import tails_soak

        return tails_soak(args.readers, args.seconds, args.cli_readers)
    if args.listener:
        from listener_soak import listener_soak

        return listener_soak(args.idle, args.slow, args.seconds, not args.no_reopen)
    base = Path(tempfile.mkdtemp(prefix="extvisor-soak-"))
    d = DaemonProcess(base, backend=args.backend, extra=["--log-max-bytes", str(2 << 20), "--log-backups", "2",
                                                          "--restart-delay", "0.5", "--restart-max-delay", "5"])
    floods = [add(d, f"flood{i}", FLOOD) for i in range(args.floods)]
    crashers = [add(d, f"crash{i}", CRASH) for i in range(args.crashers)]
    stormed = [add(d, f"storm{i}", TICK) for i in range(args.stormed)]
    d.start(timeout=60)
    end = time.monotonic() + args.minutes * 60
    lat = Latency()
    stop = threading.Event()
    followed: dict[str, list[bytes]] = {f: [] for f in floods}
    rss: list[tuple[float, int]] = []

    def api_client() -> None:
        c = Client(str(d.socket), timeout=30)
        while not stop.is_set():
            sid = random.choice(floods + crashers + stormed)
            random.choice([lambda: lat.time(c.services), lambda: lat.time(lambda: c.service(sid)),
                           lambda: lat.time(lambda: b"".join(c.logs(sid, tail=100)))])()

    def follower(sid: str) -> None:
        for chunk in Client(str(d.socket), timeout=60).logs(sid, tail=0, follow=True):
            followed[sid].append(chunk)
            if stop.is_set():
                return

    def storm() -> None:
        c = Client(str(d.socket), timeout=60)
        while not stop.is_set():
            sid = random.choice(stormed)
            lat.time(lambda: c.action(sid, random.choice(["start", "stop", "restart"])))

    threads = [threading.Thread(target=api_client, daemon=True) for _ in range(4)]
    threads += [threading.Thread(target=follower, args=(f,), daemon=True) for f in floods]
    threads += [threading.Thread(target=storm, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    while time.monotonic() < end:
        rss.append((time.monotonic(), rss_kb(d.proc.pid)))  # type: ignore[union-attr]
        time.sleep(5)
    stop.set()
    for t in threads:
        t.join(30)
    rc = d.stop(timeout=120)

    # lines lost: in each follower's stream, numbers must be consecutive except where a marker says so
    lost_followed = declared = 0
    for sid, chunks in followed.items():
        text = b"".join(chunks).decode(errors="replace")
        declared += sum(int(m) for m in re.findall(r"\[extvisor: (\d+) lines", text))
        nums = [int(n) for n in re.findall(r"^flood-(\d+)$", text, re.M)]
        lost_followed += sum(b - a - 1 for a, b in zip(nums, nums[1:]) if b > a + 1)
    # orphans: runc containers and processes in the daemon's cgroup parent after it stopped
    root = d.state_dir / "runc" / "runc"
    left = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True).stdout.split() \
        if root.exists() else []
    parent = f"/extvisor/{instance_name(d.state_dir)}/"
    orphans = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if parent in open(f"/proc/{pid}/cgroup").read():
                orphans.append(pid)
        except OSError:
            pass
    first = [k for t, k in rss if t - rss[0][0] < 60] or [rss[0][1]]
    last = [k for t, k in rss if rss[-1][0] - t < 60] or [rss[-1][1]]
    samples = sorted(lat.samples)
    print(f"soak {args.minutes:g} min, backend {args.backend}, daemon exit {rc}")
    print(f"  lines lost by followers (beyond rotation markers): {lost_followed - declared}"
          f" (gaps {lost_followed}, declared by markers {declared})")
    print(f"  orphans: {len(left)} runc container(s) {left}, {len(orphans)} process(es) {orphans}")
    print(f"  RSS first minute {max(first)} kB, last minute {max(last)} kB, growth {max(last) - max(first)} kB")
    if samples:
        print(f"  API: {len(samples)} calls, worst {samples[-1] * 1000:.0f} ms, "
              f"p99 {samples[int(len(samples) * 0.99) - 1] * 1000:.0f} ms, errors {len(lat.errors)}")
    for e in lat.errors[:5]:
        print(f"    error: {e}")
    print(f"  state and logs kept in {base}")
    return 0 if rc == 0 and not left and not orphans and lost_followed - declared <= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
