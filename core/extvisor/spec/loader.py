"""Reading service specs and ExtensionServiceConfig documents, with every problem located.

Talos decodes a service file non-strictly and validates it (name, restart, entrypoint,
depends); a file that fails is skipped and the others load. We do the same, in Talos's
words, but report all problems of a file at once, each as a :class:`Finding` pointing at
the offending key or value, and warn about unknown keys that Talos drops silently.

Nothing here raises on bad input: functions return findings (``parse_service`` is the one
that raises, and only :class:`LoadError`). ``depends`` keys come from the condition kinds
plugins register, so this module takes the kinds registry as an argument.

This module is also the core's own plugin: ``extvisor_load_services`` reads the config dir.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import types
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from extvisor import hookimpl
from extvisor.spec.findings import Finding, LoadError, SpecWarning
from extvisor.spec.models import NAME_RE, Dependency, ExtensionServiceConfig, ServiceSpec
from extvisor.records import ConditionKind, LoadContext, LoadedService
from extvisor.spec.yamlio import Document, Parsed, Pos, dotted, parse

log = logging.getLogger("extvisor.loader")

Kinds = Mapping[str, ConditionKind]
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
                report.warn((*path, key), f"unknown key `{key}` (ignored, as Talos does){hint}", at="key")
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


def _finish(findings: list[Finding], strict: bool) -> list[Finding]:
    if strict:
        findings = [replace(f, severity="error") if f.severity == "warning" else f for f in findings]
    return sorted(findings, key=lambda f: (f.line, f.column))


def _errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


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


MAX_FILE_BYTES = 1024 * 1024  #: a service or config file larger than this is skipped (docs/architecture.md)
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}  # fmt: skip


def _read(path: Path) -> tuple[bytes | None, Finding | None]:
    """The file's bytes, or why it was skipped: only regular files up to MAX_FILE_BYTES are read.

    Opened non-blocking and checked before reading: a FIFO would hang the daemon, a device
    (``/dev/zero``) never ends, a huge file costs memory for nothing.
    """
    def skipped(why: str) -> tuple[None, Finding]:
        return None, Finding(str(path), 0, 0, "error", "", f"skipped: {why}")

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        return None, Finding(str(path), 0, 0, "error", "", f"cannot read: {exc.strerror or exc}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return skipped(f"{_KINDS.get(stat.S_IFMT(st.st_mode), 'not a regular file')}, not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            return skipped(f"{st.st_size} bytes, larger than the {MAX_FILE_BYTES} byte limit")
        chunks, total = [], 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_FILE_BYTES:  # grew while we read
                return skipped(f"larger than the {MAX_FILE_BYTES} byte limit")
        return b"".join(chunks), None
    except OSError as exc:
        return None, Finding(str(path), 0, 0, "error", "", f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)


def load_service_file(path: str | os.PathLike[str], kinds: Kinds, strict: bool = False) -> LoadedService:
    """Load one service file. Never raises; ``spec`` is ``None`` on errors."""
    data, problem = _read(Path(path))
    if data is None:
        return LoadedService(str(path), None, [problem])  # type: ignore[list-item]
    return load_service_text(data, str(path), kinds, strict)


def parse_service(data: bytes | str, filename: str, kinds: Kinds, strict: bool = False) -> ServiceSpec:
    """Like :func:`load_service_text`, but return the spec or raise :class:`LoadError`."""
    loaded = load_service_text(data, filename, kinds, strict)
    if loaded.spec is None:
        raise LoadError(loaded.findings)
    return loaded.spec


def yaml_files(directory: Path) -> list[Path]:
    """The files Talos reads in a directory: names ending exactly in ``.yaml``, in name order."""
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return []
    return [directory / n for n in entries if n.endswith(".yaml") and not (directory / n).is_dir()]


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
        data, problem = _read(path)
        if data is None:
            out.append(LoadedService(str(path), None, [problem]))  # type: ignore[list-item]
            continue
        loaded, doc = _service(parse(data, str(path)), str(path), kinds, strict)
        if doc is not None:
            positions[id(loaded)] = doc.value_pos(("name",))
        out.append(loaded)
    mark_duplicates(out, positions)
    return out


# -- ExtensionServiceConfig ----------------------------------------------------------


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
    data, problem = _read(Path(path))
    if data is None:
        return [], [problem]  # type: ignore[list-item]
    return load_config_text(data, str(path))


# -- the plugin side -----------------------------------------------------------------


def collect_services(pm: Any, context: LoadContext) -> list[LoadedService]:
    """Call every ``extvisor_load_services`` in plugin-name order; the first of a name wins.

    A plugin that raises is reported (a failed source and a problem in ``pm.problems``) and
    the others go on.
    """
    from extvisor.plugins import Problem

    out: list[LoadedService] = []
    caller = pm.hook.extvisor_load_services
    for impl in sorted(caller.get_hookimpls(), key=lambda i: i.plugin_name):
        try:
            out.extend(impl.function(**{a: context for a in impl.argnames if a == "context"}) or ())
        except Exception as exc:
            message = f"extvisor_load_services raised {exc!r}"
            pm.problems.append(Problem(impl.plugin_name, message))
            log.warning("plugin %r: %s; skipped", impl.plugin_name, message)
            failure = _finding(impl.plugin_name, (0, 0), "error", "", message)
            out.append(LoadedService(f"plugin:{impl.plugin_name}", None, [failure]))
    mark_duplicates(out)
    return out


@hookimpl
def extvisor_load_services(context: LoadContext) -> list[LoadedService]:
    """The config directory, read as Talos reads /usr/local/etc/containers."""
    kinds = context.kinds
    if not kinds:
        from extvisor.plugins import get_plugin_manager

        kinds = get_plugin_manager().condition_kinds()
    if not Path(context.config_dir).is_dir():
        log.info("service directory %s not found; no services from it", context.config_dir)
        return []
    return load_directory(context.config_dir, kinds, context.strict)
