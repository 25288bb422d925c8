"""Waiting for a wake-up from the kernel (inotify, netlink) with a timeout."""

from __future__ import annotations

import asyncio


async def wait_and_clear(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until *event* is set, then clear it; ``False`` on timeout."""
    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
    # arrives as the event is set, and the waiter would never stop.
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False
    finally:
        event.clear()
