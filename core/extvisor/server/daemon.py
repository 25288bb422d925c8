"""``extvisor daemon``: load services, run them, serve the API, stop everything on SIGTERM.

Crash safety: the backend records its containers under ``--state-dir``. A new daemon adopts
the containers an earlier one left that still match their service files
(``runtime/adoption.py``, ``Backend.adopt``) and asks the backend to remove the others
(``Backend.cleanup``) before it starts anything, so a service never runs twice and nothing
is orphaned. SIGUSR1 exits leaving every service running (a restart); SIGUSR2 also execs the
new extvisor in place, passing it the API's listening sockets (an upgrade: same PID, no call
refused; ``server/handoff.py``). A lock file keeps two daemons off one state directory, and
another (``server/files.py``) off one ``--instance`` name, which keys the host-wide cgroups
and container names.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extvisor import hookimpl
from extvisor.runtime.configstore import ConfigStore
from extvisor.documents.findings import Finding
from extvisor.runtime.hostservices import HostService
from extvisor.plugins import PluginManager, get_plugin_manager
from extvisor.protocols import INSTANCE_RE, Backend, BackendConfig, BackendUnavailable, instance_name
from extvisor.records import LoadContext, LoadedService
from extvisor.runtime.adoption import adopt_all
from extvisor.runtime.supervisor import Options, Supervisor
from extvisor.server.extensions import Extensions, ExtensionSettings, InstallError
from extvisor.server.files import DaemonError, bind_socket, lock_instance, lock_state_dir
from extvisor.server.handoff import for_server, inherited_sockets
from extvisor.server.startup import _absent, _import_server_stack, _pidfd_child_watcher
from extvisor.server.logfmt import setup_logging
from extvisor.shared import defaults

__all__ = ["Daemon", "DaemonConfig", "DaemonError", "main_async", "setup_logging"]

log = logging.getLogger("extvisor.daemon")


@dataclass
class DaemonConfig:
    config_dir: Path = Path(defaults.CONFIG_DIR)
    rootfs_dir: Path = Path(defaults.ROOTFS_DIR)
    state_dir: Path = Path(defaults.STATE_DIR)
    log_dir: Path = Path(defaults.LOG_DIR)
    socket: Path = Path(defaults.SOCKET)
    service_config_dir: Path | None = Path(defaults.SERVICE_CONFIG_DIR)
    backend: str = defaults.BACKEND
    backend_options: dict[str, Any] = field(default_factory=dict)
    host_services: list[str] = field(default_factory=list)
    strict: bool = False
    log_format: str = "logfmt"
    supervisor: dict[str, Any] = field(default_factory=dict)  #: Options overrides (restart_delay, ...)
    extensions: ExtensionSettings = field(default_factory=ExtensionSettings)  #: --authfile, --talos-version...
    listen: list[str] = field(default_factory=list)  #: HOST[:PORT]: the API over mutual TLS too (docs/remote.md)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None  #: client certificates must be signed by it; their O values are roles
    max_connections: int = defaults.MAX_CONNECTIONS  #: TLS connections open at once (server/listener.py)
    handshake_timeout: float = defaults.HANDSHAKE_TIMEOUT  #: seconds from accepting a TLS connection to its handshake's end
    instance: str | None = None  #: keeps cgroups and runtime names apart; None: derived from state_dir
    not_services: tuple[str, ...] = ()  #: names in config_dir that are no service file (dev mode: manifest.yaml)
    follow: str | None = None  #: docker://REF of a published declared state this node follows (server/follow.py)
    follow_interval: float = 60.0  #: seconds between checks of it (±20 % jitter)

    @property
    def instance_name(self) -> str:
        return self.instance or instance_name(self.state_dir)


def load_services(pm: PluginManager, config: DaemonConfig, kinds: dict) -> tuple[list[LoadedService], list[Finding]]:
    """Every service the loader hooks found; a name declared twice keeps the first source."""
    context = LoadContext(config_dir=config.config_dir, kinds=kinds, strict=config.strict)
    results = [r for r in pm.load_services(context)
               if not (Path(r.source).name in config.not_services and Path(r.source).parent == Path(config.config_dir))]
    findings = [f for item in results for f in item.findings]
    return [item for item in results if item.spec is not None], findings


class ConsoleSink:
    """``logToConsole: true``: copy each line of the service to the daemon's stderr."""

    def __init__(self, sup: Supervisor):
        self.sup = sup

    @hookimpl
    def extvisor_log_lines(self, service_id: str, lines: list[bytes]) -> None:
        service = self.sup.services.get(service_id)
        if service is None or not service.spec.logToConsole:
            return
        out = sys.stderr
        for line in lines:
            out.write(f"{service_id}: {line.decode(errors='replace').rstrip()}\n")
        out.flush()


