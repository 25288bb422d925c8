"""``extvisor gen`` and ``extvisor config``: files, modes, contexts, as talosctl has them."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509

from extvisor.cli.remote import config, gen
from extvisor.remote import certs


def run(group, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(group, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    run(gen, "ca", str(tmp_path / "pki" / "ca"))
    return tmp_path / "pki" / "ca"


def test_gen_ca_and_server(ca_dir: Path, tmp_path: Path) -> None:
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700  # created
    run(gen, "server", str(tmp_path / "n2"), "--ca", str(ca_dir), "--san", "127.0.0.2,node2.test", "--san", "::1")
    cert = x509.load_pem_x509_certificate((tmp_path / "n2" / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(i) for i in san.get_values_for_type(x509.IPAddress)) == ["127.0.0.2", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["node2.test"]
    assert stat.S_IMODE((tmp_path / "n2" / "server.key").stat().st_mode) == 0o600
    again = run(gen, "ca", str(ca_dir), ok=False)
    assert again.exit_code == 1 and "already exists" in again.stderr
    missing = run(gen, "server", str(tmp_path / "n3"), "--ca", str(tmp_path / "nope"), "--san", "x", ok=False)
    assert missing.exit_code == 1 and "cannot read" in missing.stderr


def test_config_new_writes_a_talosconfig_with_a_client_certificate(ca_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "cfg" / "reader"
    out = run(config, "new", str(target), "--ca", str(ca_dir), "--roles", "os:reader",
              "-e", "127.0.0.2:50001,127.0.0.3:50001", "--hours", "48")  # fmt: skip
    assert "context 'reader'" in out.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    raw = yaml.safe_load(target.read_text())
    assert raw["context"] == "reader"
    ctx = raw["contexts"]["reader"]
    assert ctx["endpoints"] == ["127.0.0.2:50001", "127.0.0.3:50001"] and "nodes" not in ctx
    assert base64.b64decode(ctx["ca"]) == (ca_dir / "ca.crt").read_bytes()
    cert = x509.load_pem_x509_certificate(base64.b64decode(ctx["crt"]))
    assert certs.cert_roles(cert) == {"os:reader"}
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc - certs.BACKDATE).total_seconds() == 48 * 3600
    certs.load_key(base64.b64decode(ctx["key"]))
    refused = run(config, "new", str(target), "--ca", str(ca_dir), "-e", "x", ok=False)
    assert refused.exit_code == 1 and "already exists" in refused.stderr


def test_contexts_merge_switch_and_edit(ca_dir: Path, tmp_path: Path) -> None:
    main = tmp_path / "config"
    run(config, "new", str(tmp_path / "r"), "--ca", str(ca_dir), "--roles", "os:reader", "-e", "127.0.0.2:50001")
    run(config, "new", str(tmp_path / "o"), "--ca", str(ca_dir), "--roles", "os:operator", "-e", "127.0.0.2:50001",
        "-n", "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5", "--context", "ops")  # fmt: skip
    run(config, "merge", str(tmp_path / "r"), "--config", str(main))
    out = run(config, "merge", str(tmp_path / "r"), "--config", str(main))
    assert out.stderr.strip() == 'renamed extvisor config context "reader" -> "reader-1"'
    run(config, "merge", str(tmp_path / "o"), "--config", str(main))
    listing = run(config, "contexts", "--config", str(main)).output.splitlines()
    assert listing[0].split() == ["CURRENT", "NAME", "ENDPOINTS", "NODES"]
    assert listing[1].split() == ["*", "ops", "127.0.0.2:50001", "127.0.0.2,127.0.0.3,127.0.0.4,..."]
    assert [line.split()[0] for line in listing[2:]] == ["reader", "reader-1"]
    run(config, "context", "reader", "--config", str(main))
    run(config, "endpoint", "127.0.0.7:50002", "127.0.0.8", "--config", str(main))
    run(config, "node", "127.0.0.7", "--config", str(main))
    info = run(config, "info", "--config", str(main)).output
    assert "Current context:     reader\n" in info
    assert "Nodes:               127.0.0.7\n" in info
    assert "Endpoints:           127.0.0.7:50002, 127.0.0.8\n" in info
    assert "Roles:               os:reader\n" in info
    assert "Certificate expires: 1 year from now (" in info
    run(config, "node", "--config", str(main))  # no nodes: cleared
    assert "Nodes:               not defined" in run(config, "info", "--config", str(main)).output
    as_json = run(config, "info", "--config", str(main), "--context", "ops", "-o", "json").output
    assert '"roles": [\n    "os:operator"\n  ]' in as_json
    bad = run(config, "context", "nope", "--config", str(main), ok=False)
    assert bad.exit_code == 1 and "context 'nope' is not defined" in bad.stderr
    bad = run(config, "endpoint", "host:port", "--config", str(main), ok=False)
    assert bad.exit_code == 1 and "port must be a number" in bad.stderr
    assert stat.S_IMODE(main.stat().st_mode) == 0o600


def test_a_real_talosconfig_with_talos_key_labels_is_read(ca_dir: Path, tmp_path: Path) -> None:
    ca = certs.load_pair(ca_dir)
    client = certs.new_client(ca, ["os:admin"])
    talos_key = client.key.replace(b"PRIVATE KEY", b"ED25519 PRIVATE KEY")
    doc = {"context": "admin@lab", "contexts": {"admin@lab": {
        "endpoints": ["10.5.0.2"], "nodes": ["10.5.0.2"],
        "ca": base64.b64encode(ca.crt).decode(), "crt": base64.b64encode(client.crt).decode(),
        "key": base64.b64encode(talos_key).decode()}}}  # fmt: skip
    (tmp_path / "talosconfig").write_text(yaml.safe_dump(doc))
    info = run(config, "info", "--config", str(tmp_path / "talosconfig")).output
    assert "Roles:               os:admin" in info


def test_gen_never_writes_a_key_through_a_symlink(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    d.mkdir(mode=0o700)
    stolen = tmp_path / "attacker" / "stolen.key"
    stolen.parent.mkdir()
    (d / "ca.key").symlink_to(stolen)  # dangling: Path.exists() says no
    out = run(gen, "ca", str(d), ok=False)
    assert out.exit_code == 1 and f"{d / 'ca.key'} already exists (a symlink); not overwriting it" in out.stderr
    assert not stolen.exists() and not (d / "ca.crt").exists()
    run(gen, "ca", str(d), "--force")  # the symlink is replaced, never followed
    assert not stolen.exists() and not (d / "ca.key").is_symlink()
    assert stat.S_IMODE((d / "ca.key").stat().st_mode) == 0o600
    certs.load_pair(d)


@pytest.mark.parametrize("setup,expected", [
    ("other-user", "belongs to uid 65534, not to you"),
    ("world-writable", "can be written by others (mode 0777)"),
    ("sticky-tmp", "can be written by others (mode 1777)"),
    ("group-writable", "can be written by its group (mode 0770)"),
    ("symlinked-dir", "it is a symlink"),
])  # fmt: skip
def test_gen_refuses_a_directory_others_own_or_can_write(tmp_path: Path, ca_dir: Path, setup: str, expected: str) -> None:
    d = tmp_path / "keys"
    if setup == "symlinked-dir":
        (tmp_path / "real").mkdir(mode=0o700)
        d.symlink_to(tmp_path / "real")
    else:
        d.mkdir()
        mode = {"world-writable": 0o777, "sticky-tmp": 0o1777, "group-writable": 0o770}.get(setup, 0o700)
        d.chmod(mode)
        if setup == "other-user":
            import os

            os.chown(d, 65534, 65534)
    for args in (["ca", str(d)], ["server", str(d), "--ca", str(ca_dir), "--san", "x"]):
        out = run(gen, *args, ok=False)
        assert out.exit_code == 1 and expected in out.stderr and "for keys: " in out.stderr, out.stderr
    assert not any(p.name.endswith(".key") for p in (tmp_path / "real" if setup == "symlinked-dir" else d).iterdir())
    out = run(config, "new", str(d / "talosconfig"), "--ca", str(ca_dir), "-e", "127.0.0.2", ok=False)
    assert out.exit_code == 1 and expected in out.stderr and not (d / "talosconfig").exists()
