"""Waiting for several conditions at once, as Talos's ``conditions.WaitForAll`` does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from extvisor.protocols import Condition


class ConditionFailed(Exception):
    pass


async def wait_all(
    conditions: Sequence[Condition],
    on_description: Callable[[str], None],
    recheck: float = 1.0,
) -> None:
    """Wait until every condition is met, reporting the pending ones' description as it changes.

    Met conditions leave the description. The description is re-read when one is met and
    every *recheck* seconds (a condition's own text may change, e.g. "registered" -> "up").
    A condition that raises fails the wait once the others have returned, as in Talos.
    """
    pending: dict[asyncio.Task[None], Condition] = {
        asyncio.ensure_future(c.wait()): c for c in conditions
    }
    errors: list[BaseException] = []
    last = ""

    def describe() -> None:
        nonlocal last
        text = ", ".join(c.describe() for t, c in pending.items() if not t.done())
        if text and text != last:
            last = text
            on_description(text)

    try:
        describe()
        while pending:
            done, _ = await asyncio.wait(pending, timeout=recheck, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pending.pop(task)
                if task.exception() is not None:
                    errors.append(task.exception())  # type: ignore[arg-type]
            if pending:
                describe()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    if errors:
        raise ConditionFailed("; ".join(str(e) or type(e).__name__ for e in errors))
