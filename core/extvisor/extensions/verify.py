"""Checking an image against the node's ImageVerificationConfig before anything is unpacked.

For a ``publicKey`` rule: resolve the reference to its manifest digest (``skopeo inspect --raw``,
sha256 of those bytes), copy cosign's signature image ``sha256-<hex>.sig`` of the same repository
with skopeo, check each signature layer over its payload with the key (``cryptography``), check
that the payload names that digest and this repository, and hand back the reference **by
digest**: what is fetched and unpacked is what was verified. Debian 12's skopeo has sigstore
verification patched out, so skopeo only moves bytes here; no registry client is written by hand.
For an index, a signature of the index digest is looked for first, then one of the platform's
manifest (``cosign sign --recursive`` signs both).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extvisor.documents.findings import Finding
from extvisor.documents.imageverify import ImageVerification, Rule, fingerprint

from .fetch import INDEX_TYPES, FetchOptions, _skopeo_message, inspect_raw
from .progress import Progress, ProgressFn, nothing
from .refs import Ref

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"
OPEN_POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}'
LOCAL_NO_SIGNATURES = "a local image (oci:, oci-archive:, docker-archive:, tarball:) cannot carry signatures"


class VerifyError(Exception):
    """The image is refused by the node's ImageVerificationConfig; the message says which rule and why."""


@dataclass(frozen=True)
class Verdict:
    ref: Ref  #: what to fetch: by digest after a key check
    verified: str  #: ``key <fingerprint>``, ``skip`` or ``none``
    rule: str  #: the deciding rule, e.g. ``rule 0 (registry.example.com/*)``, or ``no rule matched``
    digest: str = ""  #: the verified manifest digest

    def as_dict(self) -> dict[str, str]:
        return {"verified": self.verified, "rule": self.rule, "digest": self.digest}


def repository(ref: Ref) -> str:
    """The normalized ``registry/repository`` of a docker reference (``nginx`` -> ``docker.io/library/nginx``)."""
    return normalize(ref.target)


def normalize(name: str) -> str:
    name = name.split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    if ":" in tail:
        name = (head + "/" if head else "") + tail.split(":", 1)[0]
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        first, rest = "docker.io", name
    if first in ("index.docker.io", "registry-1.docker.io"):
        first = "docker.io"
    if first == "docker.io" and "/" not in rest:
        rest = "library/" + rest
    return f"{first}/{rest}"


def match_name(ref: Ref) -> str:
    """What rule patterns are matched against: the repository, or ``TRANSPORT:PATH`` for a local image."""
    return repository(ref) if ref.transport == "docker" else f"{ref.transport}:{ref.path}"


class Policy:
    """The node's document (or none), ``--require-signatures``, and findings that make it unusable."""

    def __init__(self, document: ImageVerification | None = None, require: bool = False, broken: list[Finding] | None = None):
        self.document = document
        self.require = require
        self.broken = broken or []

    def decide(self, ref: Ref) -> Rule | None:
        if self.broken:
            raise VerifyError(f"{ref}: refused: the node's ImageVerificationConfig cannot be read: "
                              + "; ".join(str(f) for f in self.broken))  # fmt: skip
        return self.document.match(match_name(ref)) if self.document else None

    def check(self, ref: Ref, options: FetchOptions, work: Path, progress: ProgressFn = nothing) -> Verdict:
        """Decide, verify a signature when the rule says so; raise VerifyError to refuse."""
        rule = self.decide(ref)
        name = match_name(ref)
        if rule is None:
            if self.require:
                where = f" of the ImageVerificationConfig at {self.document.where}" if self.document else ""
                raise VerifyError(f"{ref}: refused: no rule{where} matches {name}, and the node requires "
                                  "signatures (--require-signatures)")  # fmt: skip
            progress(Progress("verify", f"no rule matches {name}: not verified", ref=ref.given))
            return Verdict(ref, "none", "no rule matched")
        if rule.action == "deny":
            raise VerifyError(f"{ref}: refused by {rule}: deny")
        if rule.action == "skip":
            progress(Progress("verify", f"{rule}: skip, not verified", ref=ref.given))
            return Verdict(ref, "skip", str(rule))
        if ref.transport != "docker":
            raise VerifyError(f"{ref}: refused by {rule}: a signature is required and {LOCAL_NO_SIGNATURES}")
        return verify_signature(ref, rule, options, work, progress)


