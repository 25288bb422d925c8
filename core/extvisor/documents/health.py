"""The ``healthcheck:`` key of a service file: Compose's shape, plus tcp, http and notify.

Talos decodes service files non-strictly, so the same file runs there without checks. The
fields and defaults are Compose's (``interval 30s, timeout 30s, retries 3, start_period 0s,
start_interval 5s``); exactly one of ``test``, ``tcp``, ``http`` or ``notify`` says how to
check. Durations are Go's (``1m30s``, ``500ms``), as Compose reads them.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_validator, model_validator,
)  # fmt: skip

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+$"


def parse_duration(value: Any) -> float:
    """Seconds in a Go duration (``30s``, ``1m30s``, ``500ms``); the error is Go's text."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"a duration is text such as 30s or 1m30s (got {type(value).__name__})")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        raise ValueError(f'time: missing unit in duration "{value}" (write 30s, 500ms, 1m30s)')
    text = value.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            if re.fullmatch(r"[0-9.]+", text[pos:]):
                raise ValueError(f'time: missing unit in duration "{text}" (write 30s, 500ms, 1m30s)')
            raise ValueError(f'time: invalid duration "{text}" (write 30s, 500ms, 1m30s)')
        total += float(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if not text:
        raise ValueError('time: invalid duration ""')
    return total


def format_duration(seconds: float) -> str:
    """Go's shortest text for *seconds*: ``30s``, ``1m30s``, ``500ms``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "")
    return out + f"{s:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "1m30s", "500ms"]}),
]


def _truthy(value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("false", "no", "off", "0", ""):
        return False  # YAML scalars stay text until a field reads them
    return bool(value)


class OnFailure(str, enum.Enum):
    """What an unhealthy service gets: restarted under its restart policy, stopped, or only reported."""

    restart = "restart"
    stop = "stop"
    none = "none"


class HealthCheck(BaseModel):
    """``healthcheck:``: how and how often extvisor checks that a running service is healthy."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)  # unknown keys: a warning, as elsewhere

    #: ``[CMD, exe, args...]``, ``[CMD-SHELL, "shell text"]``, ``[NONE]``, or text (= CMD-SHELL)
    test: list[str] | str | None = None
    tcp: str | None = None  #: ``host:port``, dialled from the host network namespace
    http: str | None = None  #: ``http://host:port/path``: a 2xx or 3xx answer is healthy
    notify: bool = False  #: healthy once the service sends ``READY=1`` to ``$NOTIFY_SOCKET``
    interval: Duration = 30.0
    timeout: Duration = 30.0
    retries: int = Field(3, ge=1)
    start_period: Duration = 0.0
    start_interval: Duration = 5.0
    on_failure: OnFailure = OnFailure.restart
    disable: bool = False  #: Compose's spelling of ``test: [NONE]``

    @field_validator("interval", "timeout", "start_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value < 0.001:  # Docker's rule: a zero interval would check without pause
            raise ValueError(f"must be at least 1ms (got {format_duration(value)})")
        return value

    @field_validator("test")
    @classmethod
    def _test_form(cls, value: list[str] | str | None) -> list[str] | str | None:
        if value is None or isinstance(value, str):
            if isinstance(value, str) and not value.strip():
                raise ValueError("test must not be empty")
            return value
        if not value:
            raise ValueError("test must not be empty: [CMD, exe, args...], [CMD-SHELL, text] or [NONE]")
        kind = value[0]
        if kind == "NONE":
            if len(value) != 1:
                raise ValueError("[NONE] takes nothing after it")
        elif kind == "CMD":
            if len(value) < 2 or not value[1]:
                raise ValueError("[CMD] needs the program to run: [CMD, /path/to/check, args...]")
        elif kind == "CMD-SHELL":
            if len(value) != 2 or not value[1].strip():
                raise ValueError('[CMD-SHELL] takes one text: [CMD-SHELL, "curl -f localhost || exit 1"]')
        else:
            raise ValueError(f"test must start with CMD, CMD-SHELL or NONE (got {kind!r})")
        return value

    @field_validator("tcp")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"tcp must be host:port, e.g. 127.0.0.1:9100 (got {value!r})")
        return value

    @field_validator("http")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"http must be an http:// or https:// URL, e.g. http://127.0.0.1:9100/healthz "
                             f"(got {value!r})")
        try:
            parts.port
        except ValueError:
            raise ValueError(f"http: the port of {value!r} is not a number from 1 to 65535") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        # Before the fields: said even when a field is wrong too (every problem at once).
        if not isinstance(data, dict) or _truthy(data.get("disable")):
            return data
        chosen = [k for k in ("test", "tcp", "http", "notify") if _truthy(data.get(k))]
        if len(chosen) != 1:
            got = ", ".join(chosen) or "none"
            raise ValueError(f"a healthcheck sets exactly one of test, tcp, http, notify (got {got})")
        return data

    # -- what the runtime reads ----------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return not self.disable and self.test != ["NONE"]

    @property
    def kind(self) -> str:
        """``exec``, ``tcp``, ``http`` or ``notify``."""
        if self.tcp:
            return "tcp"
        if self.http:
            return "http"
        if self.notify:
            return "notify"
        return "exec"

    @property
    def argv(self) -> list[str]:
        """The command of an exec check, as run in the container (CMD-SHELL through /bin/sh -c)."""
        test = self.test
        if isinstance(test, str):
            return ["/bin/sh", "-c", test]
        if not test or test[0] == "NONE":
            return []
        if test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", test[1]]
        return list(test[1:])

    @property
    def watchdog(self) -> bool:
        """notify: ``WATCHDOG=1`` is expected every ``interval`` (only when the file sets it)."""
        return self.notify and "interval" in self.model_fields_set
