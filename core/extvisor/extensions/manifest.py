"""Talos's own reading of an unpacked extension, in Talos's words.

``load`` is ``pkg/machinery/extensions/load.go`` (exactly ``manifest.yaml`` and ``rootfs``, a
non-strict decode of the first YAML document, ``version: v1alpha1``); ``check_constraint`` is
``validateConstraints`` (blang/semver, against the core of ``--talos-version``);
``check_version_format`` is the extensions validator's list of version shapes; ``ALLOWED_PATHS``
is ``extensions.AllowedPaths`` of Talos 1.12. Sources: docs/extensions.md.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from extvisor.documents.yamlio import parse

from . import semver

TALOS_VERSION = "1.12.11"  #: the Talos release extvisor follows (talos-behaviour notes)
MANIFEST = "manifest.yaml"
ROOTFS = "rootfs"

ALLOWED_PATHS = (
    "/etc/cri/conf.d",
    "/usr/lib/firmware",
    "/usr/lib/modules",
    "/usr/lib/ld-linux-x86-64.so.2",
    "/usr/lib/ld-linux-aarch64.so.1",
    "/usr/bin/ldconfig",
    "/usr/lib/udev/rules.d",
    "/usr/local",
    "/usr/share/glvnd",
    "/usr/share/egl",
    "/etc/vulkan",
)

# The extensions validator's version shapes (Go's \d is ASCII).
_VERSION_FORMATS = [
    re.compile(p, re.ASCII)
    for p in (
        r"^v?(\d+\.\d+\.\d+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)$",
        r"^\d{8}(\.\d)?$",
        r"^(\d+\.\d+\.\d+)-v(\d+\.\d+\.\d+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)(-(\d+)-g([0-9a-f]+)(-dirty)?)?$",
        r"^([0-9a-f]+)-v(\d+\.\d+\.\d+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)(-(\d+)-g([0-9a-f]+)(-dirty)?)?$",
        r"^v?(\d+\.\d+)$",
    )
]


class ExtensionError(Exception):
    """Talos refuses the extension; ``str()`` is Talos's message."""


def go_q(s: str) -> str:
    """Go's ``%q`` closely enough for paths and names."""
    return json.dumps(s, ensure_ascii=False)


def _text(value: Any) -> str:
    """A YAML scalar as Go's string field receives it (numbers keep their text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise ExtensionError(f"error decoding manifest: cannot unmarshal a {type(value).__name__} into a string")
    return str(value)


@dataclass
class Manifest:
    version: str = ""
    name: str = ""
    ext_version: str = ""
    author: str = ""
    description: str = ""
    talos_constraint: str = ""
    extra_info: str = ""

    def metadata(self) -> dict[str, Any]:
        """``metadata`` as Talos's ExtensionStatus shows it."""
        out = {"name": self.name, "version": self.ext_version, "author": self.author,
               "description": self.description, "compatibility": {"talos": {"version": self.talos_constraint}}}  # fmt: skip
        if self.extra_info:
            out["extraInfo"] = self.extra_info
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Extension:
    """An unpacked extension directory: ``manifest.yaml`` and ``rootfs/``."""

    path: Path
    manifest: Manifest
    warnings: list[str] = field(default_factory=list)

    @property
    def rootfs(self) -> Path:
        return self.path / ROOTFS


def parse_manifest(data: bytes) -> Manifest:
    """Decode like ``yaml.NewDecoder(f).Decode``: first document only, unknown keys ignored.

    Scalars stay text (``version: 1.10`` is ``"1.10"``, as in a Go string field).
    """
    parsed = parse(data, MANIFEST)
    if not parsed.documents:
        if parsed.error is not None:
            raise ExtensionError(f"error decoding manifest: {parsed.error.message}")
        raise ExtensionError("EOF")  # Go's Decode on an empty stream
    first = parsed.documents[0]
    if first.findings:
        raise ExtensionError(f"error decoding manifest: {first.findings[0].message}")
    doc = first.data if first.data is not None else {}
    if not isinstance(doc, dict):
        raise ExtensionError("error decoding manifest: the document is not a mapping")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ExtensionError("error decoding manifest: metadata must be a mapping")
    compat = meta.get("compatibility") or {}
    talos = compat.get("talos") if isinstance(compat, dict) else None
    constraint = _text(talos.get("version")) if isinstance(talos, dict) else ""
    manifest = Manifest(
        version=_text(doc.get("version")),
        name=_text(meta.get("name")),
        ext_version=_text(meta.get("version")),
        author=_text(meta.get("author")),
        description=_text(meta.get("description")),
        talos_constraint=constraint,
        extra_info=_text(meta.get("extraInfo")),
    )
    if manifest.version != "v1alpha1":
        raise ExtensionError(f"unsupported manifest version: {go_q(manifest.version)}")
    return manifest


def load(path: str | os.PathLike[str]) -> Extension:
    """Talos's ``extensions.Load``: the directory holds exactly ``manifest.yaml`` and ``rootfs``."""
    path = Path(path)
    manifest: Manifest | None = None
    has_rootfs = False
    for name in sorted(os.listdir(path)):
        if name == MANIFEST:
            try:
                data = (path / name).read_bytes()
            except OSError as exc:
                raise ExtensionError(f"error reading manifest: {exc.strerror}") from None
            manifest = parse_manifest(data)
        elif name == ROOTFS:
            has_rootfs = True
        else:
            raise ExtensionError(f"unexpected file {go_q(name)}")
    if manifest is None:
        raise ExtensionError("extension manifest is missing")
    if not has_rootfs:
        raise ExtensionError("extension rootfs is missing")
    return Extension(path, manifest)


def talos_version(text: str) -> semver.Version:
    """``--talos-version`` as the imager reads it (tolerant; only Major.Minor.Patch kept)."""
    try:
        return semver.parse_tolerant(text).core()
    except semver.SemverError as exc:
        raise ExtensionError(f"invalid Talos version {text!r}: {exc}") from None


def trim(constraint: str) -> str:
    """Talos's ``trim``: drop each ``v`` that precedes a digit (Go's loop, skip included)."""
    i = 0
    while i < len(constraint):
        if constraint[i] == "v" and i + 1 < len(constraint) and "0" <= constraint[i + 1] <= "9":
            constraint = constraint[:i] + constraint[i + 1 :]
        i += 1
    return constraint


def check_constraint(manifest: Manifest, version: semver.Version) -> None:
    constraint = manifest.talos_constraint
    if not constraint:
        return
    try:
        accepts = semver.parse_range(trim(constraint))
    except semver.SemverError as exc:
        raise ExtensionError(f"error parsing Talos version constraint: {exc}") from None
    if not accepts(version.core()):
        raise ExtensionError(f"version constraint {constraint} can't be satisfied with Talos version {version}")


def check_version_format(manifest: Manifest) -> None:
    if not any(p.match(manifest.ext_version) for p in _VERSION_FORMATS):
        raise ExtensionError(f"invalid version format {manifest.ext_version} for extension: {manifest.name}")


def allowed(path: str) -> bool:
    """Whether a non-directory at *path* (``/`` + path in rootfs) may be in an extension.

    Talos's check is a plain string prefix: ``/usr/localfoo`` passes too.
    """
    return any(path.startswith(p) for p in ALLOWED_PATHS)
