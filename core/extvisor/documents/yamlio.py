"""YAML read the way Talos's Go decoder sees it, with a position for every value.

PyYAML's constructor applies YAML 1.1 implicit typing (``0644`` → 420, ``yes`` → True),
and keeps the last of two equal keys. We only use its composer, which gives the node
graph with marks, and build plain Python ourselves: every scalar stays text, a plain
null (``~``, ``null``, empty) is ``None``, and a duplicate key is an error. Models then
turn text into bools or ints where a field wants them, as Go does for typed fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from extvisor.documents.findings import Finding

Path = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based line, column

NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_VALUES = 100_000  # alias expansion ("billion laughs") stops here
# libyaml is ~15x faster; its nodes, marks and errors are the same as the pure-Python one's.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Abort(Exception):
    """Construction cannot go on (alias loop, expansion too large)."""

    def __init__(self, pos: Pos, message: str):
        self.pos = pos
        self.message = message


@dataclass
class Document:
    """One YAML document: plain data plus where each value and each mapping key is."""

    data: Any
    start: Pos
    index: int = 0
    values: dict[Path, Pos] = field(default_factory=dict)  #: path → position of the value
    keys: dict[Path, Pos] = field(default_factory=dict)  #: path → position of its mapping key
    #: plain scalars YAML reads as booleans (``true``, ``yes``, ``off``...), kept as text in
    #: ``data``; a bool-typed target may take them, as Go's decoder does (not quoted ones).
    bools: dict[Path, bool] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)  #: duplicate keys and the like

    def value_pos(self, path: Path) -> Pos:
        """The value at *path*, else the nearest enclosing value that exists."""
        path = tuple(path)
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), self.start)

    def key_pos(self, path: Path) -> Pos:
        """The mapping key that introduces *path*, else :meth:`value_pos`."""
        return self.keys.get(tuple(path)) or self.value_pos(path)


def _mark(node: Node) -> Pos:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, filename: str, doc: Document):
        self.filename = filename
        self.doc = doc
        self.count = 0
        self.stack: set[int] = set()

    def error(self, pos: Pos, field_path: Path, message: str) -> None:
        self.doc.findings.append(Finding(self.filename, pos[0], pos[1], "error", dotted(field_path), message))

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _Abort(_mark(node), f"document expands to more than {MAX_VALUES} values (aliases?)")
        self.doc.values.setdefault(path, _mark(node))
        if isinstance(node, ScalarNode):
            if node.tag == BOOL_TAG:
                self.doc.bools[path] = str(node.value).lower() in ("true", "yes", "on")
            return None if node.tag == NULL_TAG else str(node.value)
        if id(node) in self.stack:
            raise _Abort(_mark(node), "recursive alias")
        self.stack.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
        finally:
            self.stack.discard(id(node))
        raise _Abort(_mark(node), f"unexpected YAML node {type(node).__name__}")  # pragma: no cover

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merges.append((key_node, value_node))
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(_mark(key_node), path, "a mapping key must be a scalar")
                continue
            key = str(key_node.value)
            if key in out:
                self.error(
                    _mark(key_node), (*path, key), f'mapping key "{key}" already defined at line {first_line[key]}'
                )
                continue
            first_line[key] = _mark(key_node)[0]
            self.doc.keys[(*path, key)] = _mark(key_node)
            out[key] = self.build(value_node, (*path, key))
        # `<<: *base` merges keys the mapping does not set itself (Go's yaml does this too).
        for key_node, value_node in merges:
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.error(_mark(source), path, "a merge key (<<) needs a mapping or a list of mappings")
                    continue
                merged = self.build(source, path)
                for key, value in merged.items():
                    out.setdefault(key, value)
                    self.doc.keys.setdefault((*path, key), _mark(key_node))
        return out


def dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def decode_text(data: bytes | str, filename: str) -> tuple[str | None, Finding | None]:
    """Bytes to text: UTF-8 (or UTF-16 with a BOM, as YAML allows); never raises."""
    if isinstance(data, str):
        return data, None
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16"), None
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        bad = exc.object[exc.start : exc.end]
        return None, Finding(filename, line, column, "error", "", f"not valid UTF-8 (byte 0x{bad[:1].hex()})")


def _line_col(text: str, index: int) -> Pos:
    index = max(0, min(index, len(text)))
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def _yaml_error(exc: Exception, text: str, filename: str) -> Finding:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        parts = [p for p in (exc.context, exc.problem) if p]
        message = "; ".join(parts) or str(exc)
    elif isinstance(exc, yaml.reader.ReaderError):
        # the first occurrence of the bad character (libyaml counts bytes, PyYAML characters)
        bad = text.find(chr(exc.character)) if isinstance(exc.character, int) else -1
        line, col = _line_col(text, bad if bad >= 0 else exc.position)
        message = f"special characters are not allowed (#x{exc.character:04x})"
    elif isinstance(exc, RecursionError):
        line, col, message = 0, 0, "nested too deeply"
    else:  # a PyYAML bug must not become a crash
        line, col, message = 0, 0, f"cannot parse: {type(exc).__name__}: {exc}"
    return Finding(filename, line, col, "error", "", f"YAML syntax error: {message}")


@dataclass
class Parsed:
    """Every document of a stream, and a syntax error that stopped reading (if any).

    ``error_after`` is the number of complete documents read before ``error``.
    """

    documents: list[Document]
    error: Finding | None = None

    @property
    def error_after(self) -> int:
        return len(self.documents)


def parse(data: bytes | str, filename: str) -> Parsed:
    """Parse a YAML stream; never raises. Scalars are text, plain nulls are ``None``."""
    text, problem = decode_text(data, filename)
    if text is None:
        return Parsed([], problem)
    documents: list[Document] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=LOADER)):
            doc = Document(None, _mark(node), index)
            builder = _Builder(filename, doc)
            try:
                doc.data = builder.build(node, ())
            except _Abort as abort:
                doc.data = None
                doc.findings.append(Finding(filename, *abort.pos, "error", "", abort.message))
            except RecursionError:
                doc.data = None
                doc.findings.append(Finding(filename, *doc.start, "error", "", "nested too deeply"))
            documents.append(doc)
    except Exception as exc:  # yaml.YAMLError, RecursionError, or a parser bug
        return Parsed(documents, _yaml_error(exc, text, filename))
    return Parsed(documents)