# -- registry steps, through skopeo -------------------------------------------------------


def _global(options: FetchOptions, work: Path) -> list[str]:
    policy = work / "verify-policy.json"
    if not policy.exists():
        policy.write_text(OPEN_POLICY)  # we check the signature ourselves; skopeo only fetches
    return [options.skopeo, "--policy", str(policy)]


def _limit(options: FetchOptions) -> float:
    """Manifests only here: at most the fetch's own limits, and 300 s."""
    return min(t for t in (options.timeout, options.stall_timeout, 300.0) if t)


def _run(cmd: list[str], ref: Ref, options: FetchOptions) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=_limit(options))
    except FileNotFoundError:
        raise VerifyError(f"{options.skopeo} not found: install skopeo (apt-get install skopeo)") from None
    except subprocess.TimeoutExpired:
        raise VerifyError(f"{ref}: skopeo did not answer within {_limit(options):.0f} s") from None


def resolve(ref: Ref, options: FetchOptions, work: Path) -> tuple[str, bytes]:
    """The digest of the manifest *ref* names (an index for a multi-platform image), and its bytes."""
    return inspect_raw(ref, options, work, _limit(options), VerifyError)


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def canonical_payloads(repo: str, target: str, digest: str) -> dict[str, bytes]:
    """The payloads cosign writes for *digest* (Go's encoding/json of its simple-signing struct),
    by their sha256: a layer whose digest is one of these needs no download."""
    names = {repo, repo_of_target(target)}
    if repo.startswith("docker.io/"):
        names.add("index." + repo)  # cosign names Docker Hub's repositories index.docker.io/...
    out = {}
    for name in names:
        body = {"critical": {"identity": {"docker-reference": name}, "image": {"docker-manifest-digest": digest},
                             "type": PAYLOAD_TYPE}, "optional": None}  # fmt: skip
        data = json.dumps(body, separators=(",", ":")).encode()
        out["sha256:" + hashlib.sha256(data).hexdigest()] = data
    return out


def fetch_signatures(repo: str, digest: str, ref: Ref, options: FetchOptions, work: Path) -> list[tuple[bytes, str]] | None:
    """The (payload, base64 signature) of each cosign signature of *digest*; None when there is none.

    One ``skopeo inspect --raw`` of the signature manifest; the payloads are known by their
    digest when they are cosign's own bytes for this image, else the image is copied (one more
    skopeo call) to read them.
    """
    source = f"docker://{repo}:{signature_tag(digest)}"
    out = _run([*_global(options, work), "inspect", "--raw", *options.access_args(), source], ref, options)
    if out.returncode != 0:
        text = out.stderr.decode(errors="replace")
        if "manifest unknown" in text or "not found" in text.lower():
            return None
        raise VerifyError(f"{ref}: cannot read its signatures ({source}): {_skopeo_message(text, ref, options.arch)}")
    try:
        layers = [layer for layer in json.loads(out.stdout).get("layers") or []
                  if layer.get("mediaType") == SIMPLESIGNING and (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)]  # fmt: skip
    except (ValueError, AttributeError):
        raise VerifyError(f"{ref}: {source} is not an image manifest") from None
    known = canonical_payloads(repo, ref.target, digest)
    if any(layer.get("digest") not in known for layer in layers):
        return _copied_signatures(source, ref, options, work)
    return [(known[layer["digest"]], layer["annotations"][SIGNATURE_ANNOTATION]) for layer in layers]


def _copied_signatures(source: str, ref: Ref, options: FetchOptions, work: Path) -> list[tuple[bytes, str]]:
    dest = Path(tempfile.mkdtemp(prefix="sig-", dir=work))
    cmd = [*_global(options, work), "copy", "--quiet", *options.access_args("src-"), source, f"dir:{dest}"]
    out = _run(cmd, ref, options)
    if out.returncode != 0:
        text = out.stderr.decode(errors="replace")
        raise VerifyError(f"{ref}: cannot read its signatures ({source}): {_skopeo_message(text, ref, options.arch)}")
    manifest = json.loads((dest / "manifest.json").read_bytes())
    found = []
    for layer in manifest.get("layers") or []:
        annotation = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if layer.get("mediaType") != SIMPLESIGNING or not annotation:
            continue
        payload = (dest / layer["digest"].split(":", 1)[1]).read_bytes()
        if "sha256:" + hashlib.sha256(payload).hexdigest() != layer["digest"]:
            continue  # skopeo checked it already; never trust a blob that does not match
        found.append((payload, annotation))
    return found


