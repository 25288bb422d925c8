"""Extensions in a running daemon (runc): install, upgrade, remove beside other services; restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time

import pytest
from daemon_process import DaemonProcess
from extensions.images import Image, extension_entries, file

from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc

NFS_SERVICE = """\
name: {name}
container:
  entrypoint: /bin/sh
  args: ["-c", "echo {name} {version}; cat /ext-sbin/mount.nfs; echo; exec sleep 1000"]
  mounts:
    - source: /usr/local/sbin
      destination: /ext-sbin
      type: bind
      options: [bind, ro]
restart: always
"""


def nfs(version: str, busybox) -> Image:
    services = {n: NFS_SERVICE.format(name=n, version=version) for n in ("rpcbind", "rpc-statd")}
    files = {"rootfs/usr/local/sbin/mount.nfs": f"mount.nfs from the image {version}".encode()}
    return Image([extension_entries("nfs-utils", services, files, version=version, busybox=busybox)])


@pytest.fixture
def daemon(tmp_path, registry, busybox):
    d = DaemonProcess(tmp_path, extra=["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)])
    (d.config_dir / "plain.yaml").write_text("name: plain\ncontainer:\n  entrypoint: /bin/sleep\n  args: ['1000']\nrestart: always\n")
    make_busybox_rootfs(d.rootfs_dir / "plain")
    d.start()
    yield d
    if d.proc and d.proc.poll() is None:
        d.stop()


def log_of(d: DaemonProcess, service_id: str) -> str:
    return b"".join(d.client.logs(service_id)).decode(errors="replace")


def test_install_upgrade_remove_beside_other_services(daemon, registry, pusher, busybox):
    d = daemon
    plain = d.wait_state("ext-plain", "Running")
    pusher.image("siderolabs/nfs-utils", "2.7.1", nfs("2.7.1", busybox))
    ref = registry.ref("siderolabs/nfs-utils", "2.7.1")
    out = d.cli("extensions", "install", ref)
    assert "installed nfs-utils 2.7.1" in out.stdout and "ext-rpc-statd, ext-rpcbind" in out.stdout
    assert "fetch" in out.stderr and "unpack 1/1" in out.stderr  # progress, streamed
    first = {sid: d.wait_state(sid, "Running")["pid"] for sid in ("ext-rpcbind", "ext-rpc-statd")}
    d.wait(lambda: "mount.nfs from the image 2.7.1" in log_of(d, "ext-rpcbind"), what="merged /usr/local/sbin mounted")

    table = d.cli("extensions").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "VERSION", "AUTHOR", "DIGEST", "VERIFIED", "SERVICES"]
    assert table[1].split()[:3] == ["0", "nfs-utils", "2.7.1"] and table[1].split()[-1] == "ext-rpc-statd,ext-rpcbind"
    [item] = json.loads(d.cli("extensions", "-o", "json").stdout)
    assert {k: item[k] for k in ("id", "name", "version", "ref")} == {"id": "0", "name": "nfs-utils", "version": "2.7.1", "ref": ref}
    assert item["description"] and item["author"] == "Sidero Labs" and item["digest"].startswith("sha256:")
    assert d.client.request("GET", "/v1/extensions/nfs-utils") == item

    pusher.image("siderolabs/nfs-utils", "2.7.2", nfs("2.7.2", busybox))
    d.cli("extensions", "install", registry.ref("siderolabs/nfs-utils", "2.7.2"))
    for sid, pid in first.items():  # only that extension's services restart, on the new rootfs
        d.wait(lambda sid=sid, pid=pid: d.service(sid)["state"] == "Running" and d.service(sid)["pid"] != pid, what=f"{sid} restarted")
    d.wait(lambda: "rpcbind 2.7.2" in log_of(d, "ext-rpcbind") and "image 2.7.2" in log_of(d, "ext-rpcbind"), what="new version running")
    assert d.service("ext-plain")["pid"] == plain["pid"]

    out = d.cli("extensions", "remove", "nfs-utils")
    assert "ext-rpcbind" in out.stdout
    ids = [s["id"] for s in d.client.services()]
    assert ids == ["ext-plain"] and d.service("ext-plain")["pid"] == plain["pid"]
    assert d.cli("extensions").stdout.strip() == "no extension installed"
    assert list((d.state_dir / "extensions" / "trees").iterdir()) == []


def test_installed_extensions_survive_a_restart_and_a_kill(daemon, registry, pusher, busybox):
    d = daemon
    pusher.image("siderolabs/nfs-utils", "restart", nfs("3.0.0", busybox))
    d.cli("extensions", "install", registry.ref("siderolabs/nfs-utils", "restart"))
    d.wait_state("ext-rpcbind", "Running")
    assert d.stop() == 0
    d.start()
    assert d.wait_state("ext-rpcbind", "Running")["source"].startswith("extension:nfs-utils:")
    d.wait_state("ext-plain", "Running")
    d.stop(signal.SIGKILL)
    d.start()
    d.wait_state("ext-rpc-statd", "Running")
    assert [i["name"] for i in d.client.request("GET", "/v1/extensions")] == ["nfs-utils"]


def test_refused_and_clashing_images(daemon, registry, pusher, busybox):
    d = daemon
    clash = Image([extension_entries("other", {"plain": NFS_SERVICE.format(name="plain", version="1")}, busybox=busybox)])
    pusher.image("siderolabs/other", "1", clash)
    out = d.cli("extensions", "install", registry.ref("siderolabs/other", "1"), check=False)
    assert out.returncode == 1
    assert "service plain of extension 'other' clashes with service plain loaded from " + str(d.config_dir / "plain.yaml") in out.stderr
    bad = Image([[*extension_entries("evil", {"evil": NFS_SERVICE.format(name="evil", version="1")}), file("rootfs/etc/foo", "x")]])
    pusher.image("siderolabs/evil", "1", bad)
    out = d.cli("extensions", "install", registry.ref("siderolabs/evil", "1"), check=False)
    assert out.returncode == 1 and 'rootfs/etc/foo: error: path "/etc/foo" is not allowed in extensions' in out.stderr
    assert [s["id"] for s in d.client.services()] == ["ext-plain"]
    assert d.cli("extensions").stdout.strip() == "no extension installed"


def test_sigkill_during_install_leaves_nothing(daemon, registry, pusher, busybox):
    d = daemon
    big = Image([[*extension_entries("big", {"big": NFS_SERVICE.format(name="big", version="1")}, busybox=busybox),
                  *(file(f"rootfs/usr/local/share/big/f{i}", bytes([i]) * (2 << 20)) for i in range(40))]])  # fmt: skip
    pusher.image("siderolabs/big", "1", big)
    proc = subprocess.Popen([*d.args()[:3], "extensions", "install", registry.ref("siderolabs/big", "1")],
                            env={**os.environ, "EXTVISOR_SOCKET": str(d.socket)}, stderr=subprocess.PIPE, text=True)  # fmt: skip
    staging = d.state_dir / "extensions" / "staging"
    d.wait(lambda: any(staging.glob("*/image/rootfs/usr/local/share/big/*")), timeout=30, what="unpacking under way")
    d.stop(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode != 0
    d.start()
    d.wait_state("ext-plain", "Running")
    assert list(staging.iterdir()) == [] and list((d.state_dir / "extensions" / "trees").iterdir()) == []
    assert d.cli("extensions").stdout.strip() == "no extension installed"
    time.sleep(0.2)
    assert [s["id"] for s in d.client.services()] == ["ext-plain"]


def test_validate_needs_no_daemon(tmp_path, registry, pusher, busybox):
    pusher.image("siderolabs/nfs-utils", "validate", nfs("2.7.1", busybox))
    d = DaemonProcess(tmp_path)  # never started: only its cli helper
    ref = registry.ref("siderolabs/nfs-utils", "validate")
    out = d.cli("extensions", "validate", ref, "--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir))
    assert out.stdout.strip().endswith("nfs-utils 2.7.1 is valid for Talos 1.12.11 (ext-rpc-statd, ext-rpcbind)")
    out = d.cli("extensions", "validate", ref, "--talos-version", "1.4.0", "--authfile", str(registry.authfile),
                "--cert-dir", str(registry.cert_dir), "-o", "json", check=False)  # fmt: skip
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["ok"] is False and report["problems"][0]["message"] == (
        'error validating extension "nfs-utils": version constraint >= v1.5.0 can\'t be satisfied with Talos version 1.4.0')
    src = tmp_path / "unpacked"
    (src / "rootfs/usr/local/etc/containers").mkdir(parents=True)
    (src / "manifest.yaml").write_text("version: v1alpha1\nmetadata:\n  name: d\n  version: '1.0'\n")
    (src / "rootfs/usr/local/etc/containers/d.yaml").write_text(textwrap.dedent("""\
        name: d
        container:
          entrypoint: ./d
        restart: sometimes
        """))  # fmt: skip
    out = d.cli("extensions", "validate", str(src), check=False)
    assert out.returncode == 1
    assert "rootfs/usr/local/etc/containers/d.yaml:4:10: error: restart: restart kind is invalid" in out.stdout
