"""RuncBackend: one ``runc run --detach`` per service, driven from asyncio.

How a run works (measured on this machine, see the backends note §1):

* The container's stdout and stderr are the write end of one pipe, handed to ``runc
  run --detach`` (runc's pass-through mode): both streams arrive in the order written. We
  never capture runc's stdout through asyncio: the container inherits it, so a capture
  would wait for the container to end.
* runc keeps no exit status. While ``runc run --detach`` runs, this process is a child
  subreaper, so when runc exits the container's init is re-parented to us; a pidfd
  tells the loop when it exits and ``waitid`` gives the exact code or signal. The flag is
  on only while a run is in flight: left on, every orphan of the daemon's other
  children (containerd shims, conmon) would become our zombie.
* ``runc --root <state_dir>/runc`` keeps containers private to this daemon, so
  :meth:`RuncBackend.cleanup` can remove everything listed there.
"""

from __future__ import annotations

import asyncio
import fcntl
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
from .host import READ_SIZE, _cgroups_path, _decode, _drain, _runc_error
from .subreaper import subreaper

log = logging.getLogger("extvisor.runc")

MARKER = ".extvisor-bundle"  # cleanup() removes only bundle dirs that carry it
COMMAND_TIMEOUT = 30.0
EXIT_TIMEOUT = 5.0  # how long delete() waits for a killed init, and wait() for the log's EOF
PIPE_SIZE = 1 << 20  # a larger pipe lets a fast writer run with fewer wake-ups
F_SETPIPE_SZ = 1031


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
        self.binary = path
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            await self.runc("--version")
        except (BackendError, OSError) as exc:
            raise BackendUnavailable(f"{path} does not run: {exc}") from exc
        subreaper()

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
        bundle = Path(request.state_dir) / "bundle"
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

        read_fd, write_fd = os.pipe()  # both close-on-exec: no other child inherits them
        try:
            fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        proc = None
        try:
            with subreaper():
                proc = await asyncio.create_subprocess_exec(
                    self.binary, "--root", str(self.root), "--log", str(log_file), "--log-format", "json",
                    "run", "--detach", "--bundle", str(bundle), "--pid-file", str(pid_file), cid,
                    stdin=asyncio.subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,
                )  # fmt: skip
                os.close(write_fd)
                write_fd = -1  # EOF must come when the container's last process exits
                try:
                    rc = await asyncio.wait_for(proc.wait(), COMMAND_TIMEOUT)
                except TimeoutError:
                    proc.kill()
                    rc = await proc.wait()
        except BaseException:  # cancelled, or runc could not be started
            if write_fd >= 0:
                os.close(write_fd)
            os.close(read_fd)
            if proc is not None and proc.returncode is None:
                # A killed create leaves cgroups and no state to delete them by: let it end.
                try:
                    await asyncio.wait_for(proc.wait(), COMMAND_TIMEOUT)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            await self._forget(cid, bundle, cgroups)
            raise
        if rc != 0:
            said = _drain(read_fd).decode(errors="replace").strip().splitlines()
            os.close(read_fd)
            message = _runc_error(log_file) or (said[-1] if said else f"runc run exited with {rc}")
            if "already exists" not in message:  # else it is another run's container
                await self._forget(cid, bundle, cgroups)
            raise BackendError(message)

        # One `runc run --detach` rather than create + start: half the runc processes per start
        # (docs/performance.md). The init is our child by the subreaper, so an exit that comes
        # before this line is still reaped with its status, and its output waits in the pipe.
        pid = int(pid_file.read_text().strip())
        container = RuncContainer(self, cid, pid, read_fd, sink, bundle, cgroups)
        self._containers.add(container)
        return container

    async def exec(self, container: RuncContainer, argv: list[str], timeout: float) -> ExecResult:
        """Run *argv* in the running *container* (``runc exec``; health checks)."""
        return await container.exec(argv, timeout)

    async def close(self) -> None:
        for container in list(self._containers):
            container.detach()
        self._containers.clear()
        for parent in self._cgroup_parents:  # only empty ones go: a detached container keeps its own
            remove_cgroup_dirs(parent)

    async def _forget(self, cid: str, bundle: Path, cgroups: str) -> None:
        """Undo a failed or cancelled create: runc usually removed the container already."""
        try:
            pid = int((bundle / "init.pid").read_text())
        except (OSError, ValueError):
            pid = 0
        try:
            await self.runc("delete", "--force", cid)
        except BackendError:
            pass
        if pid > 0:  # a created init was re-parented to us: reap it, or it stays a zombie
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        shutil.rmtree(bundle, ignore_errors=True)
        left = remove_cgroup_dirs(cgroups)
        if left:
            log.warning("%s: cgroups left after a failed create: %s", cid, ", ".join(left))


