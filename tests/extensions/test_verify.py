"""Images verified against an ImageVerificationConfig before anything is unpacked (a real registry).

Signatures are made by ``cosign_format`` (cosign's documented layout, pushed over plain HTTP)
and by extvisor's own signer, each checked by the other side's verifier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from extensions import cosign_format as cf
from extensions.images import Image, extension_entries, oci_archive, service_yaml

from extvisor.documents.imageverify import ImageVerification, read_machine_config
from extvisor.extensions import parse_ref
from extvisor.extensions import sign as signer
from extvisor.extensions.store import InstallError
from extvisor.extensions.verify import Policy, normalize


def hello(version: str = "1.0.0", arch: str = "amd64") -> Image:
    return Image([extension_entries("hello-world", {"hello-world": service_yaml("hello-world")}, version=version)], arch)


def document(rules: str, name: str = "policy.yaml") -> ImageVerification:
    text = "apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n" + textwrap.indent(textwrap.dedent(rules), "  ")
    read = read_machine_config(text, name)
    assert not read.findings, read.findings
    return read.verifications[0]


def key_rule(pattern: str, key: cf.Key) -> str:
    pem = textwrap.indent(key.pub_pem, "      ")
    return f"- image: {json.dumps(pattern)}\n  publicKey:\n    certificate: |\n{pem}"


class Fixture:
    """The registry's images: signed with A, with B, unsigned, copied, a signature moved, an index."""

    def __init__(self, registry, pusher):  # type: ignore[no-untyped-def]
        self.registry, self.host = registry, registry.host
        self.a, self.b = cf.Key(), cf.Key()
        repo = lambda name: f"trust/{name}"  # noqa: E731
        self.digest = pusher.image(repo("signed"), "1", hello())
        cf.push_signature(pusher, repo("signed"), self.digest, self.a, f"{self.host}/trust/signed")
        pusher.image(repo("wrongkey"), "1", hello())
        cf.push_signature(pusher, repo("wrongkey"), self.digest, self.b, f"{self.host}/trust/wrongkey")
        pusher.image(repo("unsigned"), "1", hello())
        # the same image and its signature copied to another repository: the identity stays trust/signed
        pusher.image(repo("copied"), "1", hello())
        cf.push_signature(pusher, repo("copied"), self.digest, self.a, f"{self.host}/trust/signed")
        # another image carrying a valid signature of the signed digest
        self.other = pusher.image(repo("moved"), "1", hello("1.0.1"))
        cf.push_signature(pusher, repo("moved"), self.digest, self.a, f"{self.host}/trust/moved", at=self.other)
        self.index, self.platforms = pusher.index(repo("multi"), "1", [hello(arch="amd64"), hello(arch="arm64")])
        cf.push_signature(pusher, repo("multi"), self.index, self.a, f"{self.host}/trust/multi")
        # cosign sign --recursive: the platform's manifest signed on its own, the index not
        self.recursive_index, self.recursive = pusher.index(repo("recursive"), "1", [hello(arch="amd64", version="1.0.2"),
                                                                                     hello(arch="arm64", version="1.0.2")])  # fmt: skip
        cf.push_signature(pusher, repo("recursive"), self.recursive["amd64"], self.a, f"{self.host}/trust/recursive")
        # annotations in the payload (cosign sign -a): not cosign's bare bytes, so read from the registry
        self.annotated = pusher.image(repo("annotated"), "1", hello("1.0.3"))
        cf.push_signature(pusher, repo("annotated"), self.annotated, self.a, f"{self.host}/trust/annotated",
                          optional={"built-by": "ci"})  # fmt: skip

    def ref(self, name: str, tag: str = "1") -> str:
        return self.registry.ref(f"trust/{name}", tag)


@pytest.fixture(scope="module")
def images(registry, pusher):  # type: ignore[no-untyped-def]
    return Fixture(registry, pusher)


def store_state(store) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Everything in the store's directories: must be the same after a refusal."""
    return {d.name: sorted(os.listdir(d)) for d in (store.installed_dir, store.trees, store.staging)}


def refused(store, images, name: str, policy: Policy, reg_options, talos, kinds) -> str:  # type: ignore[no-untyped-def]
    before = store_state(store)
    with pytest.raises(InstallError) as exc:
        store.install(parse_ref(images.ref(name)), reg_options, talos, kinds, policy=policy)
    assert store_state(store) == before  # nothing unpacked, nothing left in staging
    return str(exc.value)


