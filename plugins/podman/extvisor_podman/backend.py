"""The podman backend: one podman container per service run, through podman's REST API.

podman-py is synchronous. Short calls run in ``asyncio.to_thread``; the calls that block
for a container's whole life (its exit; a remote podman's output stream) get a thread of
their own each, so many services cannot exhaust the event loop's default executor.

A container's output comes from conmon's log file when podman runs on this host
(``logfile.py``: a restarted daemon goes on where the last one stopped, ``adopt.py``), from
the attach stream otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import shutil
import signal as _signal
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from extvisor import BackendConfig, BackendError, BackendUnavailable, ExecResult, ExitStatus, LaunchRequest
from extvisor.oci import fit_to_host, fit_to_rootless
from extvisor.oci.procs import watch_kill

from .execs import podman_exec
from .logfile import FileTail
from .stream import LogPump
from .translate import LABEL, LITTER_LABEL, OWNER_LABEL, PODMAN_LITTER, parse_ulimits, translate

log = logging.getLogger("extvisor.podman")

DEFAULT_ULIMITS = "nofile=1024:1024,nproc=1024:1024"


def default_url() -> str:
    """root's system socket, or the user's socket under ``$XDG_RUNTIME_DIR``."""
    if os.geteuid() == 0:
        return "unix:///run/podman/podman.sock"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return f"unix://{runtime_dir}/podman/podman.sock"


def socket_path(url: str) -> str | None:
    """The filesystem path of a ``unix://`` URL: the podman service is on this machine."""
    parsed = urlparse(url)
    if parsed.scheme in ("unix", "http+unix"):
        return parsed.path or parsed.netloc
    return None


def start_hint(url: str) -> str:
    """How to get a podman service at *url*, or what is missing for rootless podman."""
    if shutil.which("podman") is None:
        return "podman is not installed: apt-get install podman uidmap slirp4netns fuse-overlayfs"
    if os.geteuid() == 0:
        return f"start it with `podman system service --time=0 {url}`"
    user = pwd.getpwuid(os.geteuid()).pw_name
    missing = [t for t in ("newuidmap", "newgidmap") if shutil.which(t) is None]
    if missing:
        return f"rootless podman needs {' and '.join(missing)}: apt-get install uidmap"
    for table in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(table).read_text().splitlines()
        except OSError:
            lines = []
        if not any(line.split(":")[0] in (user, str(os.geteuid())) for line in lines):
            flag = "--add-subuids" if table.endswith("uid") else "--add-subgids"
            return f"rootless podman needs a range for {user} in {table}: sudo usermod {flag} 100000-165535 {user}"
    return (f"start it as yourself: `systemctl --user start podman.socket`, or "
            f"`podman system service --time=0 {url} &`")


def log_path(attrs: dict[str, Any]) -> Path:
    """conmon's k8s-file log of a container, from its inspect data."""
    path = (attrs.get("HostConfig", {}).get("LogConfig") or {}).get("Path") or attrs.get("LogPath")
    if not path:
        raise BackendError("podman did not say where the container's log file is")
    return Path(path)


