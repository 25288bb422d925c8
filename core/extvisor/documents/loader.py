"""Reading service specs and ExtensionServiceConfig documents, with every problem located.

Talos decodes a service file non-strictly and validates it (name, restart, entrypoint,
depends); a file that fails is skipped and the others load. We do the same, in Talos's
words, but report all problems of a file at once, each as a :class:`Finding` pointing at
the offending key or value, and warn about unknown keys that Talos drops silently.

Nothing here raises on bad input: functions return findings (``parse_service`` is the one
that raises, and only :class:`LoadError`). ``depends`` keys come from the condition kinds
plugins register, so this module takes the kinds registry as an argument.

The core's own ``extvisor_load_services`` (the config directory) is ``default_loader``; the
plugin manager joins every source (``PluginManager.load_services``). Findings and the
shaping of data live in ``report``, file reading in ``files``, ExtensionServiceConfig
documents in ``configdocs``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from extvisor.documents.findings import Finding, LoadError, SpecWarning
from extvisor.documents.models import NAME_RE, Dependency, ServiceSpec
from extvisor.records import ConditionKind, LoadContext, LoadedService
from extvisor.documents.yamlio import Document, Parsed, Pos, parse

# Split out of this module; importers of these names from here keep working.
from extvisor.documents.configdocs import is_config_stream, load_config_documents, load_config_text  # noqa: E402,F401
from extvisor.documents.files import MAX_FILE_BYTES, read_file, yaml_files  # noqa: E402,F401
from extvisor.documents.report import (  # noqa: E402,F401
    CONFIG_KIND, NO_CONFIG, NO_FILE, NO_YAML, RESTARTS, _describe, _errors, _finding, _finish, _prepare, _q, _Report,
)  # fmt: skip

Kinds = Mapping[str, ConditionKind]


# -- service specs -------------------------------------------------------------------

_adapters: dict[int, tuple[Any, TypeAdapter]] = {}


def _adapter(value_type: Any) -> TypeAdapter:
    cached = _adapters.get(id(value_type))
    if cached is None or cached[0] is not value_type:
        cached = (value_type, TypeAdapter(value_type))
        _adapters[id(value_type)] = cached
    return cached[1]


def _validate_value(kind: ConditionKind, value: Any, path: tuple, report: _Report) -> tuple[bool, Any]:
    """Validate a dependency's value against its kind; SpecWarnings become warnings there."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = _adapter(kind.value_type).validate_python(value)
        except ValidationError as exc:
            # Go decodes by the target type: a plain `true` may fill a (strict) bool.
            if path not in report.doc.bools:
                report.pydantic(exc, path)
                return False, None
            try:
                result = _adapter(kind.value_type).validate_python(report.doc.bools[path])
            except ValidationError:
                report.pydantic(exc, path)
                return False, None
        except Exception as exc:  # a plugin's validator is broken; the file is not
            report.error(path, f"validating `{kind.key}` failed: {type(exc).__name__}: {exc}")
            return False, None
    for w in caught:
        if issubclass(w.category, SpecWarning):
            report.warn(path, str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return True, result


def _depends(raw: Any, kinds: Kinds, report: _Report) -> list[Dependency] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        report.error(("depends",), f"depends must be a list (got {_describe(raw)})")
        return None
    aliases = {alias: kind for kind in kinds.values() for alias in kind.aliases}
    known = ", ".join(sorted(kinds)) or "none registered"
    out: list[Dependency] = []
    for i, entry in enumerate(raw):
        path = ("depends", i)
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            report.error(path, f"a dependency is a mapping with one kind, e.g. `service: cri` (got {_describe(entry)})")
            continue
        chosen: list[tuple[str, Any]] = []
        failed = False
        for key, value in entry.items():
            kind = kinds.get(key)
            if kind is None and key in aliases:
                kind = aliases[key]
                report.warn((*path, key), f"`{key}` is deprecated, use `{kind.key}`", at="key")
            if kind is None:
                report.error((*path, key), f"unknown dependency kind `{key}` (known: {known})", at="key")
                failed = True
                continue
            if value is None:
                continue  # Go's zero value: unset
            ok, result = _validate_value(kind, value, (*path, key), report)
            failed = failed or not ok
            try:
                if ok and kind.is_set(result):
                    chosen.append((kind.key, result))
            except Exception as exc:
                report.error((*path, key), f"checking `{kind.key}` failed: {type(exc).__name__}: {exc}")
                failed = True
        if len(chosen) > 1:
            report.error(path, "more than a single dependency is set")
        elif not chosen and not failed:
            report.error(path, "no dependency specified")
        elif chosen and not failed:
            out.append(Dependency(kind=chosen[0][0], value=chosen[0][1]))
    return out


def _talos_rules(data: dict[str, Any], report: _Report) -> None:
    """``Spec.Validate()``: name, restart, entrypoint (depends are checked on their own)."""
    name = data.get("name", "")
    if isinstance(name, str) and not NAME_RE.fullmatch(name):
        report.error(("name",), f"name {_q(name)} is invalid (must match {NAME_RE.pattern})")
    if "restart" not in data:
        report.error(("restart",), f"restart is required (one of {RESTARTS})", at="parent")
    container = data.get("container", {})
    entrypoint = container.get("entrypoint", "") if isinstance(container, dict) else None
    if entrypoint == "":
        report.error(("container", "entrypoint"), "container entrypoint can't be empty")
    if isinstance(container, dict) and container.get("environmentFile"):
        report.warn(
            ("container", "environmentFile"),
            "`environmentFile` is deprecated (Talos 1.7), use ExtensionServiceConfig `environment`",
            at="key",
        )


def _health_rules(data: dict[str, Any], report: _Report) -> None:
    """A ``CMD`` check's program without a ``/`` is looked up in a PATH the service may not set."""
    check = data.get("healthcheck")
    test = check.get("test") if isinstance(check, dict) else None
    if not isinstance(test, list) or len(test) < 2 or test[0] != "CMD" or not isinstance(test[1], str):
        return
    container = data.get("container")
    env = container.get("environment") if isinstance(container, dict) else None
    if "/" in test[1] or any(isinstance(e, str) and e.startswith("PATH=") for e in env or ()):
        return
    report.warn(("healthcheck", "test", 1), f"`{test[1]}` is looked up in the service's PATH, which it does not set: "
                "write its absolute path, or use CMD-SHELL")


def _service(parsed: Parsed, filename: str, kinds: Kinds, strict: bool) -> tuple[LoadedService, Document | None]:
    findings: list[Finding] = []
    docs = parsed.documents
    if parsed.error is not None:
        if docs:  # Talos stops after the first document and never sees this
            message = parsed.error.message + " (after the first document, ignored)"
            findings.append(replace(parsed.error, severity="warning", message=message))
        else:
            findings.append(parsed.error)
    if not docs:
        if parsed.error is None:
            findings.append(Finding(filename, 1, 1, "error", "", "empty file: no YAML document"))
        return LoadedService(filename, None, _finish(findings, strict)), None
    doc = docs[0]
    extra = [d for d in docs[1:] if d.data is not None]
    if extra:
        message = f"{len(extra)} more document(s) after the first ignored, as Talos does"
        findings.append(_finding(filename, extra[0].start, "warning", "", message))
    findings.extend(doc.findings)
    if not isinstance(doc.data, dict):
        message = f"a service spec must be a mapping (got {_describe(doc.data)})"
        findings.append(_finding(filename, doc.start, "error", "", message))
        return LoadedService(filename, None, _finish(findings, strict)), doc
    report = _Report(filename, doc)
    body = {k: v for k, v in doc.data.items() if k != "depends"}
    cleaned = _prepare(body, ServiceSpec, (), report, lenient=True)
    _talos_rules(cleaned, report)
    _health_rules(cleaned, report)
    deps = _depends(doc.data.get("depends"), kinds, report)
    spec: ServiceSpec | None = None
    try:
        spec = ServiceSpec.model_validate(cleaned)
        spec.depends = deps
    except ValidationError as exc:
        report.pydantic(exc)
    findings = _finish(findings + report.findings, strict)
    if _errors(findings):
        spec = None
    return LoadedService(filename, spec, findings), doc


def load_service_text(data: bytes | str, filename: str, kinds: Kinds, strict: bool = False) -> LoadedService:
    """Load one service spec from bytes or text. Never raises; ``spec`` is ``None`` on errors."""
    return _service(parse(data, filename), filename, kinds, strict)[0]


def load_service_file(path: str | os.PathLike[str], kinds: Kinds, strict: bool = False) -> LoadedService:
    """Load one service file. Never raises; ``spec`` is ``None`` on errors."""
    data, problem = read_file(Path(path))
    if data is None:
        return LoadedService(str(path), None, [problem])  # type: ignore[list-item]
    return load_service_text(data, str(path), kinds, strict)


def parse_service(data: bytes | str, filename: str, kinds: Kinds, strict: bool = False) -> ServiceSpec:
    """Like :func:`load_service_text`, but return the spec or raise :class:`LoadError`."""
    loaded = load_service_text(data, filename, kinds, strict)
    if loaded.spec is None:
        raise LoadError(loaded.findings)
    return loaded.spec


def _duplicate(loaded: LoadedService, first: str, pos: Pos, severity: str = "error") -> None:
    name = loaded.spec.name if loaded.spec else ""
    message = f"duplicate service spec: name {name} already declared by {first}"
    loaded.findings.append(_finding(loaded.source, pos, severity, "name", message))
    if severity == "error":
        loaded.spec = None


def mark_duplicates(services: list[LoadedService], positions: Mapping[int, Pos] | None = None) -> None:
    """The first spec of each name wins; later ones get an error and lose their spec."""
    seen: dict[str, str] = {}
    for loaded in services:
        if loaded.spec is None:
            continue
        if loaded.spec.name in seen:
            _duplicate(loaded, seen[loaded.spec.name], (positions or {}).get(id(loaded), (0, 0)))
        else:
            seen[loaded.spec.name] = loaded.source


def load_directory(config_dir: str | os.PathLike[str], kinds: Kinds, strict: bool = False) -> list[LoadedService]:
    """Every ``*.yaml`` of *config_dir* in name order, as Talos reads them; duplicates reported."""
    out: list[LoadedService] = []
    positions: dict[int, Pos] = {}
    for path in yaml_files(Path(config_dir)):
        data, problem = read_file(path)
        if data is None:
            out.append(LoadedService(str(path), None, [problem]))  # type: ignore[list-item]
            continue
        loaded, doc = _service(parse(data, str(path)), str(path), kinds, strict)
        if doc is not None:
            positions[id(loaded)] = doc.value_pos(("name",))
        out.append(loaded)
    mark_duplicates(out, positions)
    return out


# -- joined sources ------------------------------------------------------------------


def collect_services(pm: Any, context: LoadContext) -> list[LoadedService]:
    """Every source's services, as ``pm.load_services(context)`` joins them (kept for 0.3 callers).

    The plugin manager does the joining (:meth:`extvisor.plugins.PluginManager.load_services`).
    """
    return pm.load_services(context)
