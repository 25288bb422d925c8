"""A declared-state file as an OCI artifact: written, pushed, resolved, pulled and copied with skopeo.

The artifact is an OCI 1.1 image manifest with no config (the empty descriptor) and one layer,
the file itself::

    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.extvisor.node-state.v1+yaml",
     "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136f...", "size": 2},
     "layers": [{"mediaType": "application/vnd.extvisor.node-state.v1+yaml", "digest": ..., "size": ...,
                 "annotations": {"org.opencontainers.image.title": "node.yaml"}}],
     "annotations": {"org.opencontainers.image.title": "node.yaml", "dev.extvisor.generation": "4"}}

The manifest bytes are written once, compactly and with sorted keys, and skopeo is always
given ``--preserve-digests``: c/image 5.23 knows no ``artifactType`` and would drop it from any
manifest it re-serialised, so an edit must fail rather than happen. ``skopeo inspect`` (not
``--raw``) refuses non-image artifacts, so only ``--raw`` is used; the digest is the sha256 of
those bytes. Signatures are not checked here (``verify`` does that, by digest).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fetch import FetchOptions, inspect_raw, run_skopeo
from .refs import Ref, RefError, parse_ref

ARTIFACT_TYPE = "application/vnd.extvisor.node-state.v1+yaml"
LAYER_TYPE = ARTIFACT_TYPE
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  #: of b"{}"
TITLE = "org.opencontainers.image.title"
GENERATION = "dev.extvisor.generation"
MAX_DOCUMENT = 1 << 20  #: a declared file larger than this is refused (it is YAML, read into memory)
MAX_MANIFEST = 64 << 10
OPEN_POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}'  #: signatures are checked by digest, elsewhere
TIMEOUT = 120.0  #: seconds any one skopeo call may take


class ArtifactError(Exception):
    """Not an extvisor artifact, or malformed; the message names the reference."""


class RegistryError(Exception):
    """skopeo could not reach or read the registry (an outage, auth, TLS, a missing tag)."""


@dataclass(frozen=True)
class Artifact:
    ref: str  #: ``HOST/REPO@sha256:...``: what was pulled
    digest: str  #: the manifest's digest
    document: bytes  #: the declared-state file
    title: str
    generation: int | None

    @property
    def text(self) -> str:
        return self.document.decode("utf-8", errors="replace")


def docker_ref(text: str) -> Ref:
    """A ``docker://HOST/REPO:TAG`` (or ``@sha256:``) reference; ``RefError`` for anything else."""
    ref = parse_ref(text)
    if ref.transport != "docker":
        raise RefError(f"{text}: a declared state is published to a registry: docker://HOST/REPO:TAG")
    return ref


def repository(ref: Ref) -> str:
    """``HOST/REPO`` of a docker reference, without tag or digest."""
    name = ref.target.split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    return (head + "/" if head else "") + tail.split(":", 1)[0]


def by_digest(ref: Ref, digest: str) -> Ref:
    target = f"{repository(ref)}@{digest}"
    return Ref("docker", target, "docker://" + target)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the format ---------------------------------------------------------------------------