class Daemon:
    supervisor_class: type[Supervisor] = Supervisor  #: dev mode tells its printer of each service

    def __init__(self, config: DaemonConfig, pm: PluginManager | None = None):
        self.config = config
        self.pm = pm or get_plugin_manager()
        self.sup: Supervisor | None = None
        self.extensions: Extensions | None = None
        self.declared: Any = None  #: server/declared's engine
        self.follower: Any = None  #: server/follow's Follower, with --follow
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.detach = False
        self.upgrade = False
        self.handoff: list[tuple[str, socket.socket]] = []  #: sockets for the new daemon (SIGUSR2)
        self.handoff_env: dict[str, str] = {}
        self._tls_context: Any = None
        self._tls_server: Any = None
        self._tls_tasks: list[asyncio.Task] = []  # type: ignore[type-arg]

    def request_stop(self) -> None:
        self._stop.set()

    def request_detach(self) -> None:
        """SIGUSR1: exit leaving every service running; the next daemon adopts them."""
        self.detach = True
        self._stop.set()

    def request_upgrade(self) -> None:
        """SIGUSR2: detach, then exec the new extvisor in place with the API's sockets."""
        self.upgrade = True
        self.request_detach()

    def _backend(self) -> Backend:
        backends = self.pm.backends()
        btype = backends.get(self.config.backend)
        if btype is None:
            known = ", ".join(sorted(backends)) or "none (is a backend plugin installed?)"
            raise DaemonError(f"unknown backend {self.config.backend!r}; known: {known}")
        options = {o.key: self.config.backend_options.get(o.key, o.default) for o in btype.options}
        options.update(self.config.backend_options)
        return btype.factory(BackendConfig(state_dir=self.config.state_dir / self.config.backend, options=options,
                                           instance=self.config.instance_name))

    async def run(self) -> None:
        _pidfd_child_watcher()
        cfg = self.config
        if cfg.instance is not None and not INSTANCE_RE.fullmatch(cfg.instance):
            raise DaemonError(f"--instance {cfg.instance!r}: use 1-32 of a-z 0-9 _ . - (starting with a letter or digit)")
        lock = lock_state_dir(cfg.state_dir)
        try:  # before the backend is made: its cleanup would remove the other daemon's containers
            instance_lock = lock_instance(cfg.instance_name, cfg.instance is not None, cfg.state_dir)
        except DaemonError:
            os.close(lock)
            raise
        from extvisor.server.notify import Notifier, status_text

        notifier = Notifier.from_env()  # first: no runtime we start may inherit NOTIFY_SOCKET
        inherited = inherited_sockets()  # from systemd (extvisor.socket) or the daemon we replace
        for p in self.pm.problems:
            log.warning("plugin %s: %s", p.plugin, p.message)
        kinds = self.pm.condition_kinds()
        backend = self._backend()
        configs = ConfigStore(cfg.service_config_dir, cfg.state_dir / "configs")
        self.extensions = Extensions(cfg.state_dir, cfg.extensions, kinds, cfg.strict, configs)
        from extvisor.server.declared.engine import Declared

        self.declared = Declared(self.extensions, configs, cfg.service_config_dir, cfg.state_dir)
        await asyncio.to_thread(self.declared.boot)  # the last good generation, before anything loads
        configs.reload()
        hosts = [HostService.parse(h) for h in cfg.host_services]
        options = Options(rootfs_dir=cfg.rootfs_dir, state_dir=cfg.state_dir, log_dir=cfg.log_dir,
                          cgroup_parent=f"/extvisor/{cfg.instance_name}", **cfg.supervisor)
        sup = self.sup = self.supervisor_class(self.pm, backend, options, kinds, configs, hosts)
        self.pm.register(ConsoleSink(sup), name="extvisor.console")
        loaded, findings = load_services(self.pm, cfg, kinds)
        for f in findings:
            (log.error if f.severity == "error" else log.warning)("%s", f)
        log.info("loaded %d service(s) from %s; %d problem(s)", len(loaded), cfg.config_dir, len(findings))
        try:
            await backend.open()
            opened = True
        except BackendUnavailable as exc:
            opened = False
            log.warning("backend %s is not reachable yet (%s); services will wait for it", cfg.backend, exc)
        for item in loaded:
            try:  # one service that cannot be set up must not keep the others from running
                sup.add(item.spec, item.source)  # type: ignore[arg-type]
            except Exception as exc:
                log.error("%s: cannot set up the service from %s: %s", item.spec.id, item.source, exc)  # type: ignore[union-attr]
        try:
            await self.extensions.attach(sup)
        except InstallError as exc:
            raise DaemonError("extension refused: " + "; ".join(str(p) for p in exc.problems if p.severity == "error")) from None
        if opened:  # every service known, extensions' too: adopt what an earlier daemon left running
            adopted = await adopt_all(sup)
            if adopted:
                log.warning("adopted %d container(s) left running by an earlier daemon: %s", len(adopted),
                            ", ".join(adopted))
            sup.backend_ready = True
        self._warn_undeclared(sup)
        self.follower = self._follower()
        listeners = self._listeners(inherited.tcp)  # TLS files and TCP ports checked before anything starts
        # before starting anything: a second daemon stops here
        sock = inherited.api if inherited.api is not None else bind_socket(cfg.socket)
        sup.start_all()
        # FastAPI and uvicorn take ~0.2 s to import: a thread does it while the first runc processes
        # run. It begins once every first launch has spawned its runtime (one pass of the loop):
        # each step of a launch that gives up the GIL would otherwise wait for the importer to
        # hand it back, a first start ~15 ms later (docs/performance.md).
        await asyncio.sleep(0)
        self._api_import = asyncio.get_running_loop().run_in_executor(None, _import_server_stack)
        server = await self._serve(sock, listeners)
        watcher = asyncio.create_task(configs.watch(self._configs_changed))
        # systemd Type=notify: READY=1 once the API answers
        while notifier.enabled and not server.started and not self._server_task.done():
            await asyncio.sleep(0.01)
        notifier.start(lambda: status_text(sup.services.values()), sup.changed)
        self.ready.set()
        following = asyncio.create_task(self.follower.run()) if self.follower is not None else None
        log.info("daemon ready: backend=%s socket=%s services=%d instance=%s", cfg.backend, cfg.socket,
                 len(sup.services), cfg.instance_name)
        try:
            await self._stop.wait()
        finally:
            log.info("upgrading: the new daemon takes over" if self.upgrade else "stopping every service")
            await notifier.stopping(reloading=self.upgrade)
            watcher.cancel()
            if following is not None:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            if self.detach:
                log.info("detaching: every container keeps running for the next daemon to adopt")
                await sup.detach()
            else:
                await self._shutdown_within(sup)
            server.should_exit = True
            if self._tls_server is not None:
                self._tls_server.should_exit = True
            await asyncio.gather(self._server_task, *self._tls_tasks, return_exceptions=True)
            await backend.close()
            if self.upgrade:  # kept open (queued connections wait) for the new daemon
                self.handoff = [("api", sock), *(("api-tls", listener) for listener in listeners)]
                self.handoff_env = notifier.environ()
            else:
                for listener in listeners:
                    listener.close()
                sock.close()
                if inherited.api is None:  # else the service manager owns the path
                    cfg.socket.unlink(missing_ok=True)
            await notifier.close()
            if instance_lock is not None:
                instance_lock.release()
            os.close(lock)
            log.info("daemon stopped")

    @staticmethod
    async def _shutdown_within(sup: Supervisor) -> None:
        """Stop every service, but not for longer than --shutdown-timeout: then name what is left."""
        limit = sup.options.shutdown_timeout
        try:
            await asyncio.wait_for(sup.shutdown(), limit)
        except TimeoutError:
            left = sorted(s.id for s in sup.services.values() if s.running)
            log.error("shutdown: %s still stopping after %gs; exiting without them", ", ".join(left) or "nothing", limit)

    @staticmethod
    def _warn_undeclared(sup: Supervisor) -> None:
        """Name the Talos services (cri, udevd...) that specs wait for and nobody declared."""
        counts: dict[str, int] = {}
        for service in sup.services.values():
            for dep in service.spec.service_dependencies():
                if dep not in sup.services and dep not in sup.host_services:
                    counts[dep] = counts.get(dep, 0) + 1
        if counts:
            named = ", ".join(f"{n} ({c} service{'s' if c > 1 else ''})" for n, c in sorted(counts.items()))
            log.warning("services wait for %s, which extvisor does not run: declare them with "
                        "--host-service NAME (assumed up) or NAME=PATH (up once PATH exists)", named)

    async def _configs_changed(self, names: set[str]) -> None:
        """A document was added, changed or removed: restart that service (Talos does)."""
        assert self.sup is not None
        for name in sorted(names):
            service = self.sup.services.get(f"ext-{name}")
            if service is None:
                continue
            if service.state.value == "Waiting" and service.pid is None and service.restarts == 0:
                continue  # still waiting on its conditions; they see the change themselves
            log.warning("extension service config changed, restarting %s", service.id)
            await service.stop()
            service.start()

    def _follower(self) -> Any:
        """``--follow REF``: the loop that takes what is published there (started once ready)."""
        cfg = self.config
        if not cfg.follow:
            return None
        if self.declared is None or self.extensions is None:
            raise DaemonError("--follow needs the declared-state engine, which this daemon does not have")
        from extvisor.server.follow import Follower, RegistrySource

        source = RegistrySource(cfg.follow, self.extensions.options, self.extensions.policy, cfg.state_dir / "follow")
        follower = Follower(cfg.follow, cfg.follow_interval, source, self.declared, cfg.state_dir, event=self._declared_event)
        self.declared.following = follower.status  # extvisor applied shows it
        return follower

    def _declared_event(self, state: str, msg: str) -> None:
        """An entry of the event stream for the node's declared state (service ``declared``)."""
        from extvisor.state import ServiceEvent, State

        if self.sup is not None:
            self.sup.publish(ServiceEvent(service="declared", state=State(state), msg=msg))

    def _listeners(self, inherited: list[socket.socket] | None = None) -> list[socket.socket]:
        """``--listen``: the TLS context and the bound TCP sockets, or a DaemonError saying why not.
        TCP sockets *inherited* (socket activation, an upgrade) are served instead of binding."""
        cfg = self.config
        if not cfg.listen and not inherited:
            return []
        given = {"--tls-cert": cfg.tls_cert, "--tls-key": cfg.tls_key, "--client-ca": cfg.client_ca}
        missing = [flag for flag, value in given.items() if value is None]
        if missing:
            raise DaemonError(f"--listen needs --tls-cert, --tls-key and --client-ca (missing {', '.join(missing)}): "
                              "the API is served over TCP only with mutual TLS")  # fmt: skip
        from extvisor.remote.tls import TLSConfigError
        from extvisor.server.remote import bind_tcp, tls_context

        try:
            self._tls_context = tls_context(str(cfg.tls_cert), str(cfg.tls_key), str(cfg.client_ca))
        except TLSConfigError as exc:
            raise DaemonError(str(exc)) from None
        if inherited:
            return inherited
        socks: list[socket.socket] = []
        for address in cfg.listen:
            try:
                socks.append(bind_tcp(address))
            except (OSError, ValueError) as exc:
                for s in socks:
                    s.close()
                raise DaemonError(f"--listen {address}: {exc}") from None
        return socks

    async def _serve(self, sock: socket.socket, listeners: list[socket.socket] | None = None):  # type: ignore[no-untyped-def]
        await self._api_import
        import uvicorn

        from extvisor.server.api import create_app

        def info() -> dict[str, Any]:
            from extvisor._version import __version__

            return {"version": __version__, "backend": self.config.backend,
                    "config_dir": str(self.config.config_dir), "log_dir": str(self.config.log_dir)}

        assert self.sup is not None
        with _absent("pydantic.v1"):
            app = create_app(self.sup, info)
            if self.extensions is not None:
                from extvisor.server.routes_extensions import add_extension_routes

                add_extension_routes(app, self.extensions)
            if self.declared is not None:
                from extvisor.server.declared.routes import add_declared_routes

                add_declared_routes(app, self.declared)
            if self.declared is not None:
                from extvisor.server.routes_follow import ConfigCollector, add_follow_routes

                add_follow_routes(app, self.follower)
                app.state.collectors = [ConfigCollector(self.declared.files.current_number, self.follower)]

        # Followed streams (events, logs -f, the dashboard) never end by themselves: without
        # a grace timeout, uvicorn would wait for them forever and the daemon would not exit.
        from extvisor.server.listener import Server, TLSServer
        from extvisor.server.remote import tls_config, unix_app

        options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", "access_log": False,
                                   "timeout_graceful_shutdown": 1}  # fmt: skip
        server = Server(uvicorn.Config(unix_app(app), **options))  # the root-only socket: admin
        self._server_task = asyncio.create_task(server.serve(sockets=[for_server(sock)]))
        if listeners:
            # A server of its own: one uvicorn Config holds one SSL context for all its sockets.
            self._tls_server = TLSServer(tls_config(app, self._tls_context, **options), self.config.max_connections,
                                         self.config.handshake_timeout)  # fmt: skip
            self._tls_tasks = [asyncio.create_task(self._tls_server.serve(sockets=[for_server(s) for s in listeners]))]
            log.info("API over mutual TLS on %s", ", ".join("%s:%d" % s.getsockname()[:2] for s in listeners))
        return server


async def main_async(config: DaemonConfig) -> int:
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    loop.add_signal_handler(signal.SIGUSR1, daemon.request_detach)
    loop.add_signal_handler(signal.SIGUSR2, daemon.request_upgrade)
    try:
        await daemon.run()
    except DaemonError as exc:
        log.error("%s", exc)
        return 1
    if daemon.handoff:
        from extvisor.server.handoff import exec_new_daemon

        exec_new_daemon(daemon.handoff, daemon.handoff_env)
        return 1  # the exec failed (said in the log)
    return 0