def _message(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip()


def _not_found(exc: BaseException) -> bool:
    return type(exc).__name__ == "NotFound" or getattr(exc, "status_code", None) == 404


class PodmanContainer:
    """A running podman container; ``id`` is the service id, its name ``<id>.<instance>``."""

    def __init__(self, backend: PodmanBackend, request: LaunchRequest, container: Any, pump: LogPump | FileTail,
                 notes: list[str], litter: list[Path]) -> None:  # fmt: skip
        self.id = request.service_id
        self.pid = 0
        self.notes = notes  #: OCI settings podman cannot express
        self.container = container
        self._backend = backend
        self._pump = pump
        self._litter = litter
        self._exit: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self._status: ExitStatus | None = None
        self._deleted = False

    def _start_waiter(self) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            status = self._wait_blocking()
            try:
                loop.call_soon_threadsafe(lambda: self._exit.done() or self._exit.set_result(status))
            except RuntimeError:  # the loop is gone: nobody waits any more
                pass

        threading.Thread(target=run, name=f"podman-wait-{self.id}", daemon=True).start()

    def _wait_blocking(self) -> ExitStatus:
        try:
            # libpod polls the state every `interval`; its default of 250 ms is most of a run.
            code = self.container.wait(condition=["exited", "stopped"], interval="10ms")
            if isinstance(code, int):
                return ExitStatus.from_wait_status(code)
            self.container.reload()
            return ExitStatus.from_wait_status(int(self.container.attrs["State"]["ExitCode"]))
        except Exception as exc:
            if _not_found(exc):  # removed while running (cleanup by another daemon): killed
                return ExitStatus(signal=_signal.SIGKILL)
            log.warning("%s: waiting for the container failed: %s", self.id, _message(exc))
            return ExitStatus(code=255)

    async def wait(self) -> ExitStatus:
        if self._status is None:
            status = await asyncio.shield(self._exit)
            await self._pump.drained()  # the exit is reported only after the last output
            self._status = status
        return self._status

    async def signal(self, signum: int) -> None:
        if self._exit.done() or self._deleted:
            return
        if self._backend.local and self.pid and _signal_namespace(self.pid, signum):
            return
        try:
            await asyncio.to_thread(self.container.kill, signal=int(signum))
        except Exception as exc:
            if self._exit.done() or _not_found(exc) or "not running" in _message(exc):
                return
            raise BackendError(f"podman could not signal {self.id}: {_message(exc)}") from exc

    async def exec(self, argv: list[str], timeout: float) -> ExecResult:
        """*argv* through podman's exec API, killed at *timeout* (execs.py)."""
        return await podman_exec(self._backend._client().api, self.container.id, argv, timeout, self._backend.local)

    def kill_hard(self) -> None:
        """SIGKILL the container's init ourselves (podman not answering); its exit is seen by pidfd."""
        if self._exit.done() or not self._backend.local or not self.pid:
            return

        def gone() -> None:
            if not self._exit.done():
                self._exit.set_result(ExitStatus(signal=_signal.SIGKILL))

        watch_kill(self.pid, gone)

    async def delete(self) -> None:
        if self._deleted:
            return
        await self._backend.remove(self.container.id)
        self._deleted = True
        await self._pump.drained()
        _remove_litter(self._litter)

    def detach(self) -> None:
        """The daemon exits leaving the container running: stop reading; conmon keeps writing
        its log file, and the position read up to stays for the next daemon (``adopt.py``)."""
        if isinstance(self._pump, FileTail):
            self._pump.detach()


def _signal_namespace(pid: int, signum: int) -> bool:
    """Send *signum* to every process in the PID namespace of *pid*; False if not possible.

    podman's kill API signals the container's init only.
    """
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
        if ns == os.readlink("/proc/self/ns/pid"):
            return False  # no namespace of its own: never signal the host's processes
    except OSError:
        return False
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") == ns:
                    members.append(int(entry.name))
            except OSError:
                continue
    if pid not in members:
        return False
    for member in [pid] + [m for m in members if m != pid]:
        try:
            os.kill(member, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            return member != pid
    return True


def _remove_litter(paths: list[Path]) -> None:
    """Remove mountpoints podman made in a writeable rootfs, if still empty."""
    for path in paths:
        try:
            if path.is_symlink() or (path.is_file() and path.stat().st_size == 0):
                path.unlink()
        except OSError:
            pass


class PodmanBackend:
    """Runs services as podman containers (rootful or rootless podman system service)."""

    name = "podman"

    def __init__(self, config: BackendConfig):
        opts = config.options
        self.url: str = opts.get("podman_url") or default_url()
        self.runtime: str = opts.get("podman_runtime", "runc") or ""
        self.ulimits = parse_ulimits(opts.get("podman_ulimits", DEFAULT_ULIMITS) or "")
        self.sock = socket_path(self.url)
        self.local = self.sock is not None
        self.client: Any = None
        self.rootless = False  #: podman runs without root (read from its info at open)
        self.files = False  #: conmon's log files are readable here: output from them, adoption
        self._noted: dict[str, tuple[str, ...]] = {}
        # Several daemons (a node's, a dev mode's) may share one podman: each removes only its own.
        self.owner = str(config.state_dir)
        self.scope = config.scope  # in container names: two daemons may run the same service names

    async def open(self) -> None:
        import podman

        if self.sock is not None and not os.path.exists(self.sock):
            raise BackendUnavailable(f"podman is not reachable: no socket at {self.sock} ({start_hint(self.url)})")
        client = podman.PodmanClient(base_url=self.url, max_pool_size=64)
        try:
            ok = await asyncio.to_thread(client.ping)
        except Exception as exc:
            client.close()
            raise BackendUnavailable(f"podman is not reachable at {self.url}: {_message(exc)}") from exc
        if not ok:
            client.close()
            raise BackendUnavailable(f"podman at {self.url} did not answer its ping")
        try:
            info = await asyncio.to_thread(client.info)
            self.rootless = bool(info.get("host", {}).get("security", {}).get("rootless"))
            graph = str(info.get("store", {}).get("graphRoot") or "")
            self.files = self.local and bool(graph) and os.access(graph, os.R_OK | os.X_OK)
        except Exception as exc:
            client.close()
            raise BackendUnavailable(f"podman at {self.url} did not say what it is: {_message(exc)}") from exc
        self.client = client

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _client(self) -> Any:
        if self.client is None:
            raise BackendUnavailable("the podman backend is not open")
        return self.client

    async def cleanup(self, keep: frozenset[str] = frozenset()) -> list[str]:
        client = self._client()
        try:
            found = await asyncio.to_thread(client.containers.list, all=True, filters={"label": LABEL})
        except Exception as exc:
            raise BackendUnavailable(f"podman at {self.url}: {_message(exc)}") from exc
        removed = []
        for ct in found:
            service = (ct.labels or {}).get(LABEL, "")
            if service in keep or (ct.labels or {}).get(OWNER_LABEL) != self.owner:
                continue
            await self.remove(ct.id)
            removed.append(service or ct.id)
        return sorted(removed)

    async def remove(self, container_id: str) -> None:
        """Kill and remove a container at once (``podman rm -f -t 0``); gone already is fine."""

        def rm() -> None:
            resp = self._client().api.delete(f"/containers/{container_id}", params={"force": True, "timeout": 0})
            if resp.status_code != 404:
                resp.raise_for_status()

        try:
            await asyncio.to_thread(rm)
        except Exception as exc:
            raise BackendError(f"podman could not remove {container_id}: {_message(exc)}") from exc

    async def launch(self, request: LaunchRequest) -> PodmanContainer:
        client = self._client()
        oci = request.oci
        if self.local:  # podman runs on this host: what this host cannot do, it cannot either
            oci = json.loads(json.dumps(oci))
            for note in fit_to_host(oci) + (fit_to_rootless(oci) if self.rootless else []):
                log.info("%s: %s", request.service_id, note)
        seccomp = ""
        if self.local and (oci.get("linux") or {}).get("seccomp"):
            # podman takes a profile only as a file on its host; the OCI form is its format too.
            path = Path(request.state_dir) / "seccomp.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(oci["linux"]["seccomp"]))
            seccomp = str(path)
        body, notes = translate(oci, request.service_id, runtime=self.runtime, ulimits=self.ulimits, owner=self.owner,
                                node_hostname=socket.gethostname() if self.local else "", seccomp_path=seccomp)
        body["name"] = f"{request.service_id}.{self.scope}"
        self._note(request.service_id, notes)
        litter = []
        if not body["rootfs_overlay"] and self.local:
            made = [n for n in PODMAN_LITTER if not os.path.lexists(Path(body["rootfs"]) / n)]
            litter = [Path(body["rootfs"]) / n for n in made]
            body.setdefault("labels", {})[LITTER_LABEL] = ",".join(made)  # removed after an adopted one too
        container = await self._create(client, body)
        pump = LogPump(request.log, name=request.service_id)
        handle = PodmanContainer(self, request, container, pump, notes, litter)
        try:
            if not self.files:
                # Attach before start: conmon then hands over every byte, in the order it read them.
                resp = await asyncio.to_thread(
                    client.api.post,
                    f"/containers/{container.id}/attach",
                    params={"stream": True, "stdout": True, "stderr": True, "logs": False},
                    stream=True,
                )
                resp.raise_for_status()
                pump.start(resp)
            await asyncio.to_thread(container.start)
            await asyncio.to_thread(container.reload)
            if self.files:  # conmon made its log file before the container ran: read from its start
                handle._pump = FileTail(request.log, request.service_id, log_path(container.attrs),
                                        Path(request.state_dir), container.id)  # fmt: skip
        except Exception as exc:
            await handle.delete()
            raise BackendError(f"podman could not start {request.service_id}: {_message(exc)}") from exc
        handle.pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        handle._start_waiter()
        return handle

    async def exec(self, container: PodmanContainer, argv: list[str], timeout: float) -> ExecResult:
        """Run *argv* in the running *container* (health checks)."""
        return await container.exec(argv, timeout)

    async def _create(self, client: Any, body: dict[str, Any]) -> Any:
        def create() -> Any:
            return client.api.post(
                "/containers/create", data=json.dumps(body), headers={"content-type": "application/json"}
            )

        try:
            resp = await asyncio.to_thread(create)
            if resp.status_code in (409, 500) and "already in use" in resp.text:
                # A container of ours left by a crashed run: never two instances of a service.
                old = await asyncio.to_thread(client.containers.get, body["name"])
                if LABEL not in (old.labels or {}):
                    raise BackendError(f"a container named {body['name']} exists and extvisor did not make it")
                if (old.labels or {}).get(OWNER_LABEL) != self.owner:
                    owner = (old.labels or {}).get(OWNER_LABEL, "?")
                    raise BackendError(f"{body['name']} is run by another extvisor on this podman (state dir {owner})")
                await self.remove(old.id)
                resp = await asyncio.to_thread(create)
            resp.raise_for_status()
            # The model needs only the id; start() and reload() fill in the rest.
            return client.containers.prepare_model({"Id": resp.json()["Id"], "Name": body["name"]})
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"podman could not create {body['name']}: {_message(exc)}") from exc

    async def adopt(self, request: LaunchRequest) -> PodmanContainer | None:
        """Our running container of *request.service_id*, its output read on from where the
        earlier daemon stopped (``adopt.py``); or None."""
        from .adopt import adopt

        return await adopt(self, request)

    def _note(self, service_id: str, notes: list[str]) -> None:
        # Logged once per service (again if the list changes), not at every restart; the
        # supervisor turns a handle's notes into the service's event, once.
        if notes and self._noted.get(service_id) != tuple(notes):
            self._noted[service_id] = tuple(notes)
            log.warning("%s: podman cannot express: %s", service_id, ", ".join(notes))