def test_signed_image_installs_by_the_verified_digest(images, store, reg_options, talos, kinds):
    policy = Policy(document(key_rule(f"{images.host}/trust/*", images.a)))
    progress = []
    record, _ = store.install(parse_ref(images.ref("signed")), reg_options, talos, kinds, progress=progress.append, policy=policy)
    assert record.digest == images.digest
    fingerprint = policy.document.rules[0].fingerprint
    assert record.verified == f"key {fingerprint}" and len(fingerprint) == 12
    assert record.verified_rule == f"rule 0 ({images.host}/trust/*)"
    stages = [p.stage for p in progress]
    assert stages.index("verify") < stages.index("fetch") < stages.index("unpack")  # verified before anything is fetched
    assert any(f"signature of {images.digest} verified with key {fingerprint}" in p.message for p in progress)
    assert store.list()[0].as_dict()["verified"] == f"key {fingerprint}"


@pytest.mark.parametrize(("name", "reason"), [
    ("unsigned", "not signed (no cosign signature {host}/trust/unsigned:sha256-"),
    ("wrongkey", "no valid signature: signed with another key (not key "),
    ("copied", "no valid signature: the signature was made for repository {host}/trust/signed, not {host}/trust/copied"),
    ("moved", "no valid signature: the signature is for digest {digest}, not {other}"),
])  # fmt: skip
def test_refusals_name_image_rule_and_reason(images, store, reg_options, talos, kinds, name, reason):
    policy = Policy(document(key_rule(f"{images.host}/trust/*", images.a)))
    message = refused(store, images, name, policy, reg_options, talos, kinds)
    expected = reason.format(host=images.host, digest=images.digest, other=images.other)
    assert f"{images.ref(name)}: refused by rule 0 ({images.host}/trust/*): {expected}" in message


def test_rules_in_order_deny_and_skip(images, store, reg_options, talos, kinds):
    rules = (f"- image: {images.host}/trust/unsigned\n  skip: true\n- image: {images.host}/trust/wrong*\n  deny: true\n"
             + key_rule("*", images.a))  # fmt: skip
    policy = Policy(document(rules))
    message = refused(store, images, "wrongkey", policy, reg_options, talos, kinds)
    assert message.endswith(f"refused by rule 1 ({images.host}/trust/wrong*): deny")
    record, _ = store.install(parse_ref(images.ref("unsigned")), reg_options, talos, kinds, policy=policy)
    assert (record.verified, record.verified_rule) == ("skip", f"rule 0 ({images.host}/trust/unsigned)")
    message = refused(store, images, "copied", policy, reg_options, talos, kinds)
    assert "refused by rule 2 (*): no valid signature" in message  # the catch-all key rule decides the rest


def test_unmatched_is_allowed_unless_signatures_are_required(images, store, reg_options, talos, kinds):
    doc = document(key_rule("registry.example.com/*", images.a))
    message = refused(store, images, "unsigned", Policy(doc, require=True), reg_options, talos, kinds)
    assert message.endswith(f"refused: no rule of the ImageVerificationConfig at policy.yaml:1 matches "
                            f"{images.host}/trust/unsigned, and the node requires signatures (--require-signatures)")  # fmt: skip
    record, _ = store.install(parse_ref(images.ref("unsigned")), reg_options, talos, kinds, policy=Policy(doc))
    assert (record.verified, record.verified_rule) == ("none", "no rule matched")


def test_local_archives_cannot_carry_signatures(images, store, tmp_path, reg_options, talos, kinds):
    archive = tmp_path / "hello.tar"
    oci_archive(archive, hello())
    ref = parse_ref(f"oci-archive:{archive}")
    before = store_state(store)
    with pytest.raises(InstallError, match="cannot carry signatures"):
        store.install(ref, reg_options, talos, kinds, policy=Policy(document(key_rule("*", images.a))))
    assert store_state(store) == before
    skip = Policy(document(f"- image: oci-archive:{tmp_path}/*\n  skip: true\n" + key_rule("*", images.a)))
    record, _ = store.install(ref, reg_options, talos, kinds, policy=skip)
    assert record.verified == "skip"
    record, _ = store.install(ref, reg_options, talos, kinds, policy=Policy(document(key_rule("docker.io/*", images.a))))
    assert record.verified == "none"


def test_index_signed_at_its_digest(images, store, reg_options, talos, kinds):
    policy = Policy(document(key_rule(f"{images.host}/trust/multi", images.a)))
    record, _ = store.install(parse_ref(images.ref("multi")), reg_options, talos, kinds, policy=policy)
    assert record.digest == images.platforms["amd64"] and record.verified.startswith("key ")


