"""A problem found in user input, located in its file: ``FILE:LINE:COL: error: field: message``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  #: 1-based; 0 when unknown
    column: int  #: 1-based; 0 when unknown
    severity: Severity
    field: str  #: dotted path such as ``container.mounts.0.options``; empty for the document
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {self.severity}: {what}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class LoadError(Exception):
    """Input extvisor cannot use; carries every finding (the loader's only error type)."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("\n".join(str(f) for f in findings))


def has_errors(findings: list[Finding], strict: bool = False) -> bool:
    return any(f.severity == "error" or strict for f in findings)


class SpecWarning(UserWarning):
    """Raised with ``warnings.warn`` by a value validator (e.g. a deprecated spelling).

    The loader records it as a warning finding at the value's location.
    """
