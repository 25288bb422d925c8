"""RuncBackend: one ``runc run --detach`` per service, driven from asyncio.

How a run works:

* The runc monitor (``monitor.py``, one small process for all of a daemon's containers,
  started by the first daemon and outliving it as conmon does for podman) runs ``runc run
  --detach`` itself: it is the child subreaper above each container's init, so it gets the
  exact exit code or signal (runc keeps none), and it reads the container's one stdout+stderr
  pipe (runc's pass-through mode: both streams in the order written) into a file.
* The daemon reads that file from a recorded offset (``output.py``) and the exit status from
  the monitor (or its exit file). Nothing of a container ends with the daemon: a new daemon
  adopts it with the same PID and reads its output on where the last one stopped, and one
  that ended meanwhile is reported with its real exit status.
* ``runc --root <state_dir>/runc`` keeps containers private to this daemon, so
  :meth:`RuncBackend.cleanup` can remove everything listed there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from extvisor import BackendConfig, BackendError, BackendUnavailable, ExecResult, ExitStatus, LaunchRequest
from extvisor.protocols import LogSink
from extvisor.oci import fit_to_host
from extvisor.oci.cgroups import daemon_parent, remove_cgroup_dirs

from .execs import runc_exec
from .host import _cgroups_path, _runc_error
from .link import MonitorLink
from .output import EXIT, OUTPUT, POSITION, OutputTail, load_position

log = logging.getLogger("extvisor.runc")

MARKER = ".extvisor-bundle"  # cleanup() removes only bundle dirs that carry it
COMMAND_TIMEOUT = 30.0
EXIT_TIMEOUT = 5.0  # how long delete() waits for a killed init (the monitor waits as long for the output's EOF)


class RuncBackend:
    """Runs each service with the ``runc`` binary; the state lives in ``<state_dir>/runc``."""

    name = "runc"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        options = config.options or {}
        self.binary = str(options.get("runc_binary") or options.get("runc-binary") or "runc")
        self.root = Path(config.state_dir) / "runc"
        self._containers: set[RuncContainer] = set()
        self._cgroup_parents: set[str] = set()  # kept while the daemon runs (daemon_parent)
        self.link = MonitorLink(Path(config.state_dir), self.binary)

    # -- running runc ----------------------------------------------------------------

    async def runc(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run ``runc --root ROOT ARGS`` (never ``run``) and return its stdout."""
        proc = await asyncio.create_subprocess_exec(
            self.binary, "--root", str(self.root), "--log", "/dev/null", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BackendError(f"runc {' '.join(args)}: no answer in {timeout:.0f}s") from None
        except asyncio.CancelledError:  # the caller's deadline: leave no hung runc behind
            if proc.returncode is None:
                proc.kill()
            raise
        if proc.returncode != 0:
            lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
            raise BackendError(lines[-1] if lines else f"runc {args[0]} failed with exit status {proc.returncode}")
        return out.decode(errors="replace")

    # -- Backend protocol ------------------------------------------------------------

    async def open(self) -> None:
        path = shutil.which(self.binary)
        if path is None:
            raise BackendUnavailable(f"runc binary {self.binary!r} not found")
        if os.geteuid() != 0:
            raise BackendUnavailable("the runc backend needs root")
        if not hasattr(os, "pidfd_open"):
            raise BackendUnavailable("the runc backend needs Linux ≥ 5.3 (pidfd_open)")
        self.binary = self.link.runc = path
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The monitor starts (a Python of its own, ~20 ms) while runc answers.
        version, monitor = await asyncio.gather(self.runc("--version"), self.link.connect(), return_exceptions=True)
        if isinstance(version, (BackendError, OSError)):
            raise BackendUnavailable(f"{path} does not run: {version}") from version
        if isinstance(monitor, (BackendError, OSError)):
            raise BackendUnavailable(str(monitor)) from monitor
        for result in (version, monitor):
            if isinstance(result, BaseException):
                raise result

    async def cleanup(self, keep: frozenset[str] = frozenset()) -> list[str]:
        listed = json.loads(await self.runc("list", "--format", "json") or "null") or []
        gone = [c for c in listed if c.get("id") not in keep]

        async def remove(container: dict[str, Any]) -> None:
            await self.runc("delete", "--force", container["id"])
            bundle = Path(container.get("bundle") or "/nonexistent")
            if (bundle / MARKER).exists():
                shutil.rmtree(bundle, ignore_errors=True)

        await asyncio.gather(*(remove(c) for c in gone))
        return sorted(c["id"] for c in gone)

    async def launch(self, request: LaunchRequest) -> RuncContainer:
        cid = request.service_id
        if (self.root / cid).exists():  # a run whose delete failed (runc broken then): remove it now
            try:
                await self.runc("delete", "--force", cid)
            except BackendError as exc:
                if "does not exist" not in str(exc):
                    raise BackendError(f"container {cid} of an earlier run cannot be removed: {exc}") from None
        if (self.root / cid).exists():  # runc's state dir: never touch a live container's bundle
            raise BackendError(f"container {cid} already exists: delete the previous run first")
        state_dir = Path(request.state_dir)
        bundle = state_dir / "bundle"
        shutil.rmtree(bundle, ignore_errors=True)
        bundle.mkdir(parents=True)
        (bundle / MARKER).touch()
        oci = json.loads(json.dumps(request.oci))  # our copy: fit_to_host changes it
        for note in fit_to_host(oci):
            log.info("%s: %s", cid, note)
        (bundle / "config.json").write_text(json.dumps(oci))
        cgroups, sink = _cgroups_path(oci), request.log
        del oci, request  # not held while runc runs: fifty starts at once held 4 MB, then fragments
        self._cgroup_parents.add(daemon_parent(cgroups))
        pid_file, log_file = bundle / "init.pid", bundle / "runc.log"
        (state_dir / POSITION).unlink(missing_ok=True)  # a position belongs to one run

        # The monitor runs `runc run --detach` (one runc process per start, docs/performance.md)
        # with the container's stdout and stderr on one pipe it reads; the init is its child.
        asked = asyncio.ensure_future(self.link.request(
            "run", id=cid, root=str(self.root), bundle=str(bundle), pid_file=str(pid_file),
            runc_log=str(log_file), output=str(state_dir / OUTPUT), exit=str(state_dir / EXIT),
        ))  # fmt: skip
        try:
            answer = await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(asked)), COMMAND_TIMEOUT)
        except BaseException as exc:  # cancelled, no answer, the monitor gone
            # A run in flight ends anyway: wait for it, so that its container is removed, not left.
            try:
                late = await asyncio.wait_for(asked, COMMAND_TIMEOUT)
                if "pid" in late:
                    os.kill(int(late["pid"]), signal.SIGKILL)
            except BaseException:
                pass
            await self._forget(cid, bundle, cgroups)
            for name in (OUTPUT, EXIT):
                (state_dir / name).unlink(missing_ok=True)
            if isinstance(exc, TimeoutError):
                raise BackendError(f"runc run {cid}: no answer in {COMMAND_TIMEOUT:.0f}s") from None
            raise
        if "pid" not in answer:
            said = (answer.get("said") or "").strip().splitlines()
            message = answer.get("error") or _runc_error(log_file) or (
                said[-1] if said else f"runc run exited with {answer.get('rc')}")
            if "already exists" not in message:  # else it is another run's container
                await self._forget(cid, bundle, cgroups)
            raise BackendError(message)
        tail = OutputTail(sink, cid, state_dir, int(answer["pid"]))
        container = RuncContainer(self, cid, int(answer["pid"]), tail, bundle, cgroups)
        self._containers.add(container)
        return container

    async def adopt(self, request: LaunchRequest) -> RuncContainer | None:
        """The container an earlier daemon started for this service, still held by the monitor
        (running, or ended while no daemon watched: then with its exit status); or None."""
        cid, state_dir = request.service_id, Path(request.state_dir)
        position = load_position(state_dir, getattr(request.log, "path", None))
        if position is None or not (self.root / cid).exists():
            return None
        pid, offset = position
        ended = _exit_status(state_dir / EXIT)
        if ended is None:
            running = (await self.link.request("list")).get("containers") or {}
            if running.get(cid) != pid:
                return None  # not the monitor's (it died, or another run): its output is lost
        elif ended[1] != pid:
            return None
        cgroups = _cgroups_path(request.oci)
        self._cgroup_parents.add(daemon_parent(cgroups))
        try:
            tail = OutputTail(request.log, cid, state_dir, pid, offset)
        except OSError as exc:
            log.warning("%s: cannot read its output on: %s", cid, exc)
            return None
        container = RuncContainer(self, cid, pid, tail, state_dir / "bundle", cgroups,
                                  ended[0] if ended else None)
        self._containers.add(container)
        return container

    async def exec(self, container: RuncContainer, argv: list[str], timeout: float) -> ExecResult:
        """Run *argv* in the running *container* (``runc exec``; health checks)."""
        return await container.exec(argv, timeout)

    async def close(self) -> None:
        for container in list(self._containers):
            container.detach()
        self._containers.clear()
        await self.link.close()
        for parent in self._cgroup_parents:  # only empty ones go: a detached container keeps its own
            remove_cgroup_dirs(parent)

    async def _forget(self, cid: str, bundle: Path, cgroups: str) -> None:
        """Undo a failed or cancelled create: runc usually removed the container already."""
        try:
            await self.runc("delete", "--force", cid)
        except BackendError:
            pass
        shutil.rmtree(bundle, ignore_errors=True)
        left = remove_cgroup_dirs(cgroups)
        if left:
            log.warning("%s: cgroups left after a failed create: %s", cid, ", ".join(left))


