"""Dev mode's real Watcher over a project folder, in a process of its own (so a test can run it
as an ordinary user), with a stand-in supervisor: prints each action it would take as
``ACTION file PATH`` or ``ACTION rootfs ID`` and its warnings; stops when stdin closes.

    python watch_child.py PROJECT SERVICE...     (each SERVICE's rootfs is PROJECT/SERVICE)
"""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from types import SimpleNamespace

from extvisor.devmode.printer import Printer, setup_dev_logging
from extvisor.devmode.run import Watcher


class StandIn:
    """What the watcher asks of the supervisor: the services, their rootfs and sources."""

    def __init__(self, project: Path, names: list[str]):
        security = SimpleNamespace(writeableRootfs=False)
        self.services = {f"ext-{n}": SimpleNamespace(
            id=f"ext-{n}", rootfs=project / n, source=str(project / f"{n}.yaml"),
            spec=SimpleNamespace(name=n, container=SimpleNamespace(security=security))) for n in names}  # fmt: skip
        self.options = SimpleNamespace(rootfs_for=lambda name: project / name)


async def main(project: Path, names: list[str]) -> None:
    printer = Printer(sys.stdout)
    setup_dev_logging(printer)
    daemon = SimpleNamespace(sup=StandIn(project, names), config=SimpleNamespace(strict=False, not_services=()))
    watcher = Watcher(daemon, project, printer, settle=0.05)  # type: ignore[arg-type]

    async def service_file(path: Path) -> None:
        print(f"ACTION file {path}", flush=True)

    async def restart(service_id: str) -> None:
        print(f"ACTION rootfs {service_id}", flush=True)

    watcher.service_file = service_file  # type: ignore[method-assign]
    watcher.restart = restart  # type: ignore[method-assign]
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(1.5)  # the watches are set (watchfiles needs no more on this machine)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    watcher.close()
    await asyncio.wait_for(task, 10)
    print("DONE", flush=True)


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, line_buffering=True)
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2:]))
