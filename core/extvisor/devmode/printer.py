"""Dev mode's terminal: each service's lines with a coloured prefix, state changes dimmed."""

from __future__ import annotations

import logging
import os
import sys
import zlib
from typing import IO

from extvisor import hookimpl
from extvisor.documents.findings import Finding
from extvisor.state import ServiceEvent

PRINTER = "extvisor.dev-printer"
MAX_WIDTH = 24  #: longest prefix padded to; longer ids just push their line

# Foreground colours, readable on dark and light terminals; a name always gets the same one.
PALETTE = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94", "91")


def use_colour(stream: IO[str], mode: str = "auto") -> bool:
    """``always``/``never``, or ``auto``: a terminal and no ``NO_COLOR`` (no-color.org)."""
    if mode != "auto":
        return mode == "always"
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Printer:
    """Service output as ``ext-name | line`` and events as ``ext-name [State] msg`` (a plugin)."""

    def __init__(self, stream: IO[str] | None = None, colour: bool = False):
        self.stream = stream or sys.stdout
        self.colour = colour
        self.width = 0

    def known(self, service_id: str) -> None:
        self.width = min(max(self.width, len(service_id)), MAX_WIDTH)

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def prefix(self, service_id: str) -> str:
        code = PALETTE[zlib.crc32(service_id.encode()) % len(PALETTE)]
        return self.paint(service_id.ljust(self.width), code)

    def write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    @hookimpl
    def extvisor_log_lines(self, service_id: str, lines: list[bytes]) -> None:
        self.known(service_id)
        prefix = self.prefix(service_id)
        out = "".join(f"{prefix} | {line.decode(errors='replace').rstrip()}\n" for line in lines)
        self.stream.write(out)
        self.stream.flush()

    @hookimpl
    def extvisor_service_event(self, event: ServiceEvent) -> None:
        self.known(event.service)
        self.write(f"{self.prefix(event.service)} {self.paint(f'[{event.state.value}] {event.msg}', '2')}")

    def format_finding(self, f: Finding) -> str:
        where = f.file
        rel = os.path.relpath(where) if os.path.isabs(where) else where
        if not rel.startswith(".."):
            where = rel
        text = str(Finding(where, f.line, f.column, f.severity, f.field, f.message))
        if self.colour:  # colour only the severity, so the line stays a clickable FILE:LINE:COL
            painted = self.paint(f.severity, "1;31" if f.severity == "error" else "1;33")
            text = text.replace(f": {f.severity}: ", f": {painted}: ", 1)
        return text

    def finding(self, f: Finding) -> None:
        self.write(self.format_finding(f))

    def note(self, message: str) -> None:
        self.write(self.paint(f"extvisor: {message}", "1"))


class LogFormatter(logging.Formatter):
    """The daemon's warnings for a terminal: findings as ``FILE:LINE:COL: error: ...``."""

    def __init__(self, printer: Printer):
        super().__init__()
        self.printer = printer

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], Finding):
            return self.printer.format_finding(args[0])
        level = record.levelname.lower()
        text = f"extvisor: {level}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return self.printer.paint(text, "31" if record.levelno >= logging.ERROR else "33")


def setup_dev_logging(printer: Printer, level: int = logging.WARNING) -> None:
    handler = logging.StreamHandler(printer.stream)
    handler.setFormatter(LogFormatter(printer))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

