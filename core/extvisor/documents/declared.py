"""A declared node: one multi-document YAML file saying what a node runs.

It holds one ``SystemExtensionsConfig`` (extvisor's own document: the extension images), any
number of Talos ``ExtensionServiceConfig`` documents, taken as Talos reads them, and at most one
``ImageVerificationConfig`` (read by ``imageverify``, as in the service-config directory)::

    apiVersion: v1alpha1
    kind: SystemExtensionsConfig
    extensions:
      - image: registry.example.com/extensions/nut-client:2.8.2   # pinned to its digest when applied
      - image: registry.example.com/extensions/lldpd@sha256:...
    ---
    apiVersion: v1alpha1
    kind: ExtensionServiceConfig
    name: nut-client
    environment: [UPS_NAME=ups]

Every problem is a :class:`Finding` at its file and line; nothing here reaches a registry
(the daemon resolves tags: ``server/declared``). Masking secrets for diffs and for readers
lives here too, as it is about the documents' shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from extvisor.documents.findings import Finding
from extvisor.documents.imageverify import ImageVerification
from extvisor.documents.imageverify import _document as verification_document
from extvisor.documents.models import ExtensionServiceConfig, must_be
from extvisor.documents.report import CONFIG_KIND, _describe, _errors, _finding, _finish, _prepare, _Report
from extvisor.documents.yamlio import Parsed, parse

DECLARED_KIND = "SystemExtensionsConfig"
VERIFICATION_KIND = "ImageVerificationConfig"
#: kinds a declared file may hold
KINDS = (DECLARED_KIND, CONFIG_KIND, VERIFICATION_KIND)
MASK = "***"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_LOCAL = ("oci", "oci-archive", "docker-archive", "tarball")


def split_image(text: str) -> tuple[str, str, str, str]:
    """``(transport, repository or path, tag, digest)`` of an image reference; ValueError if malformed.

    Docker references are ``[docker://]HOST[:PORT]/REPO[:TAG][@sha256:HEX]``; local ones
    (``oci:/DIR[:TAG]``, ``oci-archive:/FILE``, ``docker-archive:/FILE``, ``tarball:/FILE``) are read
    on the node, so their path must be absolute.
    """
    text = text.strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"invalid image reference {text!r}: empty or holds a space")
    head, sep, rest = text.partition(":")
    if sep and head in _LOCAL:
        path, _, digest = rest.partition("@")
        if not path.startswith("/"):
            raise ValueError(f"{text}: a local image path must be absolute (it is read on the node)")
        if digest and not _DIGEST.match(digest):
            raise ValueError(f"invalid image reference {text!r}: a digest is sha256: and 64 hex digits")
        return head, path, "", digest
    if sep and head in ("dir", "containers-storage", "docker-daemon", "ostree", "sif", "atomic"):
        raise ValueError(f"unsupported transport {head!r} in {text!r} (docker://, oci:, oci-archive:, "
                         "docker-archive:, tarball:)")  # fmt: skip
    target = text.removeprefix("docker://")
    name, _, digest = target.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ValueError(f"invalid image reference {text!r}: a digest is sha256: and 64 hex digits")
    if "/" not in name or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"invalid image reference {text!r}: expected HOST/REPO:TAG or HOST/REPO@sha256:...")
    last = name.rsplit("/", 1)[1]
    tag = ""
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not tag:
            raise ValueError(f"invalid image reference {text!r}: empty tag")
    if not tag and not digest:
        tag = "latest"
    return "docker", name, tag, digest


def pinned(text: str, digest: str) -> str:
    """The reference with its digest: ``HOST/REPO:TAG@sha256:...`` (the tag kept as a note)."""
    transport, name, tag, _ = split_image(text)
    if transport != "docker":
        return f"{transport}:{name}@{digest}"
    prefix = "docker://" if text.strip().startswith("docker://") else ""
    return f"{prefix}{name}{':' + tag if tag else ''}@{digest}"


def fetch_ref(text: str) -> str:
    """What skopeo is given: a docker reference by digest alone when it has one (skopeo takes
    no tag beside a digest), a local one without its digest (checked after reading)."""
    transport, name, tag, digest = split_image(text)
    if transport != "docker":
        return f"{transport}:{name}"
    if digest:
        return f"docker://{name}@{digest}"
    return f"docker://{name}:{tag}"


class DeclaredImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str

    @field_validator("image")
    @classmethod
    def _ref(cls, value: str) -> str:
        split_image(value)
        return value.strip()


class SystemExtensionsConfig(BaseModel):
    """``kind: SystemExtensionsConfig``: the extension images a node runs, in stacking order."""

    model_config = ConfigDict(extra="forbid")

    apiVersion: str
    kind: str
    extensions: list[DeclaredImage] = []

    _v1alpha1 = field_validator("apiVersion")(classmethod(lambda cls, v: must_be("apiVersion", "v1alpha1", v)))


@dataclass
class DeclaredNode:
    """What a declared file says, valid (errors are findings, never an instance)."""

    filename: str
    images: list[str] = field(default_factory=list)  #: as written, in order
    lines: list[int] = field(default_factory=list)  #: the line of each image
    configs: list[ExtensionServiceConfig] = field(default_factory=list)
    raw_configs: list[dict[str, Any]] = field(default_factory=list)  #: the documents as read, for writing
    verification: dict[str, Any] | None = None  #: the ImageVerificationConfig as read, for writing
    verification_doc: ImageVerification | None = None  #: the same, understood

    def config_text(self) -> str:
        """The configuration documents as the node's config file holds them ("" for none)."""
        import yaml

        docs = [*self.raw_configs, *([self.verification] if self.verification else [])]
        return "".join("---\n" * (i > 0) + yaml.safe_dump(d, sort_keys=False) for i, d in enumerate(docs))

    def render(self, images: list[str] | None = None) -> str:
        """The whole file again (with *images*, e.g. pinned to digests, in place of the written ones)."""
        import yaml

        head = {"apiVersion": "v1alpha1", "kind": DECLARED_KIND,
                "extensions": [{"image": i} for i in (self.images if images is None else images)]}  # fmt: skip
        body = self.config_text()
        return yaml.safe_dump(head, sort_keys=False) + ("---\n" + body if body else "")


def is_declared(parsed: Parsed) -> bool:
    return any(isinstance(d.data, dict) and d.data.get("kind") == DECLARED_KIND for d in parsed.documents)


def load_declared(data: bytes | str, filename: str) -> tuple[DeclaredNode | None, list[Finding]]:
    """Read a declared file; (None, findings) when anything is an error. Never raises."""
    return read_declared(parse(data, filename), filename)


def read_declared(parsed: Parsed, filename: str) -> tuple[DeclaredNode | None, list[Finding]]:
    findings: list[Finding] = [parsed.error] if parsed.error else []
    node = DeclaredNode(filename)
    head: tuple[int, int] | None = None
    names: dict[str, int] = {}
    repos: dict[str, int] = {}
    for doc in parsed.documents:
        findings.extend(doc.findings)
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            findings.append(_finding(filename, doc.start, "error", "", f"a document must be a mapping (got {_describe(doc.data)})"))
            continue
        kind = doc.data.get("kind")
        report = _Report(filename, doc)
        if kind == DECLARED_KIND:
            if head is not None:
                report.error(("kind",), f"a second {DECLARED_KIND} document (the first is at line {head[0]})")
            else:
                head = doc.start
                _read_head(doc, report, node, repos)
        elif kind == CONFIG_KIND:
            try:
                config = ExtensionServiceConfig.model_validate(_prepare(doc.data, ExtensionServiceConfig, (), report, lenient=False))
            except ValidationError as exc:
                report.pydantic(exc)
                config = None
            if config is not None:
                if config.name in names:
                    report.error(("name",), f"duplicate document: {CONFIG_KIND}/{config.name} (also at line {names[config.name]})")
                elif not _errors(report.findings):
                    names[config.name] = doc.values.get(("name",), doc.start)[0]
                    node.configs.append(config)
                    node.raw_configs.append(_typed(doc))
        elif kind == VERIFICATION_KIND:
            if node.verification is not None:
                report.error(("kind",), f"a second {VERIFICATION_KIND} document (the first is at line "
                                        f"{node.verification_doc.line if node.verification_doc else '?'}): a node takes at most one")  # fmt: skip
            else:
                found, problems = verification_document(doc, filename)
                report.findings.extend(problems)
                node.verification, node.verification_doc = _typed(doc), found
        else:
            what = f"kind {_describe(kind)}" if kind is not None else "a document without kind"
            report.error(("kind",) if kind is not None else (), f"{what} has no place in a declared node file "
                                                                f"(one of: {', '.join(KINDS)})")  # fmt: skip
        findings.extend(report.findings)
    if head is None and not parsed.error:
        findings.append(_finding(filename, (1, 1), "error", "", f"no {DECLARED_KIND} document: a declared node file "
                                                                "holds exactly one"))  # fmt: skip
    findings = _finish(findings, False)
    return (None if _errors(findings) else node), findings


def _typed(doc: Any) -> Any:
    """The document's data with its plain booleans as booleans again (``deny: true``), so that
    writing it gives what was written, not ``deny: 'true'``."""

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        if path in doc.bools:
            return doc.bools[path]
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    return walk(doc.data, ())


def _read_head(doc: Any, report: _Report, node: DeclaredNode, repos: dict[str, int]) -> None:
    try:
        head = SystemExtensionsConfig.model_validate(_prepare(doc.data, SystemExtensionsConfig, (), report, lenient=False))
    except ValidationError as exc:
        report.pydantic(exc)
        return
    for i, item in enumerate(head.extensions):
        line = doc.values.get(("extensions", i, "image"), doc.start)[0]
        _, repo, _, _ = split_image(item.image)
        if repo in repos:
            report.error(("extensions", i, "image"), f"{repo} is declared twice (also at line {repos[repo]}): "
                                                     "a node runs one version of an extension")  # fmt: skip
            continue
        repos[repo] = line
        node.images.append(item.image)
        node.lines.append(line)


# -- secrets -------------------------------------------------------------------------------


def masked(doc: dict[str, Any], other: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ExtensionServiceConfig document with environment values and file contents hidden.

    With *other* (the document it is compared with), a value that differs there is shown as
    ``*** (changed)``, so that a diff still says that a secret changed, never what it is.
    """
    if doc.get("kind") != CONFIG_KIND:
        return doc
    out = dict(doc)
    theirs = _env(other) if other is not None else {}
    env = []
    for entry in doc.get("environment") or []:
        name, _, value = str(entry).partition("=")
        changed = other is not None and name in theirs and theirs[name] != value
        env.append(f"{name}={MASK}{' (changed)' if changed else ''}")
    if doc.get("environment") is not None:
        out["environment"] = env
    files = {f.get("mountPath"): f.get("content") for f in (other or {}).get("configFiles") or [] if isinstance(f, dict)}
    if doc.get("configFiles") is not None:
        out["configFiles"] = []
        for f in doc.get("configFiles") or []:
            if not isinstance(f, dict):
                continue
            content = str(f.get("content") or "")
            changed = other is not None and f.get("mountPath") in files and files[f.get("mountPath")] != content
            out["configFiles"].append({**f, "content": f"{MASK} ({len(content.encode())} bytes{', changed' if changed else ''})"})
    return out


def _env(doc: dict[str, Any] | None) -> dict[str, str]:
    out = {}
    for entry in (doc or {}).get("environment") or []:
        name, _, value = str(entry).partition("=")
        out[name] = value
    return out


def mask_text(text: str) -> str:
    """A multi-document config text with every secret hidden (what readers see)."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return "# (unreadable)\n"
    return "".join("---\n" * (i > 0) + yaml.safe_dump(masked(d), sort_keys=False) for i, d in enumerate(docs))
