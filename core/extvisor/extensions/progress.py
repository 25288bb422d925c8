"""Progress of a pull and install, as plain records a daemon can stream or turn into events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One step. ``stage`` is one of resolve, fetch, verify, unpack, check, install, done."""

    stage: str
    message: str = ""
    done: int = 0  #: bytes fetched, or layers applied
    total: int = 0  #: 0 when unknown
    ref: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        amount = ""
        if self.stage == "fetch" and self.done:
            amount = f" {self.done / 1e6:.1f} MB"
        elif self.total:
            amount = f" {self.done}/{self.total}"
        return f"{self.ref + ': ' if self.ref else ''}{self.stage}{amount}{': ' + self.message if self.message else ''}"


class Cancelled(Exception):
    """The install was cancelled (its client went away); what was written is the caller's to delete."""


ProgressFn = Callable[[Progress], None]


def nothing(_: Progress) -> None:
    pass
