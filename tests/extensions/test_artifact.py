"""A declared-state file as an OCI artifact, pushed, resolved, pulled and promoted through
skopeo against the private TLS registry with a password (Debian's skopeo 1.9.3)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from conftest import free_port

from extvisor.extensions import FetchOptions
from extvisor.extensions import artifact as art

DOC = b"apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions: []\n"


def ref(registry, repo: str, tag: str):  # type: ignore[no-untyped-def]
    return art.docker_ref(registry.ref(repo, tag))


def test_manifest_is_an_oci_1_1_artifact_and_deterministic() -> None:
    raw = art.manifest_bytes(DOC, "node.yaml", 3)
    assert raw == art.manifest_bytes(DOC, "node.yaml", 3)
    m = json.loads(raw)
    assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert m["artifactType"] == art.ARTIFACT_TYPE == "application/vnd.extvisor.node-state.v1+yaml"
    assert m["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                           "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}  # fmt: skip
    assert m["layers"] == [{"mediaType": art.LAYER_TYPE, "digest": "sha256:" + hashlib.sha256(DOC).hexdigest(),
                            "size": len(DOC), "annotations": {"org.opencontainers.image.title": "node.yaml"}}]  # fmt: skip
    assert m["annotations"] == {"org.opencontainers.image.title": "node.yaml", "dev.extvisor.generation": "3"}
    assert art.describe(art.read_manifest(raw, "x")) == ("node.yaml", 3)
    assert art.sha256(raw) != art.sha256(art.manifest_bytes(DOC, "node.yaml", 4))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"artifactType": "application/vnd.unknown.artifact.v1"}, "not published with extvisor publish"),
        ({"artifactType": None}, "artifactType is None"),
        ({"mediaType": "application/vnd.oci.image.index.v1+json"}, "not an OCI image manifest"),
        ({"layers": []}, "exactly one layer"),
        ({"layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:00", "size": 1}]},
         "media type is 'application/vnd.oci.image.layer.v1.tar+gzip'"),
        ({"layers": [{"mediaType": art.LAYER_TYPE, "digest": "sha256:00", "size": 2 << 20}]}, "not between 0 and"),
    ],
)
def test_what_is_not_an_extvisor_artifact_is_refused_saying_why(change: dict, message: str) -> None:
    m = json.loads(art.manifest_bytes(DOC, "node.yaml", 1))
    m.update(change)
    with pytest.raises(art.ArtifactError, match="docker://r/x:1: .*" + re.escape(message)):
        art.read_manifest(json.dumps(m).encode(), "docker://r/x:1")


def test_push_resolve_pull_and_promote(registry, reg_options: FetchOptions, tmp_path: Path) -> None:
    canary, stable = ref(registry, "fleet/art", "canary"), ref(registry, "fleet/art", "stable")
    digest = art.push(DOC, "node.yaml", 1, canary, reg_options)
    assert digest == art.sha256(art.manifest_bytes(DOC, "node.yaml", 1))
    resolved, raw = art.resolve(canary, reg_options, tmp_path)
    assert resolved == digest and json.loads(raw)["artifactType"] == art.ARTIFACT_TYPE  # artifactType survived the push
    got = art.pull(canary, reg_options, tmp_path, digest)
    assert (got.digest, got.document, got.title, got.generation) == (digest, DOC, "node.yaml", 1)
    assert got.ref == f"{registry.host}/fleet/art@{digest}"
    assert list(tmp_path.glob("artifact-*")) == []  # the pulled copy is not left behind
    # promotion: bytes and digest unchanged at the other tag
    art.copy(art.by_digest(canary, digest), stable, reg_options)
    assert art.resolve(stable, reg_options, tmp_path)[0] == digest
    assert art.pull(stable, reg_options, tmp_path).document == DOC


def test_pull_of_another_digest_than_asked_is_refused(registry, reg_options: FetchOptions, tmp_path: Path) -> None:
    tag = ref(registry, "fleet/art2", "v")
    art.push(DOC, "node.yaml", 1, tag, reg_options)
    with pytest.raises(art.RegistryError, match="manifest unknown"):
        art.pull(tag, reg_options, tmp_path, "sha256:" + "0" * 64)


def test_next_generation(registry, reg_options: FetchOptions, tmp_path: Path) -> None:
    tag = ref(registry, "fleet/gen", "stable")
    assert art.next_generation(DOC, "node.yaml", tag, reg_options, tmp_path) == 1  # an empty tag
    first = art.push(DOC, "node.yaml", 1, tag, reg_options)
    assert art.next_generation(DOC, "node.yaml", tag, reg_options, tmp_path) == 1  # same file: same generation
    assert art.sha256(art.manifest_bytes(DOC, "node.yaml", 1)) == first  # ... so the same digest
    assert art.next_generation(DOC + b"# changed\n", "node.yaml", tag, reg_options, tmp_path) == 2
    assert art.next_generation(DOC, "other.yaml", tag, reg_options, tmp_path) == 2


def test_an_image_at_the_tag_is_not_taken_for_a_document(registry, pusher, reg_options: FetchOptions, tmp_path: Path) -> None:
    from extensions.test_registry import hello_image

    pusher.image("fleet/image", "v1", hello_image())
    tag = ref(registry, "fleet/image", "v1")
    with pytest.raises(art.ArtifactError, match="artifactType is None"):
        art.next_generation(DOC, "node.yaml", tag, reg_options, tmp_path)
    with pytest.raises(art.ArtifactError, match="artifactType is None"):
        art.pull(tag, reg_options, tmp_path)


def test_registry_errors_say_missing_or_unreachable(registry, reg_options: FetchOptions, tmp_path: Path) -> None:
    with pytest.raises(art.RegistryError) as missing:
        art.resolve(ref(registry, "fleet/none", "x"), reg_options, tmp_path)
    assert art.missing(missing.value)
    down = art.docker_ref(f"docker://127.0.0.1:{free_port()}/fleet/x:y")
    with pytest.raises(art.RegistryError, match="connection refused") as unreachable:
        art.resolve(down, reg_options, tmp_path, timeout=30)
    assert not art.missing(unreachable.value)
    noauth = FetchOptions(cert_dir=reg_options.cert_dir)
    with pytest.raises(art.RegistryError, match="unauthorized|authentication required"):
        art.resolve(ref(registry, "fleet/art", "canary"), noauth, tmp_path)


def test_signed_before_the_tag_moves_and_still_verified_after_a_promotion(registry, reg_options: FetchOptions,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    from extvisor.documents.imageverify import Rule
    from extvisor.extensions.sign import load_private_key, write_key_pair
    from extvisor.extensions.verify import VerifyError, verify_signature

    keys = {k: write_key_pair(tmp_path / k, b"pw") for k in "AB"}
    rule = {k: Rule(0, f"{registry.host}/fleet/*", "publicKey", pub.read_text()) for k, (_, pub) in keys.items()}
    canary, stable = ref(registry, "fleet/signed", "canary"), ref(registry, "fleet/signed", "stable")
    digest = art.sha256(art.manifest_bytes(DOC, "node.yaml", 1))
    signature = art.sign_digest(canary, digest, load_private_key(keys["A"][0].read_bytes(), b"pw"), reg_options)
    assert signature == f"docker://{registry.host}/fleet/signed:{digest.replace(':', '-')}.sig"
    assert art.push(DOC, "node.yaml", 1, canary, reg_options) == digest  # the signature was there first
    verdict = verify_signature(art.by_digest(canary, digest), rule["A"], reg_options, tmp_path)
    assert verdict.digest == digest and verdict.verified.startswith("key ")
    with pytest.raises(VerifyError, match="signed with another key"):
        verify_signature(art.by_digest(canary, digest), rule["B"], reg_options, tmp_path)
    art.copy(art.by_digest(canary, digest), stable, reg_options)  # promotion within the repository
    pinned = art.by_digest(stable, art.resolve(stable, reg_options, tmp_path)[0])
    assert verify_signature(pinned, rule["A"], reg_options, tmp_path).digest == digest
    elsewhere = ref(registry, "fleet/other", "stable")  # another repository: the signature does not follow
    art.copy(art.by_digest(canary, digest), elsewhere, reg_options)
    with pytest.raises(VerifyError, match="not signed"):
        verify_signature(art.by_digest(elsewhere, digest), rule["A"], reg_options, tmp_path)
