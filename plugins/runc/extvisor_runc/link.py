"""The daemon's end of the runc monitor (``monitor.py``): start it if none runs, ask it, hear it.

One connection per daemon. Requests carry a ``rid`` and get one answer; the monitor also
says ``out`` (a container's output file grew) and ``exit`` (its exit file is written),
which go to whoever :meth:`MonitorLink.watch`es that container. If the monitor goes away,
the watchers are told (``lost``) and the next request starts a new monitor.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from extvisor import BackendError

log = logging.getLogger("extvisor.runc")

MONITOR = Path(__file__).with_name("monitor.py")
START_TIMEOUT = 10.0


class MonitorLink:
    def __init__(self, root: Path, runc: str) -> None:
        self.root = root
        self.runc = runc
        self.monitor_pid = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._watchers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._rids = itertools.count(1)

    @property
    def socket(self) -> Path:
        return self.root / "monitor.sock"

    async def connect(self) -> None:
        """Reach the monitor, starting one if none answers."""
        if self._writer is not None:
            return
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        await asyncio.shield(self._connecting)

    async def _connect(self) -> None:
        for attempt in range(3):
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket))
                hello = json.loads(await asyncio.wait_for(reader.readline(), START_TIMEOUT) or b"null")
            except (OSError, ValueError, TimeoutError):
                await self._spawn()
                continue
            if not isinstance(hello, dict) or hello.get("ev") != "hello":
                writer.close()
                raise BackendError(f"{self.socket} is not an extvisor runc monitor")
            self.monitor_pid = int(hello.get("pid") or 0)
            self._reader, self._writer = reader, writer
            self._task = asyncio.create_task(self._read(reader), name="runc monitor")
            return
        raise BackendError(f"the runc monitor does not answer on {self.socket} (see {self.root / 'monitor.log'})")

    async def _spawn(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        logfd = os.open(self.root / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", str(MONITOR), str(self.root), self.runc,
                stdin=asyncio.subprocess.DEVNULL, stdout=logfd, stderr=logfd, start_new_session=True, cwd="/",
            )  # fmt: skip
        finally:
            os.close(logfd)
        try:
            rc = await asyncio.wait_for(proc.wait(), START_TIMEOUT)  # its parent half exits once it listens
        except TimeoutError:
            proc.kill()
            raise BackendError(f"the runc monitor did not start in {START_TIMEOUT:.0f}s") from None
        if rc != 0:
            raise BackendError(f"the runc monitor failed to start (exit status {rc}; see {self.root / 'monitor.log'})")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                rid = msg.get("rid")
                if rid is not None:
                    future = self._answers.pop(rid, None)
                    if future is not None and not future.done():
                        future.set_result(msg)
                    continue
                watcher = self._watchers.get(msg.get("id"))
                if watcher is not None:
                    watcher(msg)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            self._lost()

    def _lost(self) -> None:
        if self._writer is None:
            return
        log.warning("the runc monitor (PID %d) went away; running containers' exit statuses may be lost",
                    self.monitor_pid)
        self._writer.close()
        self._reader = self._writer = None
        for future in self._answers.values():
            if not future.done():
                future.set_exception(BackendError("the runc monitor went away"))
        self._answers.clear()
        for watcher in list(self._watchers.values()):
            watcher({"ev": "lost"})

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        await self.connect()
        assert self._writer is not None
        rid = next(self._rids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[rid] = future
        self._writer.write(json.dumps(dict(fields, op=op, rid=rid)).encode() + b"\n")
        return await future

    def watch(self, cid: str, callback: Callable[[dict[str, Any]], None]) -> None:
        self._watchers[cid] = callback

    def unwatch(self, cid: str, callback: Callable[[dict[str, Any]], None]) -> None:
        if self._watchers.get(cid) == callback:
            del self._watchers[cid]

    async def close(self) -> None:
        """Leave the monitor (it goes on holding the containers; idle, it exits by itself)."""
        task, writer = self._task, self._writer
        self._reader = self._writer = None
        self._watchers.clear()
        if writer is not None:
            writer.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
