"""``kind: ImageVerificationConfig`` (Talos v1.13): which extension images must be signed, by whom.

    apiVersion: v1alpha1
    kind: ImageVerificationConfig
    rules:                                  # in order: the first rule whose pattern matches decides
      - image: registry.example.com/extensions/*
        publicKey: {certificate: "<PEM public key or certificate>"}
      - image: registry.example.com/experimental/*
        skip: true
      - image: "*"
        deny: true

``image`` is a glob (``*``, ``?``, ``[...]``; ``*`` crosses ``/``) on the normalized
``registry/repository``, never the tag or digest. A ``keyless`` rule is refused here: it needs
Fulcio and Rekor, which an offline node cannot reach. It lives in the same streams as
ExtensionServiceConfig documents; a node has at most one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from extvisor.documents.configdocs import _configs
from extvisor.documents.files import read_file
from extvisor.documents.findings import Finding
from extvisor.documents.models import ExtensionServiceConfig
from extvisor.documents.report import _describe, _finding, _finish
from extvisor.documents.yamlio import Document, Parsed, parse

KIND = "ImageVerificationConfig"
ACTIONS = ("publicKey", "skip", "deny")
KEYLESS = ("keyless rules are not supported: they need Fulcio and Rekor (sigstore's public services), "
           "which an offline node cannot reach; use publicKey with a cosign.pub")  # fmt: skip
_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


@dataclass(frozen=True)
class Rule:
    index: int
    pattern: str
    action: str  #: publicKey, skip or deny
    key_pem: str = ""  #: publicKey: the PEM as written
    line: int = 0

    def __str__(self) -> str:
        return f"rule {self.index} ({self.pattern})"

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)

    def public_key(self):  # type: ignore[no-untyped-def]
        """The key (a certificate's own key for a certificate). Raises ValueError."""
        return load_public_key(self.key_pem)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key())


@dataclass
class ImageVerification:
    """One document: where it is and its rules, in order."""

    file: str
    line: int
    rules: list[Rule] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def match(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(name)), None)


def load_public_key(pem: str):  # type: ignore[no-untyped-def]
    """A PEM ``PUBLIC KEY`` (cosign.pub) or ``CERTIFICATE``: its public key. Raises ValueError."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.strip().encode()
    if b"-----BEGIN CERTIFICATE-----" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    elif b"-----BEGIN PUBLIC KEY-----" in data:
        key = load_pem_public_key(data)
    else:
        raise ValueError("not a PEM public key (-----BEGIN PUBLIC KEY-----) or certificate (-----BEGIN CERTIFICATE-----)")
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise ValueError(f"unsupported key type {type(key).__name__} (ECDSA, RSA or Ed25519)")
    return key


def fingerprint(key) -> str:  # type: ignore[no-untyped-def]
    """The first 12 hex digits of the sha256 of the key's DER SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()[:12]


def _bool(value: object) -> bool | None:
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    return None


def _has_tag(pattern: str) -> bool:
    """``repo:tag`` in the last component; ``host:5000`` alone is a registry with its port."""
    last = pattern.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    return "/" in pattern or not last.split(":", 1)[1].isdigit()


