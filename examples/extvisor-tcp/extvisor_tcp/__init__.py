"""``tcp: host:port``: wait until a TCP port accepts connections.

A third-party condition kind for extvisor. It imports only from ``extvisor`` and is
found through its ``extvisor`` entry point (see pyproject.toml).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from extvisor import ConditionContext, ConditionKind, hookimpl
from pydantic import AfterValidator

RETRY = 0.5  # seconds between attempts
CONNECT_TIMEOUT = 1.0  # a filtered port drops SYNs; do not hang on it


def split_address(value: str) -> tuple[str, int]:
    """``"db:5432"`` -> ``("db", 5432)``; IPv6 hosts in brackets: ``"[::1]:80"``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: put an IPv6 address in brackets, e.g. [::1]:80")
    if not host:
        raise ValueError(f"{value!r} has an empty host")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: port must be a number from 1 to 65535")
    return host, int(port)


def _validate(value: str) -> str:
    split_address(value)  # raises ValueError, which the loader reports with file and line
    return value


# pydantic validates the YAML value against this; it also gives `extvisor schema` its type.
TcpAddress = Annotated[str, AfterValidator(_validate)]


class TcpCondition:
    """What a service waits for: ``describe()`` for the event text, ``wait()`` to block."""

    def __init__(self, address: str):
        self.address = address
        self.host, self.port = split_address(address)
        self.last_error = ""

    def describe(self) -> str:
        return f'TCP port "{self.address}" to accept connections'

    async def wait(self) -> None:
        # Returns when a connection succeeds. Cancellation (the service is stopped while
        # it waits) arrives as CancelledError at an await and needs no handling here.
        while True:
            try:
                # asyncio.timeout rather than wait_for: on Python 3.11 wait_for may swallow
                # a cancellation that arrives just as the connection succeeds.
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    _, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                await asyncio.sleep(RETRY)
                continue
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            return


def make_condition(value: str, ctx: ConditionContext) -> TcpCondition:
    return TcpCondition(value)


@hookimpl
def extvisor_register_conditions():
    yield ConditionKind(
        key="tcp",
        value_type=TcpAddress,
        factory=make_condition,
        description="a TCP port accepts connections, e.g. `tcp: 127.0.0.1:5432`",
    )
