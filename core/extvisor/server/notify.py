"""Tell a service manager (systemd, ``Type=notify``) how the daemon is doing.

The sd_notify protocol, spoken directly: one datagram per message to the Unix socket in
``$NOTIFY_SOCKET`` (``@name`` is an abstract socket). No libsystemd needed, and without the
variable every call does nothing. Sent: ``READY=1`` once the API answers and every
service file is loaded, ``STATUS=`` with the count of services by state whenever a state
changes, ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` (when ``$WATCHDOG_PID`` is unset or
ours), and ``STOPPING=1`` at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("extvisor.notify")


class Notifier:
    def __init__(self, address: str | None = None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Notifier:
        """Read the variables and take them out of *environ* (``os.environ`` by default).

        Taken out as sd_notify's ``unset_environment`` does: runc, containerd and podman
        honour ``NOTIFY_SOCKET`` themselves (``runc start`` would wait for the container
        to say READY=1), and no child of the daemon should speak for it.
        """
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None) or None
        usec, pid = env.pop("WATCHDOG_USEC", ""), env.pop("WATCHDOG_PID", "")
        watchdog = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False (and a log line) when it cannot."""
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), target)
            return True
        except OSError as exc:
            log.warning("cannot notify the service manager at %s: %s", self.address, exc)
            return False

    def start(self, status: Callable[[], str], changed: Callable[[], asyncio.Future | object]) -> None:
        """Send READY=1 and the first STATUS, then keep STATUS and the watchdog going."""
        if not self.enabled:
            return
        self.send("READY=1", f"STATUS={status()}", f"MAINPID={os.getpid()}")
        self._tasks.append(asyncio.create_task(self._status_loop(status, changed), name="notify status"))
        if self.watchdog_usec:
            self._tasks.append(asyncio.create_task(self._watchdog_loop(self.watchdog_usec / 2e6), name="watchdog"))

    async def _status_loop(self, status: Callable[[], str], changed: Callable[[], object]) -> None:
        last = status()
        while True:
            waiter = asyncio.ensure_future(changed())  # type: ignore[arg-type]
            text = status()  # read after subscribing: no change falls in between
            if text != last:
                self.send(f"STATUS={text}")
                last = text
            await waiter
            await asyncio.sleep(0.2)  # one STATUS per burst of changes

    async def _watchdog_loop(self, every: float) -> None:
        # The loop itself pings: a stuck event loop stops the pings and systemd restarts us.
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(every)

    async def stopping(self, reloading: bool = False) -> None:
        """Say STOPPING=1 (or RELOADING=1: an upgrade in place follows, whose READY=1 ends it);
        the watchdog goes on until :meth:`close` (stopping may take a while)."""
        for task in self._tasks:
            if task.get_name() != "watchdog":
                task.cancel()
        if reloading:
            self.send("RELOADING=1", "STATUS=Upgrading in place; services keep running")
        else:
            self.send("STOPPING=1", "STATUS=Stopping every service")

    def environ(self) -> dict[str, str]:
        """The variables :meth:`from_env` took out, for the daemon that replaces this one (same PID)."""
        env = {}
        if self.address:
            env["NOTIFY_SOCKET"] = self.address
        if self.watchdog_usec:
            env.update(WATCHDOG_USEC=str(self.watchdog_usec), WATCHDOG_PID=str(os.getpid()))
        return env

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def status_text(services: Iterable[Any]) -> str:
    """``3 services: 2 Running, 1 Waiting`` (what ``systemctl status`` shows)."""
    states: dict[str, int] = {}
    for service in services:
        states[service.state.value] = states.get(service.state.value, 0) + 1
    total = sum(states.values())
    parts = ", ".join(f"{n} {state}" for state, n in sorted(states.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total} service{'s' if total != 1 else ''}" + (f": {parts}" if parts else "")
