"""Plain-text formatting of what the API answers, shared by the CLI and the dashboard."""

from __future__ import annotations

from typing import Any


def go_duration(seconds: float) -> str:
    """Go's time.Duration text rounded to seconds: 5s, 2m3s, 1h0m5s."""
    s = int(round(max(seconds, 0)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def health_text(service: dict[str, Any]) -> str:
    health = service.get("health") or {}
    if health.get("unknown", True):
        return "?"
    return "OK" if health.get("healthy") else "Fail"


def table(rows: list[list[str]]) -> str:
    """Tab-aligned columns with 3 spaces of padding, as talosctl's tabwriter."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def human_bytes(n: float) -> str:
    """1536 -> "1.5 MiB"-style sizes, as top and talosctl show memory."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