# -- the check ------------------------------------------------------------------------------


def check_signature(key: Any, payload: bytes, b64sig: str) -> bool:
    """cosign's signature: over the payload bytes (ECDSA and RSA with SHA-256, Ed25519 as is)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        signature = base64.b64decode(b64sig, validate=True)
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def check_payload(payload: bytes, digest: str, repo: str) -> str:
    """Why a validly signed payload does not vouch for *digest* in *repo* ('' when it does)."""
    try:
        critical = json.loads(payload)["critical"]
        kind = critical["type"]
        named = critical["image"]["docker-manifest-digest"]
        identity = critical["identity"]["docker-reference"]
    except (ValueError, KeyError, TypeError):
        return "the signed payload is not a cosign simple-signing payload"
    if kind != PAYLOAD_TYPE:
        return f"the signed payload's type is {kind!r}, not {PAYLOAD_TYPE!r}"
    if named != digest:
        return f"the signature is for digest {named}, not {digest}"
    if normalize(identity) != repo:
        return f"the signature was made for repository {normalize(identity)}, not {repo}"
    return ""


def platform_digest(raw: bytes, arch: str) -> list[str]:
    """The ``linux/<arch>`` manifest digest of an index (none for a manifest or no bytes)."""
    try:
        manifest = json.loads(raw) if raw else {}
    except ValueError:
        return []
    if manifest.get("mediaType") not in INDEX_TYPES and "manifests" not in manifest:
        return []
    for entry in manifest.get("manifests") or []:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == arch:
            return [entry["digest"]]
    return []


def verify_signature(ref: Ref, rule: Rule, options: FetchOptions, work: Path, progress: ProgressFn = nothing) -> Verdict:
    key = rule.public_key()
    label = f"key {fingerprint(key)}"
    repo = repository(ref)
    pinned = ref.target.split("@", 1)[1] if "@" in ref.target else ""
    if pinned:  # a pinned digest needs no resolving unless its signature is not there (an index's platform)
        digest, raw = pinned, b""
    else:
        progress(Progress("verify", f"{rule}: resolving {ref}", ref=ref.given))
        digest, raw = resolve(ref, options, work)
    candidates = [digest, *platform_digest(raw, options.arch)]
    reasons: list[str] = []
    for candidate in candidates:
        progress(Progress("verify", f"{rule}: signatures of {repo}@{candidate}", ref=ref.given))
        signatures = fetch_signatures(repo, candidate, ref, options, work)
        if signatures is None and candidate == digest and not raw:
            _, raw = resolve(ref, options, work)
            candidates += platform_digest(raw, options.arch)
        if signatures is None:
            continue
        if not signatures:
            reasons.append(f"{repo}:{signature_tag(candidate)} holds no cosign signature layer")
        for payload, b64sig in signatures:
            if not check_signature(key, payload, b64sig):
                reasons.append(f"signed with another key (not {label})")
                continue
            why = check_payload(payload, candidate, repo)
            if why:
                reasons.append(why)
                continue
            progress(Progress("verify", f"{rule}: signature of {candidate} verified with {label}", ref=ref.given))
            by_digest = Ref("docker", f"{repo_of_target(ref.target)}@{candidate}", ref.given)
            return Verdict(by_digest, label, str(rule), candidate)
    if not reasons:
        raise VerifyError(f"{ref}: refused by {rule}: not signed (no cosign signature {repo}:{signature_tag(digest)})")
    unique = list(dict.fromkeys(reasons))
    raise VerifyError(f"{ref}: refused by {rule}: no valid signature: " + "; ".join(unique))


def repo_of_target(target: str) -> str:
    """``HOST/REPO:TAG`` or ``HOST/REPO@sha256:...`` -> ``HOST/REPO`` as written (skopeo resolves it again)."""
    name = target.split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    return (head + "/" if head else "") + tail.split(":", 1)[0]