@pytest.mark.parametrize("name", ["recursive", "annotated"])
def test_platform_signature_and_annotated_payload(images, store, reg_options, talos, kinds, name):
    policy = Policy(document(key_rule(f"{images.host}/trust/*", images.a)))
    record, _ = store.install(parse_ref(images.ref(name)), reg_options, talos, kinds, policy=policy)
    assert record.verified.startswith("key ")
    assert record.digest == (images.recursive["amd64"] if name == "recursive" else images.annotated)


def test_pinned_digests(images, store, reg_options, talos, kinds):
    policy = Policy(document(key_rule(f"{images.host}/trust/*", images.a)))
    for name, digest, installed in [("signed", images.digest, images.digest), ("multi", images.index, images.platforms["amd64"]),
                                    ("recursive", images.recursive["amd64"], images.recursive["amd64"]),
                                    ("recursive", images.recursive_index, images.recursive["amd64"])]:  # fmt: skip
        ref = images.registry.ref(f"trust/{name}", "1").rsplit(":", 1)[0] + "@" + digest
        record, _ = store.install(parse_ref(ref), reg_options, talos, kinds, policy=policy)
        assert record.digest == installed and record.verified.startswith("key ")
    message = refused(store, images, "unsigned", policy, reg_options, talos, kinds)
    assert "not signed" in message


def test_a_broken_document_refuses_every_install(images, store, reg_options, talos, kinds):
    from extvisor.documents.findings import Finding

    broken = [Finding("cfg.yaml", 4, 5, "error", "rules.0.keyless", "keyless rules are not supported")]
    message = refused(store, images, "signed", Policy(None, broken=broken), reg_options, talos, kinds)
    assert "the node's ImageVerificationConfig cannot be read: cfg.yaml:4:5: error: rules.0.keyless" in message


# -- extvisor's signer, checked by the independent reading ------------------------------------


def test_own_key_and_signature_read_independently(images, registry, pusher, tmp_path, reg_options, store, talos, kinds):
    private, public = signer.write_key_pair(tmp_path / "keys", b"pw")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    key = cf.decrypt_cosign_key(private.read_bytes(), b"pw")  # the documented format, read without extvisor
    pub_pem = public.read_text()
    digest = pusher.image("trust/ours", "1", hello("2.0.0"))
    got, target = signer.sign(parse_ref(registry.ref("trust/ours", "1")), signer.load_private_key(private.read_bytes(), b"pw"), reg_options)
    assert got == digest and target == f"docker://{registry.host}/trust/ours:{digest.replace(':', '-')}.sig"
    [(layer, payload, b64sig)] = cf.read_signatures(pusher, "trust/ours", digest)
    assert layer["mediaType"] == cf.LAYER_TYPE
    assert payload == (cf.PAYLOAD % (f"{registry.host}/trust/ours", digest)).encode()
    assert cf.verify(pub_pem, payload, b64sig) and key.public_key().public_numbers() == \
        signer.load_private_key(private.read_bytes(), b"pw").public_key().public_numbers()  # fmt: skip
    # a second key's signature is appended, the first kept (as cosign does)
    other = cf.Key()
    (tmp_path / "other.key").write_bytes(other.encrypted_pem(b""))
    signer.sign(parse_ref(registry.ref("trust/ours", "1")), signer.load_private_key((tmp_path / "other.key").read_bytes(), b""), reg_options)
    layers = cf.read_signatures(pusher, "trust/ours", digest)
    assert [cf.verify(pub_pem, p, s) for _, p, s in layers] == [True, False]
    assert cf.verify(other.pub_pem, layers[1][1], layers[1][2])
    # and extvisor's verifier accepts it under either key
    rule = f"- image: {registry.host}/trust/ours\n  publicKey:\n    certificate: |\n" + textwrap.indent(pub_pem, "      ")
    record, _ = store.install(parse_ref(registry.ref("trust/ours", "1")), reg_options, talos, kinds, policy=Policy(document(rule)))
    assert record.digest == digest and record.verified.startswith("key ")


def test_wrong_password_is_said(tmp_path):
    private, _ = signer.write_key_pair(tmp_path, b"right")
    with pytest.raises(signer.SignError, match="wrong password"):
        signer.load_private_key(private.read_bytes(), b"wrong")
    with pytest.raises(signer.SignError, match="exists"):
        signer.write_key_pair(tmp_path, b"")


def test_go_tuf_vector_decrypts():
    """go-tuf's own test vector for the envelope (encrypted_test.go, TestDecrypt)."""
    vector = (b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},'
              b'"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},'
              b'"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}')  # fmt: skip
    assert signer.decrypt_key(vector, b"supersecret") == b"reallyimportant"