class RuncContainer:
    """One runc container held by the monitor: output from its file, exit from the monitor."""

    def __init__(
        self, backend: RuncBackend, cid: str, pid: int, tail: OutputTail, bundle: Path, cgroups: str,
        ended: ExitStatus | None = None,
    ) -> None:  # fmt: skip
        self.id = cid
        self.pid = pid
        self._backend = backend
        self._tail = tail
        self._bundle = bundle
        self._state_dir = bundle.parent
        self._cgroups_path = cgroups
        self._loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._deleting: asyncio.Task[None] | None = None
        self._polling: asyncio.Task[None] | None = None
        self._pidfd = -1
        self._detached = False
        self._orphaned = False  # its monitor went away: nobody will write its exit status
        backend.link.watch(cid, self._on_monitor)
        tail.read()  # what was written while no daemon read it
        if ended is not None:
            self._ended(ended)
            return
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._poll_exit()
        else:
            self._loop.add_reader(self._pidfd, self._poll_exit)

    def __repr__(self) -> str:
        return f"<RuncContainer {self.id} pid={self.pid}>"

    # -- what the monitor says ---------------------------------------------------------

    def _on_monitor(self, msg: dict[str, Any]) -> None:
        ev = msg.get("ev")
        if ev == "out":
            self._tail.read()
        elif ev == "exit":
            self._ended(ExitStatus(code=msg.get("code"), signal=msg.get("signal")))
        elif ev == "lost":  # no monitor: the init's exit is seen by its pidfd, its status is lost
            self._orphaned = True
            self._tail.read()

    def _poll_exit(self) -> None:
        """The init has exited (its pidfd says so): the monitor writes its status at once,
        after the output; read it from the file in case the monitor's word does not come."""
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
        if self._polling is None and not self._exit.done():
            self._polling = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        deadline = self._loop.time() + EXIT_TIMEOUT + 3
        while not self._exit.done():
            ended = _exit_status(self._state_dir / EXIT)
            if ended is not None and ended[1] == self.pid:
                self._ended(ended[0])
                return
            if self._orphaned or self._loop.time() > deadline:
                log.warning("%s: init %d exited and the monitor wrote no exit status; exit status unknown",
                            self.id, self.pid)
                self._ended(ExitStatus(code=255))
                return
            await asyncio.sleep(0.01)

    def _ended(self, status: ExitStatus) -> None:
        if self._exit.done():
            return
        self._tail.read()  # the monitor wrote the exit after the last byte of output
        self._close_pidfd()
        self._exit.set_result(status)

    # -- ContainerHandle protocol ------------------------------------------------------

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exit)

    async def signal(self, signum: int) -> None:
        if self._exit.done():
            return
        try:
            await self._backend.runc("kill", "--all", self.id, str(int(signum)))
        except BackendError as exc:
            text = str(exc)
            if "not running" in text or "does not exist" in text or self._exit.done():
                return
            raise

    async def exec(self, argv: list[str], timeout: float) -> ExecResult:
        """``runc exec`` of *argv* in this container, killed at *timeout* (execs.py)."""
        backend = self._backend
        return await runc_exec(backend.binary, backend.root, self.id, Path(backend.config.state_dir) / "exec", argv,
                               timeout)  # fmt: skip

    def kill_hard(self) -> None:
        """SIGKILL the init through our pidfd: its PID namespace ends with it. No runc needed."""
        if self._pidfd >= 0 and not self._exit.done():
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def delete(self) -> None:
        if self._deleting is None:
            self._deleting = asyncio.ensure_future(self._delete())
        await asyncio.shield(self._deleting)

    async def _delete(self) -> None:
        if not self._exit.done() and not self._detached:
            # Killing init ends the whole pid namespace at once; runc delete --force would
            # poll for that every 100 ms. (Detached, runc delete --force kills and waits.)
            self.kill_hard()
            try:
                await asyncio.wait_for(asyncio.shield(self._exit), EXIT_TIMEOUT + 3)
            except TimeoutError:
                log.warning("%s: init %d survived SIGKILL for %.0fs", self.id, self.pid, EXIT_TIMEOUT)
        try:
            await self._backend.runc("delete", "--force", self.id)
        except BackendError as exc:
            if "does not exist" not in str(exc):
                raise
        finally:
            self.detach()
            self._backend._containers.discard(self)
            shutil.rmtree(self._bundle, ignore_errors=True)
            for name in (OUTPUT, POSITION, EXIT):
                (self._state_dir / name).unlink(missing_ok=True)
        left = remove_cgroup_dirs(self._cgroups_path)
        if left:
            raise BackendError(f"{self.id}: cgroups left after delete: {', '.join(left)}")

    # -- helpers -----------------------------------------------------------------------

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def detach(self) -> None:
        """Stop watching the container (the daemon closes); it keeps running under the monitor."""
        self._detached = True
        self._backend.link.unwatch(self.id, self._on_monitor)
        self._close_pidfd()
        if self._polling is not None:
            self._polling.cancel()
        self._tail.close()


def _exit_status(path: Path) -> tuple[ExitStatus, int] | None:
    """The exit status the monitor wrote, and the PID it was of; None if not written (yet)."""
    try:
        data = json.loads(path.read_text())
        return ExitStatus(code=data.get("code"), signal=data.get("signal")), int(data.get("pid") or 0)
    except (OSError, ValueError, AttributeError):
        return None
