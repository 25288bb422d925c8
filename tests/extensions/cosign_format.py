"""cosign's keyed signature format written from its documentation, without extvisor's signer.

Signer and verifier must not share a mistake: the tests make signatures here too, push them
with plain HTTP calls of the distribution API (not skopeo), read extvisor's own signatures back
the same way and check them here. Sources: cosign's SIGNATURE_SPEC.md (the ``sha256-<hex>.sig``
tag, the simplesigning layer, the ``dev.cosignproject.cosign/signature`` annotation, the payload
of ``cosign container image signature``) and go-tuf's ``encrypted`` package for ``cosign.key``.
"""

from __future__ import annotations

import base64
import json
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import (
    Encoding, NoEncryption, PrivateFormat, PublicFormat, load_der_private_key, load_pem_public_key,
)  # fmt: skip

PAYLOAD = ('{"critical":{"identity":{"docker-reference":"%s"},"image":{"docker-manifest-digest":"%s"},'
           '"type":"cosign container image signature"},"optional":null}')  # fmt: skip
LAYER_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"


def digest_of(data: bytes) -> str:
    return "sha256:" + sha256(data).hexdigest()


class Key:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.pub_pem = self.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data, ec.ECDSA(hashes.SHA256()))).decode()

    def encrypted_pem(self, password: bytes) -> bytes:
        """``cosign.key``: PKCS#8 DER in go-tuf's scrypt + secretbox JSON, PEM-armoured."""
        import nacl.secret
        import os

        der = self.private.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        salt, nonce = os.urandom(32), os.urandom(24)
        box_key = Scrypt(salt=salt, length=32, n=32768, r=8, p=1).derive(password)
        sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
        doc = json.dumps({"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
                                  "salt": base64.b64encode(salt).decode()},
                          "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
                          "ciphertext": base64.b64encode(sealed).decode()}).encode()  # fmt: skip
        b64 = base64.encodebytes(doc).decode().replace("\n", "")
        body = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        return f"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n{body}\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n".encode()


def decrypt_cosign_key(pem: bytes, password: bytes):  # type: ignore[no-untyped-def]
    """Read a ``cosign.key`` (extvisor's, to check it) the documented way."""
    import nacl.secret

    lines = pem.decode().strip().splitlines()
    assert lines[0] in ("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----", "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    doc = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert doc["kdf"]["name"] == "scrypt" and doc["cipher"]["name"] == "nacl/secretbox"
    p = doc["kdf"]["params"]
    box_key = Scrypt(salt=base64.b64decode(doc["kdf"]["salt"]), length=32, n=p["N"], r=p["r"], p=p["p"]).derive(password)
    der = nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"]))
    return load_der_private_key(der, None)


def push_signature(pusher, repo: str, digest: str, key: Key, identity: str, at: str | None = None,  # type: ignore[no-untyped-def]
                   optional: dict | None = None) -> str:
    """Push a signature of *digest* naming repository *identity*, tagged for digest *at* (default: the same).

    *optional* fills the payload's ``optional`` (``cosign sign -a KEY=VALUE``)."""
    payload = (PAYLOAD % (identity, digest)).encode()
    if optional is not None:
        payload = payload.replace(b'"optional":null', b'"optional":' + json.dumps(optional).encode())
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(payload)]}}).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": digest_of(payload), "size": len(payload),
                    "annotations": {ANNOTATION: key.sign(payload)}}],
    }).encode()  # fmt: skip
    pusher.blob(repo, payload)
    pusher.blob(repo, config)
    tag = (at or digest).replace(":", "-") + ".sig"
    pusher.manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")
    return tag


def read_signatures(pusher, repo: str, digest: str) -> list[tuple[dict, bytes, str]]:  # type: ignore[no-untyped-def]
    """(layer descriptor, payload, base64 signature) of each layer at ``sha256-<hex>.sig``, over HTTP."""
    tag = digest.replace(":", "-") + ".sig"
    r = pusher.client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    r.raise_for_status()
    manifest = r.json()
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    out = []
    for layer in manifest["layers"]:
        blob = pusher.client.get(f"/v2/{repo}/blobs/{layer['digest']}", follow_redirects=True)
        blob.raise_for_status()
        assert digest_of(blob.content) == layer["digest"]
        out.append((layer, blob.content, layer["annotations"][ANNOTATION]))
    return out


def verify(pub_pem: str, payload: bytes, b64sig: str) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        load_pem_public_key(pub_pem.encode()).verify(base64.b64decode(b64sig), payload, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False
