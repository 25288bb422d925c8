"""``extvisor dev``: the daemon run in-process over a project folder, edits applied as they come.

It is the daemon (:class:`~extvisor.server.daemon.Daemon`) with paths under the folder
(``project``), a printer plugin for the terminal (``printer``), and a file watcher
(watchfiles) that applies edits: a changed service file is validated and, when valid,
replaces that service; a change inside a rootfs restarts its service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from extvisor.plugins import get_plugin_manager
from extvisor.runtime.service import Service
from extvisor.runtime.supervisor import Supervisor
from extvisor.server.daemon import Daemon, DaemonConfig, DaemonError
from extvisor.server.extensions import SOURCE as EXTENSION_SOURCE
from extvisor.documents.findings import Finding
from extvisor.documents.models import ServiceSpec
from extvisor.devmode.printer import PRINTER, Printer
from extvisor.devmode.project import STATE, prepare_socket_dir
from extvisor.devmode.watchdirs import is_new_dir, watched_dirs

log = logging.getLogger("extvisor.dev")

SETTLE = 0.3  #: quiet time after the last change of a burst before acting on it, seconds


# -- the daemon, in dev mode -----------------------------------------------------------------


class DevSupervisor(Supervisor):
    def add(self, spec: ServiceSpec, source: str = "", rootfs: Path | None = None) -> Service:
        # Tell the printer every id before any output, so prefixes line up from the start.
        printer = self.pm.get_plugin(PRINTER)
        if printer is not None:
            printer.known(spec.id)
        return super().add(spec, source, rootfs)


class DevDaemon(Daemon):
    supervisor_class = DevSupervisor


class Watcher:
    """Turns file changes under the project folder into service updates and restarts."""

    def __init__(self, daemon: Daemon, project: Path, printer: Printer, settle: float = SETTLE):
        self.daemon = daemon
        self.project = project
        self.printer = printer
        self.settle = settle
        self.stop_event = asyncio.Event()
        self._pending: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    @property
    def sup(self) -> Supervisor:
        assert self.daemon.sup is not None
        return self.daemon.sup

    async def run(self) -> None:
        from watchfiles import Change, DefaultFilter, awatch

        state = self.project / STATE
        flt = DefaultFilter(ignore_paths=[str(state)])
        named: set[Path] = set()
        while not self.stop_event.is_set():  # once more each time a directory appears
            dirs, unreadable = watched_dirs(self.project, {state}, flt.ignore_dirs)
            for d, why in unreadable.items():
                if d not in named:
                    named.add(d)
                    log.warning("%s/ is not watched (%s): changes under it are not applied", os.path.relpath(d), why)
            watched = {str(d) for d in dirs}
            grown = False
            # each directory alone: nothing is followed through a symlink
            changes_of = awatch(*dirs, watch_filter=flt, stop_event=self.stop_event, recursive=False,
                                ignore_permission_denied=True)  # fmt: skip
            try:
                async for changes in changes_of:
                    for key in {k for _, path in changes if (k := self.classify(Path(path))) is not None}:
                        self._schedule(key)
                    for change, path in changes:
                        if change == Change.deleted:
                            watched.discard(path)
                        elif is_new_dir(path, watched):
                            grown = True
                    if grown:
                        break
            except Exception as exc:  # e.g. too many directories for the inotify watch limit
                log.error("watching %s failed, edits are no longer applied: %s", self.project, exc)
                return
            finally:
                await changes_of.aclose()
            if not grown:
                return

    def close(self) -> None:
        self.stop_event.set()
        for task in self._pending.values():
            task.cancel()

    def classify(self, path: Path) -> tuple[str, str] | None:
        """``("file", path)`` for a service file, ``("rootfs", id)`` for a change in a rootfs."""
        try:
            rel = path.relative_to(self.project)
        except ValueError:
            return None
        if len(rel.parts) == 1 and rel.name in self.daemon.config.not_services:
            return None
        if len(rel.parts) == 1 and rel.name.endswith(".yaml"):
            return ("file", str(path))
        for service in self.sup.services.values():
            for rootfs in {service.rootfs, self._rootfs_now(service)}:
                if path == rootfs or rootfs in path.parents:
                    if service.spec.container.security.writeableRootfs:
                        return None  # the service writes there itself: watching would loop
                    return ("rootfs", service.id)
        return None

    def _rootfs_now(self, service: Service) -> Path:
        """The project's layout answers anew: DIR/rootfs/<name> made after the service file counts."""
        if service.source.startswith(EXTENSION_SOURCE):
            return service.rootfs  # the extension's own
        return self.sup.options.rootfs_for(service.spec.name)

    def _schedule(self, key: tuple[str, str]) -> None:
        # One action per burst: each change pushes the action back until things are quiet.
        old = self._pending.pop(key, None)
        if old is not None:
            old.cancel()
        self._pending[key] = asyncio.create_task(self._later(key))

    async def _later(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(self.settle)
        self._pending.pop(key, None)  # from here on a new change schedules a new action
        async with self._lock:
            try:
                if key[0] == "file":
                    await self.service_file(Path(key[1]))
                else:
                    await self.restart(key[1])
            except Exception:
                log.exception("applying the change of %s failed", key[1])

    def _owner(self, path: Path) -> Service | None:
        return next((s for s in self.sup.services.values() if s.source == str(path)), None)

    async def service_file(self, path: Path) -> None:
        """Validate a changed service file and apply it; a broken file leaves the service as it was."""
        from extvisor.documents.loader import load_service_file

        sup = self.sup
        owner = self._owner(path)
        name = os.path.relpath(path)
        if not path.is_file():
            if owner is not None:
                self.printer.note(f"{name} removed: stopping {owner.id}")
                await sup.remove(owner.id)
            return
        loaded = load_service_file(path, sup.kinds, self.daemon.config.strict)
        for f in loaded.findings:
            self.printer.finding(f)
        spec = loaded.spec
        if spec is None:
            if owner is not None:
                self.printer.note(f"{name} has errors: {owner.id} keeps running its previous version")
            return
        other = sup.services.get(spec.id)
        if other is not None and other is not owner:
            self.printer.finding(_duplicate(path, spec.name, other.source))
            return
        if owner is not None and owner.id != spec.id:
            self.printer.note(f"{name} renamed its service: stopping {owner.id}")
            await sup.remove(owner.id)
        if other is not None and other.spec == spec:
            return  # only comments or formatting changed
        what = f"changed: restarting {spec.id}" if other else f"added: starting {spec.id}"
        self.printer.note(f"{name} {what}")
        if spec.container.security.writeableRootfs:
            self.printer.note(f"{spec.id} has writeableRootfs: changes in its rootfs do not restart it")
        await sup.apply(spec, str(path))

    async def restart(self, service_id: str) -> None:
        """Restart a service whose rootfs changed (start it again if it had ended)."""
        service = self.sup.services.get(service_id)
        if service is None:
            return
        rootfs = self._rootfs_now(service)
        self.printer.note(f"{os.path.relpath(rootfs)}/ changed: restarting {service_id}")
        await service.stop()
        service.rootfs = rootfs
        service.start()


def _duplicate(path: Path, name: str, first: str) -> Finding:
    from extvisor.documents.yamlio import parse

    line, col = 1, 1
    try:
        docs = parse(path.read_bytes(), str(path)).documents
        if docs:
            line, col = docs[0].value_pos(("name",))
    except Exception:
        pass
    return Finding(str(path), line, col, "error", "name",
                   f"duplicate service spec: name {name} already declared by {os.path.relpath(first)}")  # fmt: skip


# -- putting it together ---------------------------------------------------------------------


def _banner(daemon: Daemon, printer: Printer, project: Path) -> None:
    cfg = daemon.config
    btype = daemon.pm.backends().get(cfg.backend)
    where = ""
    for o in btype.options if btype else ():
        if o.key.endswith(("_url", "_address")):
            where = f" at {cfg.backend_options.get(o.key) or o.default}"
    printer.note(f"dev mode in {project}, backend {cfg.backend}{where}")
    printer.note(f"logs in {cfg.log_dir}; API socket {cfg.socket}")
    printer.note(f"  from another terminal: EXTVISOR_SOCKET={cfg.socket} extvisor services")


def _ready(daemon: Daemon, printer: Printer) -> None:
    sup = daemon.sup
    assert sup is not None
    for service in sup.services.values():
        if service.spec.container.security.writeableRootfs:
            printer.note(f"{service.id} has writeableRootfs: changes in its rootfs do not restart it")
    if not sup.services:
        printer.note("no service yet: add DIR/<name>.yaml and its rootfs DIR/<name>/")
    printer.note(f"{len(sup.services)} service(s); watching for changes; Ctrl-C stops everything")


async def run_dev(project: Path, config: DaemonConfig, printer: Printer, settle: float = SETTLE) -> int:
    """Run dev mode until SIGINT or SIGTERM; 0 once every service has stopped, 1 on a start error."""
    project = project.resolve()
    (project / STATE).mkdir(parents=True, exist_ok=True)
    try:
        prepare_socket_dir(project, config.socket)
    except DaemonError as exc:
        log.error("%s", exc)
        return 1
    gitignore = project / STATE / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    pm = get_plugin_manager()
    pm.set_blocked("extvisor.console")  # the printer shows every service's output already
    pm.register(printer, name=PRINTER)
    daemon = DevDaemon(config, pm)
    watcher = Watcher(daemon, project, printer, settle)
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            printer.note("stopping every service (Ctrl-C again to quit at once)")
            watcher.close()
            daemon.request_stop()
        else:
            printer.note("quit without stopping; the next `extvisor dev` here removes what is left")
            os._exit(130)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    _banner(daemon, printer, project)
    runner = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
    watch_task: asyncio.Task[None] | None = None
    if ready.done() and not runner.done():
        try:
            if signals == 0:
                watch_task = asyncio.create_task(watcher.run())
                await asyncio.sleep(0)  # its first step sets the watches: "watching" is true once said
            _ready(daemon, printer)
        except Exception:  # never leave containers behind because of the terminal side
            log.exception("dev mode failed; stopping every service")
            daemon.request_stop()
    ready.cancel()
    try:
        await runner
    except DaemonError as exc:
        log.error("%s", exc)
        return 1
    finally:
        watcher.close()
        if watch_task is not None:
            watch_task.cancel()
            await asyncio.gather(watch_task, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