def manifest_bytes(document: bytes, title: str, generation: int) -> bytes:
    """The artifact's manifest for *document*; the same inputs give the same bytes (and digest)."""
    layer = {"mediaType": LAYER_TYPE, "digest": sha256(document), "size": len(document), "annotations": {TITLE: title}}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": EMPTY_TYPE, "digest": EMPTY_DIGEST, "size": 2},
                "layers": [layer], "annotations": {TITLE: title, GENERATION: str(generation)}}  # fmt: skip
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def write_layout(layout: Path, document: bytes, title: str, generation: int, tag: str = "latest") -> str:
    """An OCI layout at *layout* holding the artifact under *tag*; its manifest digest."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    raw = manifest_bytes(document, title, generation)
    for data in (b"{}", document, raw):
        (blobs / sha256(data)[7:]).write_bytes(data)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    top = {"mediaType": OCI_MANIFEST, "digest": sha256(raw), "size": len(raw), "artifactType": ARTIFACT_TYPE,
           "annotations": {"org.opencontainers.image.ref.name": tag}}  # fmt: skip
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return sha256(raw)


def read_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """The manifest of an extvisor artifact, checked; ``ArtifactError`` saying what is wrong."""
    if len(raw) > MAX_MANIFEST:
        raise ArtifactError(f"{where}: the manifest is {len(raw)} bytes; not an extvisor declared state")
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ArtifactError(f"{where}: the manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("mediaType") != OCI_MANIFEST:
        kind = manifest.get("mediaType") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArtifactError(f"{where}: not an OCI image manifest ({kind}); an extvisor declared state is one")
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        raise ArtifactError(f"{where}: artifactType is {manifest.get('artifactType')!r}, not {ARTIFACT_TYPE!r}: "
                            "not published with extvisor publish")  # fmt: skip
    layers = manifest.get("layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise ArtifactError(f"{where}: an extvisor declared state has exactly one layer")
    layer = layers[0]
    if layer.get("mediaType") != LAYER_TYPE:
        raise ArtifactError(f"{where}: the layer's media type is {layer.get('mediaType')!r}, not {LAYER_TYPE!r}")
    size = layer.get("size")
    if not isinstance(size, int) or not 0 <= size <= MAX_DOCUMENT:
        raise ArtifactError(f"{where}: the document's size {size!r} is not between 0 and {MAX_DOCUMENT} bytes")
    return manifest


def describe(manifest: dict[str, Any]) -> tuple[str, int | None]:
    """(title, generation) from the annotations."""
    notes = manifest.get("annotations") or {}
    title = str(notes.get(TITLE) or (manifest["layers"][0].get("annotations") or {}).get(TITLE) or "")
    try:
        generation: int | None = int(notes.get(GENERATION))
    except (TypeError, ValueError):
        generation = None
    return title, generation


# -- skopeo -------------------------------------------------------------------------------


def _skopeo(args: list[str], ref: Ref, options: FetchOptions, work: Path, timeout: float) -> subprocess.CompletedProcess[bytes]:
    return run_skopeo(args, ref, options, work, timeout, RegistryError, own_policy=True)


def resolve(ref: Ref, options: FetchOptions, work: Path, timeout: float = TIMEOUT) -> tuple[str, bytes]:
    """The digest of the manifest *ref* names now, and its bytes (one ``skopeo inspect --raw``)."""
    return inspect_raw(ref, options, work, timeout, RegistryError)


def push(document: bytes, title: str, generation: int, ref: Ref, options: FetchOptions,
         timeout: float = TIMEOUT) -> str:  # fmt: skip
    """Push the artifact to *ref* (a tag); its digest."""
    with tempfile.TemporaryDirectory(prefix="extvisor-publish-") as tmp:
        work = Path(tmp)
        digest = write_layout(work / "layout", document, title, generation)
        _skopeo(["copy", "--quiet", "--preserve-digests", *options.access_args("dest-"), f"oci:{work / 'layout'}:latest",
                 ref.skopeo()], ref, options, work, timeout)  # fmt: skip
    return digest


def copy(src: Ref, dest: Ref, options: FetchOptions, timeout: float = TIMEOUT) -> None:
    """Registry to registry, bytes unchanged (the promotion of a tested document)."""
    with tempfile.TemporaryDirectory(prefix="extvisor-copy-") as tmp:
        _skopeo(["copy", "--quiet", "--preserve-digests", *options.access_args("src-"), *options.access_args("dest-"),
                 src.skopeo(), dest.skopeo()], src, options, Path(tmp), timeout)  # fmt: skip


def pull(ref: Ref, options: FetchOptions, work: Path, digest: str = "", timeout: float = TIMEOUT) -> Artifact:
    """Copy the artifact into ``dir:`` under *work* and read it; with *digest*, by that digest.

    Every byte is checked against its digest: the manifest against the one asked for, the
    document against the manifest.
    """
    source = by_digest(ref, digest) if digest else ref
    dest = Path(tempfile.mkdtemp(prefix="artifact-", dir=work))
    try:
        _skopeo(["copy", "--quiet", "--preserve-digests", *options.access_args("src-"), source.skopeo(), f"dir:{dest}"],
                source, options, work, timeout)  # fmt: skip
        raw = (dest / "manifest.json").read_bytes()
        got = sha256(raw)
        if digest and got != digest:
            raise ArtifactError(f"{source}: the manifest read has digest {got}, not {digest}")
        manifest = read_manifest(raw, str(source))
        layer = manifest["layers"][0]
        path = dest / str(layer.get("digest", "")).removeprefix("sha256:")
        if not str(layer.get("digest", "")).startswith("sha256:") or not path.is_file():
            raise ArtifactError(f"{source}: the document's blob {layer.get('digest')!r} is missing")
        if path.stat().st_size > MAX_DOCUMENT:
            raise ArtifactError(f"{source}: the document is larger than {MAX_DOCUMENT} bytes")
        document = path.read_bytes()
        if sha256(document) != layer["digest"] or len(document) != layer["size"]:
            raise ArtifactError(f"{source}: the document does not match its digest {layer['digest']}")
        title, generation = describe(manifest)
        return Artifact(by_digest(ref, got).target, got, document, title, generation)
    except OSError as exc:
        raise ArtifactError(f"{source}: cannot read what skopeo wrote: {exc}") from None
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def missing(error: RegistryError) -> bool:
    """The registry answered, and nothing is at that tag (or in that repository)."""
    text = str(error).lower()
    return "manifest unknown" in text or "name unknown" in text or "not found" in text


def next_generation(document: bytes, title: str, ref: Ref, options: FetchOptions, work: Path) -> int:
    """The generation to publish *document* under at *ref*: the one there already when the
    document and title are the same (publishing again changes nothing, not even the digest),
    else one more than it; 1 on an empty tag."""
    try:
        _, raw = resolve(ref, options, work)
    except RegistryError as exc:
        if missing(exc):
            return 1
        raise
    manifest = read_manifest(raw, f"{ref} (published there now)")
    there, generation = describe(manifest)
    if manifest["layers"][0].get("digest") == sha256(document) and there == title and generation is not None:
        return generation
    return (generation or 0) + 1


def sign_digest(ref: Ref, digest: str, key: Any, options: FetchOptions) -> str:
    """Push a cosign signature of *digest* in *ref*'s repository before the tag moves to it, so
    a node never sees the new digest unsigned; the signature's tag. (The signer's own ``sign``
    resolves a tag first, which an artifact not yet pushed does not have.)"""
    from . import sign as cosign

    repo = repository(ref)
    tag = cosign.signature_tag(digest)
    with tempfile.TemporaryDirectory(prefix="extvisor-sign-") as tmp:
        work = Path(tmp)
        (work / "policy.json").write_text(OPEN_POLICY)
        body = cosign.payload(cosign.repository(ref), digest)
        layers = cosign._existing(repo, tag, ref, options, work)  # cosign appends to what is there
        signature = cosign.sign_payload(key, body)
        layers = [layer for layer in layers if layer[0] != body or layer[1].get(cosign.SIGNATURE_ANNOTATION) != signature]
        layers.append((body, {cosign.SIGNATURE_ANNOTATION: signature}))
        cosign.signature_layout(work / "layout", tag, layers)
        target = Ref("docker", f"{repo}:{tag}", f"docker://{repo}:{tag}")
        _skopeo(["copy", "--quiet", "--preserve-digests", *options.access_args("dest-"), f"oci:{work / 'layout'}:{tag}",
                 target.skopeo()], target, options, work, TIMEOUT)  # fmt: skip
    return target.given
