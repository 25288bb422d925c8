"""A problem found in user input, located: ``FILE:LINE:COL: error: field: message``.

One type for every input extvisor reads: service files, ExtensionServiceConfig documents
and extension images (where the place is a path inside the image: ``rootfs/etc/foo: error:
...``, no line).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    file: str  #: the file, or a path inside an image; empty when the input as a whole is meant
    line: int | None  #: 1-based; 0 when unknown; None when a path as a whole is meant (no position)
    column: int | None  #: 1-based; 0 when unknown; None with ``line``
    severity: Severity
    field: str  #: dotted path such as ``container.mounts.0.options``; empty for the document
    message: str

    @classmethod
    def at_path(cls, path: str, severity: Severity, message: str) -> Finding:
        """A finding about a path as a whole (an entry of an image): printed without a position."""
        return cls(path, None, None, severity, "", message)

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.column}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {self.severity}: {what}" if where else f"{self.severity}: {what}"

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
