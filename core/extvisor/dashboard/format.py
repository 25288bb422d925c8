"""How the dashboard says things: durations, health, state colours, event lines.

Durations and health are talosctl's (``5s``, ``2m3s``; ``?``/``OK``/``Fail``), shared
with ``extvisor services`` so both read the same.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from extvisor.client.format import go_duration, health_text, printable

__all__ = ["go_duration", "health_text", "state_style", "state_text", "since", "event_line", "matches"]

STATE_STYLES = {
    "Running": "bold green",
    "Waiting": "yellow",
    "Starting": "yellow",
    "Preparing": "yellow",
    "Initialized": "yellow",
    "Stopping": "yellow",
    "Failed": "bold red",
    "Finished": "dim",
    "Skipped": "dim",
}
HEALTH_STYLES = {"OK": "green", "Fail": "red", "?": "dim"}


def state_style(state: str) -> str:
    return STATE_STYLES.get(state, "")


def state_text(state: str) -> Text:
    return Text(state, style=state_style(state))


def health_cell(service: dict[str, Any]) -> Text:
    h = health_text(service)
    return Text(h, style=HEALTH_STYLES.get(h, ""))


def since(service: dict[str, Any], now: float) -> Text:
    """Uptime while Running; otherwise how long ago it last changed (``3s ago``)."""
    if service.get("state") == "Running" and service.get("started_at"):
        return Text(f"up {go_duration(now - service['started_at'])}", style="green")
    changed = service.get("changed_at")
    if changed:
        return Text(f"{go_duration(now - changed)} ago", style="dim")
    return Text("")


def last_event(service: dict[str, Any], width: int = 120) -> str:
    """The last event's message on one line, cut to *width* (the events pane has it whole)."""
    events = service.get("events") or []
    if not events:
        return "<none>"
    msg = printable(" ".join(events[-1]["msg"].split()))
    return msg if len(msg) <= width else msg[: width - 1] + "…"


def event_line(event: dict[str, Any], now: float) -> Text:
    """``[State]: msg (12s ago)``, as ``talosctl service ID``; the state coloured."""
    out = Text()
    out.append(f"[{printable(event['state'])}]", style=state_style(event["state"]))
    out.append(f": {printable(event['msg'])} ")
    out.append(f"({go_duration(now - event['ts'])} ago)", style="dim")
    return out


def matches(service: dict[str, Any], needle: str) -> bool:
    """The filter: a case-insensitive substring of the id or the state."""
    needle = needle.strip().lower()
    if not needle:
        return True
    return needle in service["id"].lower() or needle in str(service.get("state", "")).lower()
