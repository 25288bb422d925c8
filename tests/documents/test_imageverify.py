"""The ImageVerificationConfig document: read with located findings, and kept by the ConfigStore."""

from __future__ import annotations

import asyncio
import textwrap

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from extvisor.documents.imageverify import fingerprint, load_image_verification, read_machine_config
from extvisor.runtime.configstore import ConfigStore

HEAD = "apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n"


def pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def key_rule(pattern: str, key_pem: str) -> str:
    return f"  - image: {pattern}\n    publicKey:\n      certificate: |\n" + textwrap.indent(key_pem, "        ")


def messages(text: str) -> list[str]:
    return [str(f) for f in read_machine_config(text, "v.yaml").findings]


def test_rules_in_order_and_matching():
    key = pem()
    doc = read_machine_config(HEAD + key_rule("reg.example.com/ext/*", key) + "  - image: '*'\n    deny: true\n", "v.yaml")
    assert not doc.findings and doc.holds_verification
    [verification] = doc.verifications
    assert [(r.index, r.pattern, r.action) for r in verification.rules] == [(0, "reg.example.com/ext/*", "publicKey"), (1, "*", "deny")]
    assert verification.match("reg.example.com/ext/a/b").index == 0  # * crosses /
    assert verification.match("docker.io/library/nginx").index == 1
    assert verification.rules[0].fingerprint == fingerprint(verification.rules[0].public_key())
    assert str(verification.rules[0]) == "rule 0 (reg.example.com/ext/*)" and verification.where == "v.yaml:1"


def test_every_mistake_at_its_line():
    text = HEAD + (
        "  - image: registry.k8s.io/*\n    keyless:\n      issuer: https://accounts.google.com\n"
        "  - image: a/b:1.0\n    skip: true\n"
        "  - image: c/*\n    skip: maybe\n"
        "  - image: d/*\n"
        "  - image: e/*\n    skip: true\n    deny: true\n"
        "  - image: f/*\n    publicKey:\n      certificate: not a key\n"
        "  - image: g/*\n    verify: true\n"
    )  # fmt: skip
    assert messages(text) == [
        "v.yaml:5:5: error: rules.0.keyless: keyless rules are not supported: they need Fulcio and Rekor (sigstore's "
        "public services), which an offline node cannot reach; use publicKey with a cosign.pub",
        'v.yaml:7:12: error: rules.1.image: image "a/b:1.0" must not hold a tag or digest: it matches registry/repository',
        'v.yaml:10:11: error: rules.2.skip: skip must be true or false (got "maybe")',
        "v.yaml:11:5: error: rules.3: a rule needs one of publicKey, skip: true, deny: true",
        "v.yaml:12:5: error: rules.4: a rule takes one of publicKey, skip: true, deny: true (got skip, deny)",
        "v.yaml:17:20: error: rules.5.publicKey.certificate: cannot read the key: not a PEM public key "
        "(-----BEGIN PUBLIC KEY-----) or certificate (-----BEGIN CERTIFICATE-----)",
        "v.yaml:19:5: error: rules.6.verify: unknown key `verify`",
    ]  # fmt: skip
    assert messages("apiVersion: v1alpha2\nkind: ImageVerificationConfig\nrules: []\n---\n" + HEAD + "  []\n") == [
        'v.yaml:1:13: error: apiVersion: apiVersion must be v1alpha1, not "v1alpha2"',
        "v.yaml:5:1: error: a second ImageVerificationConfig document (the first is at line 1): a node takes at most one",
    ]


def test_load_for_the_cli(tmp_path):
    path = tmp_path / "only-esc.yaml"
    path.write_text("apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: x\n")
    document, findings = load_image_verification(path)
    assert document is None and [f.message for f in findings] == ["no ImageVerificationConfig document in this file"]


def test_config_store_reads_it_with_the_service_configs(tmp_path):
    async def go() -> None:
        store = ConfigStore(tmp_path, tmp_path / "files")
        key = pem()
        (tmp_path / "a.yaml").write_text("apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: svc\nenvironment: [A=1]\n"
                                         "---\n" + HEAD + key_rule("reg/*", key))  # fmt: skip
        assert store.reload() == {"svc"}
        assert store.verification is not None and store.verification.rules[0].pattern == "reg/*"
        assert store.verification_errors == []
        # a broken document is not kept from before: it makes installs refused
        (tmp_path / "a.yaml").write_text("apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: svc\nenvironment: [A=1]\n"
                                         "---\n" + HEAD + "  - image: '*'\n    keyless: {}\n")  # fmt: skip
        store.reload()
        assert store.verification is None
        assert [f.field for f in store.verification_errors] == ["rules.0.keyless"]
        assert store.get("svc").environment == ["A=1"]  # the service's document stays in force
        # two files, one document each: a node takes one
        (tmp_path / "a.yaml").write_text(HEAD + key_rule("reg/*", key))
        (tmp_path / "b.yaml").write_text(HEAD + "  - image: '*'\n    skip: true\n")
        store.refresh()  # an install reads changes now; the watcher still gets the changed names
        assert store.verification is None
        assert [f.message for f in store.verification_errors] == [
            f"a second ImageVerificationConfig document (the first is at {tmp_path / 'a.yaml'}:1): a node takes at most one"]
        assert store._pending == {"svc"}
        (tmp_path / "b.yaml").unlink()
        store.reload()
        assert store.verification is not None and store.verification_errors == []

    asyncio.run(go())
