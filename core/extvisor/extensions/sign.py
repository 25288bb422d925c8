"""cosign-format keys and signatures, for authors and for the tests.

Keys (``extvisor gen signing-key``): an ECDSA P-256 key; ``cosign.pub`` is its PKIX ``PUBLIC KEY``
PEM, ``cosign.key`` the PKCS#8 DER encrypted as sigstore's ``cryptoutils`` does (go-tuf's
``encrypted`` envelope: scrypt N=32768 r=8 p=1 into a 32-byte key, NaCl secretbox with a 24-byte
nonce, JSON ``{"kdf": ..., "cipher": ..., "ciphertext": ...}`` with base64 bytes) under the PEM
type ``ENCRYPTED COSIGN PRIVATE KEY`` (cosign v1's name, which cosign v2/v3 and containers/image
read too; ``ENCRYPTED SIGSTORE PRIVATE KEY`` is read here as well).

Signatures (``extvisor extensions sign``): cosign's keyed layout. The payload is the simple-signing
JSON naming the repository and the manifest digest; its ECDSA-SHA256 signature (DER, base64) is
the ``dev.cosignproject.cosign/signature`` annotation of a layer of media type
``application/vnd.dev.cosign.simplesigning.v1+json`` in an OCI image manifest tagged
``sha256-<hex>.sig`` in the same repository. Existing signatures there are kept (a new layer is
appended, as cosign does). The image is built as an OCI layout and pushed with ``skopeo copy``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .fetch import FetchOptions, _skopeo_message
from .refs import Ref
from .verify import (
    OPEN_POLICY, PAYLOAD_TYPE, SIGNATURE_ANNOTATION, SIMPLESIGNING, VerifyError, repository, resolve,
    signature_tag,
)  # fmt: skip

PEM_TYPES = ("ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY")
SCRYPT = {"N": 32768, "r": 8, "p": 1}  #: what cosign writes (go-securesystemslib's "Legacy")
READABLE = ({"N": 32768, "r": 8, "p": 1}, {"N": 65536, "r": 8, "p": 1}, {"N": 131072, "r": 8, "p": 1})
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ZERO_TIME = "0001-01-01T00:00:00Z"


class SignError(Exception):
    pass


def _secretbox():  # type: ignore[no-untyped-def]
    try:
        import nacl.secret
    except ImportError:
        raise SignError("cosign.key files need PyNaCl (NaCl secretbox): pip install 'extvisor[extensions]'") from None
    return nacl.secret.SecretBox


def _scrypt(password: bytes, salt: bytes, params: dict[str, int] = SCRYPT) -> bytes:
    n, r, p = params["N"], params["r"], params["p"]
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32)


def _pem(kind: str, data: bytes) -> bytes:
    body = base64.b64encode(data).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def _unpem(data: bytes) -> tuple[str, bytes]:
    text = data.decode("ascii", errors="replace").strip()
    lines = text.splitlines()
    if not lines or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise SignError("not a PEM file")
    kind = lines[0][len("-----BEGIN ") :].rstrip("-")
    return kind, base64.b64decode("".join(lines[1:-1]))


def encrypt_key(der: bytes, password: bytes) -> bytes:
    """go-tuf ``encrypted.Encrypt``: JSON with the field order and base64 of Go's encoding/json."""
    box = _secretbox()
    salt, nonce = os.urandom(32), os.urandom(24)
    sealed = box(_scrypt(password, salt)).encrypt(der, nonce).ciphertext  # Poly1305 tag, then the stream
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    envelope = {"kdf": {"name": "scrypt", "params": SCRYPT, "salt": b64(salt)},
                "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)}, "ciphertext": b64(sealed)}  # fmt: skip
    return json.dumps(envelope, separators=(",", ":")).encode()


def decrypt_key(envelope: bytes, password: bytes) -> bytes:
    from nacl.exceptions import CryptoError

    box = _secretbox()
    try:
        data = json.loads(envelope)
        if data["kdf"]["name"] != "scrypt" or data["cipher"]["name"] != "nacl/secretbox":
            raise SignError(f"unknown kdf {data['kdf']['name']!r} or cipher {data['cipher']['name']!r}")
        params = data["kdf"]["params"]
        if params not in READABLE:
            raise SignError(f"unsupported scrypt parameters {params}")  # as go-tuf: tampered ones could cost a DoS
        key = _scrypt(password, base64.b64decode(data["kdf"]["salt"]), params)
        return box(key).decrypt(base64.b64decode(data["ciphertext"]), base64.b64decode(data["cipher"]["nonce"]))
    except CryptoError:
        raise SignError("cannot decrypt the key: wrong password (EXTVISOR_SIGNING_PASSWORD)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SignError(f"not a cosign encrypted key: {exc!r}") from None


def generate_key(password: bytes) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key: (``cosign.key`` bytes, ``cosign.pub`` bytes)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return _pem(PEM_TYPES[0], encrypt_key(der, password)), public


def write_key_pair(directory: Path, password: bytes) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "cosign.key", directory / "cosign.pub"
    for path in (private, public):
        if path.exists():
            raise SignError(f"{path} exists; not overwritten")
    key, pub = generate_key(password)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    public.write_bytes(pub)
    return private, public


def load_private_key(data: bytes, password: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    kind, body = _unpem(data)
    if kind not in PEM_TYPES:
        raise SignError(f"PEM type {kind!r} is not a cosign key ({' or '.join(PEM_TYPES)})")
    return load_der_private_key(decrypt_key(body, password), None)


# -- the signature image ------------------------------------------------------------------


def payload(repo: str, digest: str) -> bytes:
    """sigstore's ``payload.Cosign``: Go's encoding/json of SimpleContainerImage, ``optional`` null."""
    body = {"critical": {"identity": {"docker-reference": repo}, "image": {"docker-manifest-digest": digest},
                         "type": PAYLOAD_TYPE}, "optional": None}  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode()


def sign_payload(key: Any, data: bytes) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(data)
    else:
        raise SignError(f"unsupported key type {type(key).__name__}")
    return base64.b64encode(signature).decode()


def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest[7:]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def signature_layout(layout: Path, tag: str, layers: list[tuple[bytes, dict[str, str]]]) -> str:
    """Write an OCI layout holding cosign's signature image (one layer per signature); its digest."""
    (layout / "blobs/sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descriptors, diff_ids = [], []
    for data, annotations in layers:
        descriptors.append({"mediaType": SIMPLESIGNING, **_blob(layout, data), "annotations": annotations})
        diff_ids.append(descriptors[-1]["digest"])
    # go-containerregistry's empty image with these layers appended, as cosign builds it
    config = {"architecture": "", "created": ZERO_TIME, "history": [{"created": ZERO_TIME} for _ in layers], "os": "",
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}  # fmt: skip
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **_blob(layout, json.dumps(config, separators=(",", ":")).encode())},
                "layers": descriptors}  # fmt: skip
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    top = {"mediaType": OCI_MANIFEST, **_blob(layout, raw), "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return top["digest"]


def _existing(repo: str, tag: str, ref: Ref, options: FetchOptions, work: Path) -> list[tuple[bytes, dict[str, str]]]:
    """The signature layers already at *tag* (kept, as cosign appends), with their annotations."""
    dest = work / "existing"
    policy = work / "policy.json"
    policy.write_text(OPEN_POLICY)
    cmd = [options.skopeo, "--policy", str(policy), "copy", "--quiet", *options.access_args("src-"), f"docker://{repo}:{tag}", f"dir:{dest}"]
    out = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    if out.returncode != 0:
        text = out.stderr.decode(errors="replace")
        if "manifest unknown" in text or "not found" in text.lower():
            return []
        raise SignError(f"{ref}: cannot read the existing signatures: {_skopeo_message(text, ref, options.arch)}")
    manifest = json.loads((dest / "manifest.json").read_bytes())
    return [((dest / layer["digest"][7:]).read_bytes(), dict(layer.get("annotations") or {}))
            for layer in manifest.get("layers") or [] if layer.get("mediaType") == SIMPLESIGNING]  # fmt: skip


def sign(ref: Ref, key: Any, options: FetchOptions) -> tuple[str, str]:
    """Sign the digest *ref* resolves to and push the signature; returns (digest, signature tag ref)."""
    if ref.transport != "docker":
        raise SignError(f"{ref}: only a registry image (docker://) can carry a cosign signature")
    repo = repository(ref)
    with tempfile.TemporaryDirectory(prefix="extvisor-sign-") as tmp:
        work = Path(tmp)
        try:
            digest, _ = resolve(ref, options, work)
        except VerifyError as exc:
            raise SignError(str(exc)) from None
        body = payload(repo, digest)
        tag = signature_tag(digest)
        layers = _existing(repo, tag, ref, options, work)
        signature = sign_payload(key, body)
        layers = [layer for layer in layers if layer[0] != body or layer[1].get(SIGNATURE_ANNOTATION) != signature]
        layers.append((body, {SIGNATURE_ANNOTATION: signature}))
        signature_layout(work / "layout", tag, layers)
        target = f"docker://{repo}:{tag}"
        cmd = [options.skopeo, "--policy", str(work / "policy.json"), "copy", "--quiet", "--preserve-digests",
               *options.access_args("dest-"), f"oci:{work / 'layout'}:{tag}", target]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
        if out.returncode != 0:
            raise SignError(f"{ref}: pushing the signature failed: {_skopeo_message(out.stderr.decode(errors='replace'), ref, options.arch)}")
    return digest, target
