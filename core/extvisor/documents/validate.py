"""``extvisor validate``: files and directories of either document kind, every problem located.

A file holding a ``SystemExtensionsConfig`` document declares a node (``documents/declared.py``);
else it is an ExtensionServiceConfig stream when one of its documents has ``kind``; otherwise
it is a service spec. Checking goes on past bad files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extvisor.documents.findings import Finding
from extvisor.documents.configdocs import _configs, is_config_stream
from extvisor.documents.declared import is_declared, read_declared
from extvisor.documents.imageverify import KIND, verification_documents
from extvisor.documents.files import read_file, yaml_files
from extvisor.documents.loader import Kinds, _service  # the loader's own reading: one reading of a file, two uses
from extvisor.documents.report import CONFIG_KIND, NO_CONFIG, NO_FILE, NO_YAML, _errors, _finding, _finish
from extvisor.documents.yamlio import Pos, parse



@dataclass
class FileResult:
    """What ``extvisor validate`` found in one file."""

    file: str
    kind: str  #: ``service``, ``config``, ``declared`` (a node's SystemExtensionsConfig file) or ``unknown``
    findings: list[Finding] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    name_pos: Pos = (0, 0)  #: where a service's ``name`` is, for a duplicate report
    verification_at: Pos = (0, 0)  #: where its ImageVerificationConfig is (a node takes one)

    @property
    def ok(self) -> bool:
        return not _errors(self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "kind": self.kind, "ok": self.ok, "names": self.names}


def validate_file(path: Path, kinds: Kinds, strict: bool = False) -> FileResult:
    data, problem = read_file(path)
    if data is None:
        return FileResult(str(path), "unknown", [problem])  # type: ignore[list-item]
    parsed = parse(data, str(path))
    if is_declared(parsed):  # a declared node: SystemExtensionsConfig and its config documents
        node, findings = read_declared(parsed, str(path))
        names = [c.name for c in node.configs] if node else []
        return FileResult(str(path), "declared", _finish(findings, strict), names)
    if is_config_stream(parsed):
        configs, findings = _configs(parsed, str(path))
        verifications, more, held = verification_documents(parsed, str(path))
        findings = findings + more
        ours = held or any(isinstance(d.data, dict) and d.data.get("kind") == CONFIG_KIND for d in parsed.documents)
        if not findings and not ours:
            findings = [_finding(str(path), (1, 1), "warning", "", NO_CONFIG)]
        at = next(((d.start[0], 1) for d in parsed.documents if isinstance(d.data, dict) and d.data.get("kind") == KIND), (0, 0))
        return FileResult(str(path), "config", _finish(findings, strict), [c.name for c in configs], verification_at=at)
    kind = "service" if parsed.documents else "unknown"
    loaded, doc = _service(parsed, str(path), kinds, strict)
    names = [loaded.spec.name] if loaded.spec else []
    return FileResult(str(path), kind, loaded.findings, names, doc.value_pos(("name",)) if doc else (0, 0))


def validate_files(paths: Iterable[str | os.PathLike[str]], kinds: Kinds, strict: bool = False) -> list[FileResult]:
    """Validate files and directories (their ``*.yaml``), going on past bad ones.

    Two specs with one ``name`` in one directory (or among the files named alone) are an
    error on the later one, as in Talos and the daemon: the first in order is loaded, the
    later one skipped ("duplicate service spec"). Across directories, a warning.
    """
    results: list[FileResult] = []
    group: dict[int, str] = {}  # id(result) -> the directory it was read from ("" for files named alone)
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = yaml_files(path)
            if not files:
                results.append(FileResult(str(path), "unknown", [_finding(str(path), (0, 0), "warning", "", NO_YAML)]))
            for f in files:
                results.append(validate_file(f, kinds, strict))
                group[id(results[-1])] = str(path)
        elif path.exists() or path.is_symlink():
            results.append(validate_file(path, kinds, strict))
            group[id(results[-1])] = ""
        else:
            results.append(FileResult(str(path), "unknown", [_finding(str(path), (0, 0), "error", "", NO_FILE)]))
    verifying = [r for r in results if r.verification_at != (0, 0)]
    for result in verifying[1:]:  # the files given are one node's documents
        message = (f"a second ImageVerificationConfig document (the first is at {verifying[0].file}:"
                   f"{verifying[0].verification_at[0]}): a node takes at most one")  # fmt: skip
        result.findings.append(_finding(result.file, result.verification_at, "error", "", message))
    first: dict[str, FileResult] = {}
    for result in results:
        if result.kind != "service" or not result.names:
            continue
        name = result.names[0]
        if name in first:
            # Talos reads one directory: there the later file is skipped, an error. Across the
            # directories given here both may never be loaded together: a warning.
            together = group.get(id(result)) == group.get(id(first[name]))
            severity = "error" if together or strict else "warning"
            message = f"duplicate service spec: name {name} already declared by {first[name].file}"
            result.findings.append(_finding(result.file, result.name_pos, severity, "name", message))
        else:
            first[name] = result
    return results


def validate_paths(paths: Iterable[str | os.PathLike[str]], kinds: Kinds, strict: bool = False) -> list[Finding]:
    return [f for r in validate_files(paths, kinds, strict) for f in r.findings]
