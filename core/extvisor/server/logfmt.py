"""The daemon's own log: logfmt (``key=value``, one event a line, greppable) or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time


class LogfmtFormatter(logging.Formatter):
    """``time=... level=... logger=... msg="..." service=...``: one event a line, greppable."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("service", "state"):
            if hasattr(record, key):
                fields[key] = getattr(record, key)
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_quote(str(v))}" for k, v in fields.items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": record.created, "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for key in ("service", "state"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        return json.dumps(out)


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "-_./:+@" for c in value):
        return value
    return json.dumps(value)


def setup_logging(fmt: str = "logfmt", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
