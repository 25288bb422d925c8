#!/usr/bin/env python3
"""Take docs/dashboard.svg: a real daemon (runc) with a few services, the dashboard in front of it.

    sudo python tools/screenshot_dashboard.py [OUTPUT.svg]

Needs root, runc and busybox-static, like the tests.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from extvisor.client.http import Client, ClientError
from extvisor.dashboard import DashboardApp
from extvisor.testing import make_busybox_rootfs

SERVICES = {
    "ticker": ("trap 'exit 0' TERM; i=0; while :; do i=$((i+1)); echo \"$(date +%T) tick $i: all good\"; sleep 0.3; done",
               "restart: always"),
    "web": ("trap 'exit 0' TERM; echo serving /srv on :8080; sleep 3600 & wait", "restart: always"),
    "crasher": ("echo 'config missing: /etc/crasher.conf'; exit 1", "restart: always"),
    "migrate": ("echo migrated 3 tables", "restart: untilSuccess"),
    "backup": ("sleep 3600", "restart: always\ndepends:\n  - path: /run/backup-target.ready"),
}  # fmt: skip


def write_services(base: Path) -> None:
    for name, (script, extra) in SERVICES.items():
        make_busybox_rootfs(base / "rootfs" / name)
        (base / "config" / f"{name}.yaml").write_text(
            f"name: {name}\ncontainer:\n  entrypoint: /bin/sh\n  args: [\"-c\", {json.dumps(script)}]\n{extra}\n"
        )


async def shoot(socket: str, out: Path) -> None:
    app = DashboardApp(socket)
    async with app.run_test(size=(140, 36)) as pilot:
        deadline = time.monotonic() + 20
        while len(app.table.shown()) < len(SERVICES) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.pause(4.0)  # a few crashes and log lines
        await pilot.press("j", "j", "j")  # ext-ticker: its events and its log
        await pilot.pause(2.0)
        app.save_screenshot(out.name, str(out.parent))


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "docs" / "dashboard.svg")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="extvisor-shot-") as tmp:
        base = Path(tmp)
        for d in ("config", "rootfs", "service-configs"):
            (base / d).mkdir()
        write_services(base)
        socket = str(base / "extvisor.sock")
        proc = subprocess.Popen(
            [sys.executable, "-m", "extvisor", "daemon", "--backend", "runc",
             "--config-dir", str(base / "config"), "--rootfs-dir", str(base / "rootfs"),
             "--state-dir", str(base / "state"), "--log-dir", str(base / "logs"), "--socket", socket,
             "--service-config-dir", str(base / "service-configs"), "--restart-delay", "0.5", "--stop-timeout", "2"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(base / "daemon.log", "wb"),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    Client(socket, timeout=2).daemon()
                    break
                except ClientError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        print((base / "daemon.log").read_text(), file=sys.stderr)
                        return 1
                    time.sleep(0.1)
            asyncio.run(shoot(socket, out))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