class RuncContainer:
    """One created-and-started runc container; its init is our child."""

    def __init__(
        self, backend: RuncBackend, cid: str, pid: int, log_fd: int, sink: LogSink, bundle: Path,
        cgroups: str,
    ) -> None:  # fmt: skip
        self.id = cid
        self.pid = pid
        self._backend = backend
        self._sink = sink
        self._bundle = bundle
        self._cgroups_path = cgroups
        self._loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._eof: asyncio.Future[None] = self._loop.create_future()
        self._deleting: asyncio.Task[None] | None = None
        self._sink_failed = False
        self._log_fd = log_fd
        os.set_blocking(log_fd, False)
        self._loop.add_reader(log_fd, self._on_output)
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._reap()
        else:
            self._loop.add_reader(self._pidfd, self._reap)

    def __repr__(self) -> str:
        return f"<RuncContainer {self.id} pid={self.pid}>"

    # -- event loop callbacks ----------------------------------------------------------

    def _on_output(self) -> None:
        try:
            data = os.read(self._log_fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_log()
            return
        try:
            self._sink.write(data)
        except Exception:  # a broken sink must not stop the container or the loop
            if not self._sink_failed:
                log.exception("%s: log sink failed; output dropped", self.id)
            self._sink_failed = True

    def _close_log(self) -> None:
        if self._log_fd >= 0:
            self._loop.remove_reader(self._log_fd)
            os.close(self._log_fd)
            self._log_fd = -1
        if not self._eof.done():
            self._eof.set_result(None)

    def _reap(self) -> None:
        try:
            if self._pidfd < 0:
                raise ChildProcessError  # gone before we could watch it
            info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
            if info is None:
                return  # not exited yet (a spurious wake-up)
            status = _decode(info)
        except ChildProcessError:
            # Not our child, or already reaped by someone else: the status is lost.
            log.warning("%s: init %d is not our child; exit status unknown", self.id, self.pid)
            status = ExitStatus(code=255)
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if not self._exit.done():
            self._exit.set_result(status)

    # -- ContainerHandle protocol ------------------------------------------------------

    async def wait(self) -> ExitStatus:
        status = await asyncio.shield(self._exit)
        # Every byte written before the exit is delivered before wait() returns.
        try:
            await asyncio.wait_for(asyncio.shield(self._eof), EXIT_TIMEOUT)
        except TimeoutError:
            log.warning("%s: output pipe still open %.0fs after exit; stopped reading", self.id, EXIT_TIMEOUT)
            self._close_log()
        return status

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
        if self._pidfd >= 0 and not self._exit.done():
            # Killing init ends the whole pid namespace at once; runc delete --force would
            # poll for that every 100 ms.
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                await asyncio.wait_for(asyncio.shield(self._exit), EXIT_TIMEOUT)
            except TimeoutError:
                log.warning("%s: init %d survived SIGKILL for %.0fs", self.id, self.pid, EXIT_TIMEOUT)
        try:
            await self._backend.runc("delete", "--force", self.id)
        except BackendError as exc:
            if "does not exist" not in str(exc):
                raise
        finally:
            if self._exit.done():
                try:
                    await asyncio.wait_for(asyncio.shield(self._eof), EXIT_TIMEOUT)
                except TimeoutError:
                    pass
            elif self._pidfd < 0:  # detached by close(): reap the init runc just killed
                try:
                    os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            self.detach()
            self._backend._containers.discard(self)
            shutil.rmtree(self._bundle, ignore_errors=True)
        left = remove_cgroup_dirs(self._cgroups_path)
        if left:
            raise BackendError(f"{self.id}: cgroups left after delete: {', '.join(left)}")

    # -- helpers -----------------------------------------------------------------------

    def detach(self) -> None:
        """Stop watching the container (the daemon closes); it keeps running."""
        self._close_log()
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