@pytest.mark.parametrize(("given", "normalized"), [
    ("nginx", "docker.io/library/nginx"), ("nginx:1.2", "docker.io/library/nginx"), ("user/app@sha256:" + "a" * 64, "docker.io/user/app"),
    ("index.docker.io/library/x", "docker.io/library/x"), ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b"),
    ("localhost/x", "localhost/x"), ("ghcr.io/siderolabs/nfs-utils:2.7.1", "ghcr.io/siderolabs/nfs-utils"),
])  # fmt: skip
def test_names_are_normalized(given, normalized):
    assert normalize(given) == normalized


# -- the CLI: validate --image-verification, sign, gen signing-key ------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "extvisor", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_cli_gen_sign_and_validate(images, registry, pusher, tmp_path):
    env = {"EXTVISOR_SIGNING_PASSWORD": "cli-pw"}
    r = cli("gen", "signing-key", "--output-dir", str(tmp_path / "k"), env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k/cosign.key").read_text().startswith("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----")
    digest = pusher.image("trust/cli", "1", hello("3.0.0"))
    access = ["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)]
    r = cli("extensions", "sign", registry.ref("trust/cli", "1"), "--key", str(tmp_path / "k/cosign.key"), *access, env=env)
    assert r.returncode == 0, r.stderr
    assert digest in r.stdout
    policy = tmp_path / "policy.yaml"
    pem = textwrap.indent((tmp_path / "k/cosign.pub").read_text(), "          ")
    policy.write_text(f"apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n  - image: {registry.host}/trust/cli\n"
                      f"    publicKey:\n      certificate: |\n{pem}  - image: '*'\n    deny: true\n")  # fmt: skip
    r = cli("extensions", "validate", registry.ref("trust/cli", "1"), "--image-verification", str(policy), *access, "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["digest"] == digest and out["verified"].startswith("key ")
    assert out["verified_rule"] == f"rule 0 ({registry.host}/trust/cli)"
    r = cli("extensions", "validate", images.ref("unsigned"), "--image-verification", str(policy), *access)
    assert r.returncode == 1
    assert f"{images.ref('unsigned')}: refused by rule 1 (*): deny" in r.stdout
    r = cli("extensions", "sign", registry.ref("trust/cli", "1"), "--key", str(tmp_path / "k/cosign.key"), *access,
            env={"EXTVISOR_SIGNING_PASSWORD": "nope"})  # fmt: skip
    assert r.returncode == 1 and "wrong password" in r.stderr


def test_keyless_document_is_refused_at_load(tmp_path):
    path = tmp_path / "verify.yaml"
    path.write_text("apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n  - image: registry.k8s.io/*\n"
                    "    keyless:\n      issuer: https://accounts.google.com\n      subject: a@b\n")  # fmt: skip
    r = cli("validate", str(path))
    assert r.returncode == 1
    assert f"{path}:5:5: error: rules.0.keyless: keyless rules are not supported: they need Fulcio and Rekor" in r.stdout
    r = cli("extensions", "validate", "oci-archive:/nonexistent.tar", "--image-verification", str(path))
    assert r.returncode == 1 and f"{path}:5:5: error: rules.0.keyless" in r.stderr


def test_a_signature_cosign_made():
    """A signature made by cosign itself: containers/image's test fixture (signature/fixtures/
    dir-img-cosign-valid, its cosign.pub), the one real cosign output on hand (cosign is not
    installable here). The verifier accepts it, and extvisor's signer writes the same payload bytes."""
    from extvisor.documents.imageverify import load_public_key
    from extvisor.extensions.verify import canonical_payloads, check_payload, check_signature

    pub = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFNLqFhf4fiN6o/glAuYnq2jYUeL0\n"
           "vRuLu/z39pmbVwS9ff5AYnlwaP9sxREajdLY9ynM6G1sy6AAmb7Z63TsLg==\n-----END PUBLIC KEY-----\n")  # fmt: skip
    repo, digest = "192.168.64.2:5000/cosign-signed-single-sample", "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
    payload = (b'{"critical":{"identity":{"docker-reference":"192.168.64.2:5000/cosign-signed-single-sample"},"image":'
               b'{"docker-manifest-digest":"sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"},'
               b'"type":"cosign container image signature"},"optional":null}')  # fmt: skip
    b64sig = "MEYCIQDmtamqYPjMg81nqeBhptrPls44aA/r7PwLmspINJY4MwIhANKRpqe2E9UCBtGFdPoz/8jAbaQm4uP4h+IpwKTE6ClR"
    assert check_signature(load_public_key(pub), payload, b64sig)
    assert not check_signature(load_public_key(pub), payload.replace(b"single", b"double"), b64sig)
    assert check_payload(payload, digest, repo) == ""
    assert signer.payload(repo, digest) == payload
    assert cf.digest_of(payload) in canonical_payloads(repo, repo + ":latest", digest)
