"""Findings while a document is read: each problem located at its key or value, in Talos's words.

Also the shaping of raw YAML data for the pydantic models (unknown keys become warnings with
a "did you mean" hint; Talos drops them silently), shared by service files and
ExtensionServiceConfig documents.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from extvisor.documents.findings import Finding
from extvisor.documents.yamlio import Document, Pos, dotted

RESTARTS = "always, never, untilSuccess"
CONFIG_KIND = "ExtensionServiceConfig"
NO_YAML = "no *.yaml files here"
NO_FILE = "no such file or directory"
NO_CONFIG = f"no {CONFIG_KIND} document (other kinds are not checked)"


def _finding(file: str, pos: Pos, severity: str, field: str, message: str) -> Finding:
    return Finding(file, pos[0], pos[1], severity, field, message)  # type: ignore[arg-type]


def _q(value: str) -> str:
    """Quote like Go's ``%q``: ``"FOO"``."""
    return json.dumps(value, ensure_ascii=False)


class _Report:
    """Findings for one document; turns a data path into the position of its key or value."""

    def __init__(self, filename: str, doc: Document):
        self.filename = filename
        self.doc = doc
        self.findings: list[Finding] = []

    def add(self, severity: str, path: tuple, message: str, at: str = "value") -> None:
        path = tuple(path)
        if at == "key":
            pos = self.doc.key_pos(path)
        elif at == "parent":
            pos = self.doc.value_pos(path[:-1])
        else:
            pos = self.doc.values.get(path) or self.doc.key_pos(path)
        self.findings.append(_finding(self.filename, pos, severity, dotted(path), message))

    def error(self, path: tuple, message: str, at: str = "value") -> None:
        self.add("error", path, message, at)

    def warn(self, path: tuple, message: str, at: str = "value") -> None:
        self.add("warning", path, message, at)

    def pydantic(self, exc: ValidationError, prefix: tuple = ()) -> None:
        for err in exc.errors(include_url=False):
            loc = (*prefix, *err["loc"])
            kind = err["type"]
            if kind == "missing":
                self.error(loc, f"missing {loc[-1]}", at="parent")
            elif kind == "extra_forbidden":
                self.error(loc, f"unknown key `{loc[-1]}`", at="key")
            else:
                self.error(loc, _message(err, loc))


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return _q(value)
    if value is None:
        return "null"
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else repr(value)


def _message(err: Any, loc: tuple) -> str:
    if loc == ("restart",):
        return f"restart kind is invalid: {_describe(err.get('input'))} (one of {RESTARTS})"
    if err["type"] in ("value_error", "assertion_error") and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    return f"{err['msg']} (got {_describe(err.get('input'))})"


# -- shaping raw data for the models -------------------------------------------------


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds, and whether it holds a list of them."""
    many = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None, False
            annotation = args[0]
        elif origin is list and not many:
            many, annotation = True, get_args(annotation)[0]
        else:
            break
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, many
    return None, False


def _prepare(data: Any, model: type[BaseModel], path: tuple, report: _Report, lenient: bool) -> Any:
    """Drop null values (Go leaves the zero value) and, when *lenient*, unknown keys with a warning."""
    if not isinstance(data, dict):
        return data
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        fields[name] = info
        if info.alias:
            fields[info.alias] = info
    out: dict[str, Any] = {}
    for key, value in data.items():
        info = fields.get(key)
        if info is None:
            if lenient:
                hint = _did_you_mean(str(key), model, fields)
                why = "ignored" if path[:1] == ("healthcheck",) else "ignored, as Talos does"  # extvisor's own key
                report.warn((*path, key), f"unknown key `{key}` ({why}){hint}", at="key")
            else:
                out[key] = value  # the strict model reports it
            continue
        if value is None:
            continue
        sub, many = _model_of(info.annotation)
        if sub is not None and many and isinstance(value, list):
            value = [_prepare(v, sub, (*path, key, i), report, lenient) for i, v in enumerate(value)]
        elif sub is not None and not many:
            value = _prepare(value, sub, (*path, key), report, lenient)
        out[key] = value
    return out


def _did_you_mean(key: str, model: type[BaseModel], fields: Mapping[str, Any]) -> str:
    """A typo (``optons``) or a key one level off (``mounts`` at the top) is usually what it is."""
    import difflib

    close = difflib.get_close_matches(key, [str(f) for f in fields], n=1, cutoff=0.75)
    if close:
        return f"; did you mean `{close[0]}`?"
    for name, info in model.model_fields.items():
        sub, _ = _model_of(info.annotation)
        if sub is not None and key in sub.model_fields:
            return f"; did you mean `{name}.{key}` (indented under `{name}:`)?"
    return ""


def _finish(findings: list[Finding], strict: bool) -> list[Finding]:
    if strict:
        findings = [replace(f, severity="error") if f.severity == "warning" else f for f in findings]
    return sorted(findings, key=lambda f: (f.line, f.column))


def _errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
