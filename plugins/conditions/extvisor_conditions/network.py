"""``network: [addresses, connectivity, hostname, etcfiles]``: wait for network readiness.

Values are case-insensitive (Talos's enumer), duplicates are dropped, and ``address`` is
accepted for ``addresses`` with a warning. Addresses and routes come from the kernel
through one shared reader per namespace (netmonitor), woken by netlink and re-reading at
least once a second; hostname and /etc files, which send no event, are re-read with it.
Options (tests): ``netns`` (a named network namespace), ``hostname_reader`` (a callable
returning the hostname), ``etc_root`` (the directory holding ``hosts`` and ``resolv.conf``).
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Annotated

from extvisor import ConditionContext, SpecWarning
from pydantic import AfterValidator

from .netmonitor import kernel_monitor
from .netstatus import KERNEL_STATUSES, STATUSES, read_local
from .text import goquote

RECHECK = 1.0  # for hostname/etcfiles alone; kernel statuses: see netmonitor


def _statuses(values: list[str]) -> list[str]:
    out: list[str] = []
    for raw in values:
        value = raw.strip().lower()
        if value == "address":
            warnings.warn(SpecWarning("network status `address` is deprecated, use `addresses`"), stacklevel=2)
            value = "addresses"
        if value not in STATUSES:
            raise ValueError(f"{goquote(raw)} does not belong to network status values ({', '.join(STATUSES)})")
        if value not in out:
            out.append(value)
    return out


NetworkValue = Annotated[list[str], AfterValidator(_statuses)]


class NetworkCondition:
    def __init__(self, statuses: list[str], ctx: ConditionContext):
        self.statuses = list(statuses)
        options = ctx.options or {}
        self.netns: str | None = options.get("netns")
        self.hostname_reader = options.get("hostname_reader")
        self.etc_root: str = options.get("etc_root") or "/etc"
        self.pending = list(self.statuses)  # until the first read, all are pending
        self.recheck = RECHECK

    def describe(self) -> str:
        # Talos says just "network"; the pending statuses tell the operator what is missing.
        return f"network ({', '.join(self.pending)})" if self.pending else "network"

    def __repr__(self) -> str:
        return f"NetworkCondition({self.statuses!r})"

    def _update(self, kernel: dict[str, bool]) -> bool:
        status = dict(kernel)
        status.update(read_local(self.statuses, self.hostname_reader, self.etc_root))
        self.pending = [s for s in self.statuses if not status[s]]
        return not self.pending

    async def wait(self) -> None:
        if not KERNEL_STATUSES & set(self.statuses):
            # hostname and /etc files send no event: a cheap re-check every second
            while not self._update({}):
                await asyncio.sleep(self.recheck)
            return
        async with kernel_monitor(self.netns) as monitor:
            version = 0
            while True:
                # a new result at least every second, so hostname/etcfiles are re-read too
                version, kernel = await monitor.next(version)
                if self._update(kernel):
                    return


def factory(value: list[str], ctx: ConditionContext) -> NetworkCondition:
    return NetworkCondition(value, ctx)
