"""Plain-text formatting of what the API answers, shared by the CLI and the dashboard."""

from __future__ import annotations

import re
from typing import Any

# C0 controls, DEL and C1 controls: ESC starts a terminal's escape sequences (an OSC sets the
# window title, even when our output is piped to a terminal later), and 0x9b/0x9d are CSI
# and OSC on their own in some terminals. Newlines and tabs would break a table or a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _caret(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x7F:
        return "^?"
    if code >= 0x80:
        return "M-^" + chr(code - 0x80 + 0x40)
    return "^" + chr(code + 0x40)


def printable(text: str) -> str:
    """*text* with its control characters shown as ``cat -v`` shows them (ESC as ``^[``).

    For what another machine sends (ids, messages) on its way to a terminal, as kubectl does
    since CVE-2021-25743.
    """
    return _CONTROL.sub(_caret, text)


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
    """Tab-aligned columns with 3 spaces of padding, as talosctl's tabwriter; control characters shown."""
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def human_bytes(n: float) -> str:
    """1536 -> "1.5 MiB"-style sizes, as top and talosctl show memory."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