def _document(doc: Document, filename: str) -> tuple[ImageVerification | None, list[Finding]]:
    findings: list[Finding] = []
    data = doc.data

    def err(path: tuple, message: str, at_key: bool = False) -> None:
        pos = doc.key_pos(path) if at_key else (doc.values.get(path) or doc.key_pos(path))
        findings.append(_finding(filename, pos, "error", ".".join(str(p) for p in path), message))

    for key in data:
        if key not in ("apiVersion", "kind", "rules"):
            err((key,), f"unknown key `{key}`", at_key=True)
    if data.get("apiVersion") != "v1alpha1":
        err(("apiVersion",), f"apiVersion must be v1alpha1, not {_describe(data.get('apiVersion'))}")
    rules_raw = data.get("rules")
    result = ImageVerification(filename, doc.start[0])
    if rules_raw is None:
        err(("rules",), "missing rules")
        rules_raw = []
    elif not isinstance(rules_raw, list):
        err(("rules",), f"rules must be a list (got {_describe(rules_raw)})")
        rules_raw = []
    for i, raw in enumerate(rules_raw):
        path = ("rules", i)
        if not isinstance(raw, dict):
            err(path, f"a rule is a mapping with `image` and one of publicKey, skip, deny (got {_describe(raw)})")
            continue
        line = doc.value_pos(path)[0]
        for key in raw:
            if key not in ("image", "publicKey", "skip", "deny", "keyless"):
                err((*path, key), f"unknown key `{key}`", at_key=True)
        image = raw.get("image")
        if not isinstance(image, str) or not image.strip():
            err((*path, "image"), "image is required: a glob on registry/repository, e.g. registry.example.com/extensions/*")
            image = ""
        elif "@" in image or _has_tag(image):
            err((*path, "image"), f"image {_describe(image)} must not hold a tag or digest: it matches registry/repository")
        if "keyless" in raw:
            err((*path, "keyless"), KEYLESS, at_key=True)
            continue
        chosen = []
        for flag in ("skip", "deny"):
            if flag in raw and raw[flag] is not None:
                value = _bool(raw[flag])
                if value is None:
                    err((*path, flag), f"{flag} must be true or false (got {_describe(raw[flag])})")
                elif value:
                    chosen.append(flag)
        key_pem = ""
        if raw.get("publicKey") is not None:
            pk = raw["publicKey"]
            if not isinstance(pk, dict) or set(pk) - {"certificate"}:
                err((*path, "publicKey"), "publicKey takes one key: certificate (a PEM public key or certificate)")
            elif not isinstance(pk.get("certificate"), str) or not pk["certificate"].strip():
                err((*path, "publicKey", "certificate"), "missing certificate (a PEM public key or certificate)")
            else:
                key_pem = pk["certificate"]
                try:
                    load_public_key(key_pem)
                    chosen.append("publicKey")
                except ValueError as exc:
                    err((*path, "publicKey", "certificate"), f"cannot read the key: {exc}")
                    continue
        if len(chosen) > 1:
            err(path, f"a rule takes one of publicKey, skip: true, deny: true (got {', '.join(chosen)})")
        elif not chosen and not any(f.field.startswith(f"rules.{i}.") for f in findings):
            err(path, "a rule needs one of publicKey, skip: true, deny: true")
        elif len(chosen) == 1 and image:
            result.rules.append(Rule(i, image.strip(), chosen[0], key_pem, line))
    return result, findings


def verification_documents(parsed: Parsed, filename: str) -> tuple[list[ImageVerification], list[Finding], bool]:
    """Every ImageVerificationConfig of a stream, the findings, and whether the stream held one."""
    docs: list[ImageVerification] = []
    findings: list[Finding] = []
    held: Document | None = None
    for doc in parsed.documents:
        if not isinstance(doc.data, dict) or doc.data.get("kind") != KIND:
            continue
        if held is not None:
            findings.append(_finding(filename, doc.start, "error", "", f"a second {KIND} document (the first is at "
                                                                       f"line {held.start[0]}): a node takes at most one"))  # fmt: skip
            continue
        held = doc
        found, problems = _document(doc, filename)
        findings += problems
        if found is not None and not problems:
            docs.append(found)
    return docs, findings, held is not None


def one_per_node(docs: list[ImageVerification]) -> list[Finding]:
    """At most one document per node: each later one is an error naming the first."""
    return [Finding(d.file, d.line, 1, "error", "", f"a second {KIND} document (the first is at {docs[0].where}): "
                                                    "a node takes at most one")  # fmt: skip
            for d in docs[1:]]


@dataclass
class MachineConfig:
    """What one file of the service-config directory holds, read once."""

    configs: list[ExtensionServiceConfig]
    verifications: list[ImageVerification]
    findings: list[Finding]
    holds_verification: bool  #: a document of this kind is there, valid or not


def read_machine_config(data: bytes | str, filename: str) -> MachineConfig:
    parsed = parse(data, filename)
    configs, findings = _configs(parsed, filename)
    docs, more, held = verification_documents(parsed, filename)
    return MachineConfig(configs, docs, _finish(findings + more, False), held)


def load_machine_config(path: str | os.PathLike[str]) -> MachineConfig:
    data, problem = read_file(Path(path))
    if data is None:
        return MachineConfig([], [], [problem], False)  # type: ignore[list-item]
    return read_machine_config(data, str(path))


def load_image_verification(path: str | os.PathLike[str]) -> tuple[ImageVerification | None, list[Finding]]:
    """The one ImageVerificationConfig of a file (``--image-verification FILE``), or the findings.

    Other documents of the file are not this command's business and are not checked."""
    data, problem = read_file(Path(path))
    if data is None:
        return None, [problem]  # type: ignore[list-item]
    parsed = parse(data, str(path))
    docs, findings, held = verification_documents(parsed, str(path))
    errors = ([parsed.error] if parsed.error else []) + [f for f in findings if f.severity == "error"]
    if not held and not errors:
        errors = [Finding(str(path), 0, 0, "error", "", f"no {KIND} document in this file")]
    return (docs[0] if docs and not errors else None), _finish(errors, False)
