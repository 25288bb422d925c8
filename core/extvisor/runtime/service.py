"""One service and its life: wait for conditions, launch, restart, stop (Talos's ServiceRunner).

A run goes Starting -> Waiting -> Preparing -> Running, then, by the restart policy,
Waiting -> Running again, or Finished / Failed. Stopping ends any run with Finished.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from extvisor.documents.models import Restart, ServiceSpec
from extvisor.oci import ContainerSpecError, check_rootfs, create_missing_sources
from extvisor.protocols import BackendError, BackendUnavailable, ContainerHandle, ExitStatus
from extvisor.state import Health, History, ServiceEvent, ServiceInfo, State
from extvisor.runtime.health import HealthMonitor, OnFailure
from extvisor.runtime.waitall import ConditionFailed, wait_all

if TYPE_CHECKING:
    from extvisor.runtime.host import Launched, ServiceHost

log = logging.getLogger("extvisor.service")


class _Stop(Exception):
    """Raised inside a run when the operator or shutdown asks the service to stop."""


class Service:
    def __init__(self, spec: ServiceSpec, supervisor: ServiceHost, source: str, rootfs: Path):
        self.spec = spec
        self.id = spec.id
        self.source = source
        self.rootfs = rootfs  #: the root filesystem its container runs on
        self.sup = supervisor
        self.history = History()
        self.state = State.Initialized
        self.restarts = 0
        self.pid: int | None = None
        self.started_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._container: ContainerHandle | None = None
        self._adopted: Launched | None = None  #: left running by an earlier daemon
        self.launched_hash: str | None = None  #: of the OCI spec of the running container
        self._noted = False
        self.health = HealthMonitor(self)  #: its checks and health (runtime/health.py)

    # -- what the API shows ----------------------------------------------------------

    @property
    def container(self) -> ContainerHandle | None:
        """The container of the run in progress, while it runs (for stats)."""
        return self._container

    @property
    def running(self) -> bool:
        """A run is in progress (any state but the terminal ones), as Talos's ``running``."""
        return self._task is not None and not self._task.done()

    def info(self, events: int = 64) -> ServiceInfo:
        last = self.history.last
        return ServiceInfo(
            id=self.id,
            state=self.state,
            health=self.health.view() or Health(),
            events=self.history.get(events),
            restarts=self.restarts,
            pid=self.pid,
            started_at=self.started_at,
            changed_at=last.ts if last else None,
            source=self.source,
            depends_on=self.spec.service_dependencies(),
            log_to_console=self.spec.logToConsole,
        )

    def push(self, state: State, msg: str) -> None:
        self.state = state
        event = ServiceEvent(service=self.id, state=state, msg=msg)
        self.history.push(event)
        self.sup.publish(event)

    # -- operator actions ------------------------------------------------------------

    def start(self) -> bool:
        """Begin a run unless one is in progress; return whether one was begun."""
        if self.running:
            return False
        if self.health.refused:  # the backend cannot run its health check (said at load)
            self.fail(f"Failed to start: {self.health.refused}")
            return False
        self._stop = asyncio.Event()
        self.push(State.Starting, "Starting service")
        self._task = asyncio.create_task(self._run(), name=f"run {self.id}")
        return True

    async def stop(self) -> None:
        """Stop the run in progress, if any, and return once it ended."""
        if not self.running:
            return
        self._stop.set()
        assert self._task is not None
        await asyncio.shield(self._task)

    def carry_over(self, restarts: int, events: Iterable[ServiceEvent]) -> None:
        """Take the restart counter and the events an earlier daemon recorded of this service."""
        self.restarts = restarts
        for event in events:
            self.history.push(event)

    def adopt(self, launched: Launched) -> None:
        """Go on supervising the container an earlier daemon *launched* for this service."""
        if self.running:
            raise RuntimeError(f"{self.id} is running already")
        self._stop = asyncio.Event()
        self._adopted = launched
        self._task = asyncio.create_task(self._run(), name=f"run {self.id}")

    async def detach(self) -> None:
        """End the run without touching its container (the supervisor detaches)."""
        if self.running:
            assert self._task is not None
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def fail(self, msg: str) -> None:
        """Mark the service Failed without running it (a dependency cycle, a bad rootfs)."""
        self.push(State.Failed, msg)

    # -- a run -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._adopted is None:  # an adopted container runs already: its conditions held
                await self._wait_conditions()
                self.push(State.Preparing, "Running pre state")
                try:
                    check_rootfs(self.spec, self.rootfs)
                    create_missing_sources(self.spec)
                except (ContainerSpecError, OSError) as exc:
                    raise _Failed(f"Failed to run pre stage: {exc}") from None
                self.push(State.Preparing, "Creating service runner")
            await self._run_with_restarts()
            self.push(State.Finished, "Service finished successfully")
        except _Stop:
            self.push(State.Finished, "Service finished successfully")
        except _Failed as exc:
            self.push(State.Failed, str(exc))
        except Exception as exc:  # never let one service take the daemon down
            log.exception("service %s crashed", self.id)
            self.push(State.Failed, f"Failed running service: {exc!r}")
        finally:
            self.pid = None
            self.started_at = None

    async def _stoppable(self, aw: asyncio.Future | asyncio.Task) -> None:
        """Await *aw*, raising _Stop (and cancelling it) if a stop is requested first."""
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait({aw, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if aw not in done:
            aw.cancel()
            await asyncio.gather(aw, return_exceptions=True)
            raise _Stop()
        aw.result()

    async def _wait_conditions(self) -> None:
        conditions = self.sup.conditions_of(self.spec)
        if not conditions:
            return
        waiter = asyncio.ensure_future(
            wait_all(conditions, lambda text: self.push(State.Waiting, f"Waiting for {text}"), self.sup.options.recheck)
        )
        try:
            await self._stoppable(waiter)
        except ConditionFailed as exc:
            raise _Failed(f"Condition failed: {exc}") from None

    async def _run_with_restarts(self) -> None:
        policy = self.spec.restart or Restart.never
        delay = self.sup.options.restart_delay
        while True:
            began = time.monotonic()
            status, error = await self._run_once()
            if status is not None and status.success:
                if policy is not Restart.always:
                    return
                msg = f"Runner {self._runner_name} exited without error, going to restart it"
            else:
                reason = error or f'task "{self.id}" failed: {status}{self._last_log()}'
                if policy is Restart.never:
                    raise _Failed(f"Failed running service: error running service: {reason}")
                how = "until it succeeds" if policy is Restart.untilSuccess else "forever"
                msg = f"Error running {self._runner_name}, going to restart {how}: {reason}"
            # Back off: double the delay after quick crashes, back to the start after a long run.
            if time.monotonic() - began >= self.sup.options.restart_max_delay:
                delay = self.sup.options.restart_delay
            said = time.monotonic()
            self.push(State.Waiting, f"{msg} (in {delay:g}s)")
            try:  # "in 0.2s" counts from the event, not from after its record is written
                await self._stoppable(asyncio.ensure_future(asyncio.sleep(delay - (time.monotonic() - said))))
            except _Stop:
                self.push(State.Stopping, "Aborting restart sequence")
                raise
            delay = min(delay * 2, self.sup.options.restart_max_delay)
            self.restarts += 1

    @property
    def _runner_name(self) -> str:
        return f"{self.sup.backend_name.capitalize()}({self.id})"

    def _last_log(self) -> str:
        tail = self.sup.last_log(self.id)
        return f" (last log {tail!r})" if tail else ""

    async def _run_once(self) -> tuple[ExitStatus | None, str | None]:
        """Launch the container and wait for its end. A stop request raises _Stop after stopping it."""
        launched, self._adopted = self._adopted, None
        how = "Adopted"
        if launched is None:
            how = "Started"
            try:
                launched = await self._launch()
            except (BackendError, ContainerSpecError, OSError) as exc:
                return None, str(exc)
        container = launched.container
        self.launched_hash = launched.spec_hash  # recorded with the pid: a later daemon may adopt it
        self._container = container
        self.pid = container.pid
        self.started_at = time.time()
        if how == "Started":
            self.push(State.Running, f"Started task {self.id} (PID {container.pid}) for container {self.id}")
        else:
            self.push(State.Running, f"Adopted task {self.id} (PID {container.pid}) for container {self.id}, "
                                     "left running by an earlier daemon")
        notes = getattr(container, "notes", None)  # OCI settings the backend cannot express
        if notes and not self._noted:
            self._noted = True  # said once per service, not at every restart
            self.push(State.Running, f"{self.sup.backend_name} cannot express: {', '.join(notes)}")
        waiter = asyncio.ensure_future(container.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        # Resolves when the health check's on_failure wants the run ended.
        sick = self.health.begin(container, adopted=how == "Adopted")
        trouble = ""
        try:
            await asyncio.wait({waiter, stop, sick}, return_when=asyncio.FIRST_COMPLETED)
            stopped = not waiter.done()
            if stopped:
                self.health.pause()  # no more checks into a container being stopped
                trouble = await self._terminate(container, waiter)
                if not waiter.done():
                    waiter.cancel()
                    raise _Failed(f"Failed to stop: {trouble}; its processes did not exit")
            status = await waiter
        finally:
            stop.cancel()
            verdict = None if self._stop.is_set() or not sick.done() or sick.cancelled() else sick.result()
            self.health.end()
            self._container = None
            self.pid = None
            if self.sup.detaching:  # the daemon exits leaving it running
                detach = getattr(container, "detach", None)
                if detach is not None:
                    detach()
            else:
                await self._delete(container)
        self.sup.pm.hook.extvisor_container_exited(service_id=self.id, status=status, stopped=stopped)
        if stopped:
            if trouble:  # stopped, but not by the runtime: say so rather than "finished successfully"
                raise _Failed(f"Failed to stop through {self.sup.backend_name}: {trouble}; "
                              "its processes were killed directly")
            if verdict is None:
                raise _Stop()
            if verdict[0] is OnFailure.stop:  # healthcheck on_failure: stop
                raise _Failed(f"Stopped: {verdict[1]}")
            return None, verdict[1]  # on_failure: restart, a failed run for the restart policy
        return status, None

    async def _delete(self, container: ContainerHandle) -> None:
        """Remove the container, within a deadline: a runtime that hangs must not hold the service."""
        deleting = asyncio.ensure_future(container.delete())
        try:
            await asyncio.wait_for(asyncio.shield(deleting), self.sup.options.kill_timeout * 2)
        except TimeoutError:
            log.warning("%s: removing the container takes over %gs; going on (it finishes in the background)",
                        self.id, self.sup.options.kill_timeout * 2)
            deleting.add_done_callback(lambda f: f.cancelled() or f.exception())
        except Exception as exc:
            log.warning("%s: removing the container failed: %s", self.id, exc)

    async def _launch(self) -> Launched:
        """Launch, waiting while the backend is unreachable (containerd down, podman not started)."""
        while True:
            try:
                return await self.sup.launch(self.spec, self.rootfs)
            except BackendUnavailable as exc:
                self.push(State.Waiting, f"Waiting for {self.sup.backend_name}: {exc}")
                await self._stoppable(asyncio.ensure_future(asyncio.sleep(self.sup.options.backend_retry)))

    async def _terminate(self, container: ContainerHandle, waiter: asyncio.Future) -> str:
        """SIGTERM, SIGKILL after the grace period, then the backend's own kill; '' if the runtime did it.

        Each step has a deadline, so a runtime that fails or hangs cannot hold a stop (or
        the daemon's shutdown) for ever.
        """
        opts = self.sup.options
        signum = self.sup.pm.hook.extvisor_stop_signal(service_id=self.id, spec=self.spec) or signal.SIGTERM
        name = signal.Signals(signum).name
        who = f"task {self.id} (PID {container.pid}, container {self.id})"
        self.push(State.Stopping, f"Sending {name} to {who}")
        began = time.monotonic()
        trouble = await _signal(container, signum, opts.stop_timeout)
        done, _ = await asyncio.wait({waiter}, timeout=max(0.0, opts.stop_timeout - (time.monotonic() - began)))
        if done:
            return ""
        self.push(State.Stopping, f"Sending SIGKILL to {who}")
        trouble = await _signal(container, signal.SIGKILL, opts.kill_timeout) or trouble
        done, _ = await asyncio.wait({waiter}, timeout=opts.kill_timeout)
        if done:
            return ""
        trouble = trouble or f"{container.id} still runs {opts.kill_timeout:g}s after SIGKILL"
        kill = getattr(container, "kill_hard", None)  # the backend holds the process: no runtime needed
        if kill is None:
            return trouble
        self.push(State.Stopping, f"{self.sup.backend_name} did not stop {who} ({trouble}); killing it directly")
        try:
            kill()
        except Exception as exc:
            log.warning("%s: killing directly failed: %s", self.id, exc)
            return f"{trouble}; killing directly failed: {exc}"
        await asyncio.wait({waiter}, timeout=opts.kill_timeout)
        return trouble


class _Failed(Exception):
    pass


async def _signal(container: ContainerHandle, signum: int, timeout: float) -> str:
    """Send *signum* through the runtime; what went wrong, or ''."""
    try:
        await asyncio.wait_for(container.signal(signum), timeout)
    except TimeoutError:
        return f"the runtime did not answer a {signal.Signals(signum).name} in {timeout:g}s"
    except Exception as exc:
        log.debug("signal failed: %s", exc)
        return f"{signal.Signals(signum).name} failed: {exc}"
    return ""
