"""ExtensionServiceConfig documents: every valid one of a machine-config stream, and every finding."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from extvisor.documents.findings import Finding
from extvisor.documents.models import ExtensionServiceConfig
from extvisor.documents.yamlio import Parsed, parse
from extvisor.documents.files import read_file
from extvisor.documents.report import CONFIG_KIND, _describe, _errors, _finding, _finish, _prepare, _Report


def is_config_stream(parsed: Parsed) -> bool:
    """A machine-config stream has ``kind`` in some document; a service spec never does."""
    return any(isinstance(d.data, dict) and "kind" in d.data for d in parsed.documents)


def _configs(parsed: Parsed, filename: str) -> tuple[list[ExtensionServiceConfig], list[Finding]]:
    findings: list[Finding] = [parsed.error] if parsed.error else []
    configs: list[ExtensionServiceConfig] = []
    seen: set[str] = set()
    for doc in parsed.documents:
        findings.extend(doc.findings)
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            message = f"a document must be a mapping (got {_describe(doc.data)})"
            findings.append(_finding(filename, doc.start, "error", "", message))
            continue
        if doc.data.get("kind") != CONFIG_KIND:
            continue  # other machine-config documents are not ours
        report = _Report(filename, doc)
        try:
            data = _prepare(doc.data, ExtensionServiceConfig, (), report, lenient=False)
            config = ExtensionServiceConfig.model_validate(data)
        except ValidationError as exc:
            report.pydantic(exc)
            config = None
        if config is not None and config.name in seen:
            report.error(("name",), f"duplicate document: {CONFIG_KIND}/{config.name}")
        findings.extend(report.findings)
        if config is not None and not _errors(doc.findings + report.findings):
            seen.add(config.name)
            configs.append(config)
    return configs, _finish(findings, False)


def load_config_text(data: bytes | str, filename: str) -> tuple[list[ExtensionServiceConfig], list[Finding]]:
    """The valid ExtensionServiceConfig documents of a stream, and every finding. Never raises."""
    return _configs(parse(data, filename), filename)


def load_config_documents(path: str | os.PathLike[str]) -> tuple[list[ExtensionServiceConfig], list[Finding]]:
    data, problem = read_file(Path(path))
    if data is None:
        return [], [problem]  # type: ignore[list-item]
    return load_config_text(data, str(path))
