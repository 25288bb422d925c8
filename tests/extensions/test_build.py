"""``extvisor extensions build``: a project folder to an image, reproducible, checked, round-tripped."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from extensions.registry import require_tools

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SERVICE = """\
name: hello
container:
  entrypoint: ./hello
  environment:
    - GREETING=bonjour
restart: always
"""
SCRIPT = "#!/bin/sh\necho \"hello says $GREETING\"\ni=0\nwhile :; do i=$((i+1)); echo \"tick $i\"; sleep 0.3; done\n"


def extvisor(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "extvisor", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)  # fmt: skip


def project(path: Path, busybox: Path, manifest: bool = True) -> Path:
    """A dev-mode project folder: hello.yaml, hello/ (a busybox rootfs) and manifest.yaml."""
    from extvisor.testing import make_busybox_rootfs

    path.mkdir(parents=True)
    (path / "hello.yaml").write_text(SERVICE)
    rootfs = make_busybox_rootfs(path / "hello")
    (rootfs / "hello").write_text(SCRIPT)
    (rootfs / "hello").chmod(0o755)
    if manifest:
        shutil.copy(EXAMPLES / "hello-world-extension" / "manifest.yaml", path / "manifest.yaml")
        text = (path / "manifest.yaml").read_text().replace("name: hello-world", "name: hello")
        (path / "manifest.yaml").write_text(text)
    return path


def digest_of(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.split()[-1]


def layer_of(layout: Path) -> tarfile.TarFile:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    return tarfile.open(layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:])


@pytest.fixture
def tools(busybox):
    require_tools("skopeo")
    return busybox


def test_same_folder_same_digest_anywhere_and_anytime(tools, tmp_path):
    one = project(tmp_path / "a" / "proj", tools)
    first = digest_of(extvisor("extensions", "build", str(one), "-o", f"oci:{tmp_path}/out1:v1"))
    # elsewhere, later, other mtimes, another umask's group bits, SOURCE_DATE_EPOCH=0 said aloud
    time.sleep(1.1)
    two = tmp_path / "b" / "deeper" / "copy"
    shutil.copytree(one, two, symlinks=True)
    for p in two.rglob("*"):
        if not p.is_symlink():
            os.utime(p, (1e9, 1e9))
            p.chmod(p.stat().st_mode | stat.S_IWGRP)
    second = digest_of(extvisor("extensions", "build", "copy", "-o", f"oci-archive:{tmp_path}/out2.tar",
                                cwd=two.parent, env={"SOURCE_DATE_EPOCH": "0"}))  # fmt: skip
    assert first == second and first.startswith("sha256:")
    later = digest_of(extvisor("extensions", "build", str(one), "-o", f"oci:{tmp_path}/out3:v1",
                               env={"SOURCE_DATE_EPOCH": "1700000000"}))  # fmt: skip
    assert later != first  # the times are in the digest, and only they changed

    with layer_of(tmp_path / "out1") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "manifest.yaml"
    assert "rootfs/usr/local/etc/containers/hello.yaml" in names
    assert "rootfs/usr/local/lib/containers/hello/hello" in names
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    script = next(m for m in members if m.name.endswith("containers/hello/hello"))
    assert script.mode == 0o755


def test_built_image_is_what_validate_accepts(tools, tmp_path):
    proj = project(tmp_path / "p", tools)
    digest_of(extvisor("extensions", "build", str(proj), "-o", f"oci-archive:{tmp_path}/img.tar:v2"))
    out = extvisor("extensions", "validate", f"oci-archive:{tmp_path}/img.tar", "--strict", "-o", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] and result["services"] == ["ext-hello"] and result["manifest"]["name"] == "hello"


def test_flags_make_the_manifest(tools, tmp_path):
    proj = project(tmp_path / "p", tools, manifest=False)
    out = extvisor("extensions", "build", str(proj), "-o", f"oci:{tmp_path}/lay:x")
    assert out.returncode == 1 and "manifest.yaml: " in out.stderr and "--name and --version" in out.stderr
    assert not (tmp_path / "lay").exists()
    out = extvisor("extensions", "build", str(proj), "-o", f"oci:{tmp_path}/lay:x", "--name", "hello",
                   "--version", "1.2.3", "--author", "me", "--talos-version", "v1.10.0")  # fmt: skip
    digest_of(out)
    assert not (proj / "manifest.yaml").exists()  # the folder is only read
    with layer_of(tmp_path / "lay") as tar:
        manifest = tar.extractfile("manifest.yaml").read().decode()
    assert "name: hello" in manifest and "version: 1.2.3" in manifest and ">= v1.10.0" in manifest
    shutil.copy(EXAMPLES / "hello-world-extension" / "manifest.yaml", proj / "manifest.yaml")
    out = extvisor("extensions", "build", str(proj), "-o", f"oci:{tmp_path}/lay:y", "--name", "x", "--version", "1.0.0")
    assert out.returncode == 2 and "manifest.yaml exists" in out.stderr


@pytest.mark.parametrize("case", ["device", "fifo", "world-writable", "setuid", "newline", "service", "rootfs", "manifest"])
def test_forbidden_content_is_refused_before_anything_is_written(tools, tmp_path, case):
    proj = project(tmp_path / "p", tools)
    rootfs = proj / "hello"
    where = {
        "device": "hello/dev/null",
        "fifo": "hello/run/pipe",
        "world-writable": "hello/etc/open",
        "setuid": "hello/bin/su",
        "newline": "hello/etc/a\\nb",
        "service": "hello.yaml",
        "rootfs": "other.yaml",
        "manifest": "manifest.yaml",
    }[case]
    if case == "device":
        os.mknod(rootfs / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    elif case == "fifo":
        os.mkfifo(rootfs / "run" / "pipe")
    elif case == "world-writable":
        (rootfs / "etc" / "open").write_text("x")
        (rootfs / "etc" / "open").chmod(0o666)
    elif case == "setuid":
        shutil.copy(rootfs / "bin" / "busybox", rootfs / "bin" / "su")
        (rootfs / "bin" / "su").chmod(0o4755)
    elif case == "newline":
        (rootfs / "etc" / "a\nb").write_text("x")
    elif case == "service":
        (proj / "hello.yaml").write_text(SERVICE.replace("restart: always", "restart: sometimes"))
    elif case == "rootfs":
        (proj / "other.yaml").write_text("name: other\ncontainer:\n  entrypoint: /bin/true\n")
    elif case == "manifest":
        (proj / "manifest.yaml").write_text("version: v1alpha1\nmetadata:\n  name: hello\n  version: not-a-version\n")
    dest = tmp_path / "out.tar"
    out = extvisor("extensions", "build", "p", "-o", f"oci-archive:{dest}", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    first = out.stderr.splitlines()[0]
    assert first.startswith(os.path.join("p", where)), out.stderr  # a path in the folder, not in the image
    assert "error" in first and "not built" in out.stderr
    if case == "service":
        assert first.startswith("p/hello.yaml:6:10: error: restart:")
    assert not dest.exists() and not list(tmp_path.glob(".out.tar*"))
    if case == "setuid":
        ok = extvisor("extensions", "build", "p", "-o", f"oci:{tmp_path}/lay:v1", "--allow-setuid", cwd=tmp_path)
        digest_of(ok)
        with layer_of(tmp_path / "lay") as tar:
            assert tar.getmember("rootfs/usr/local/lib/containers/hello/bin/su").mode == 0o4755


def test_push_to_a_registry(tools, tmp_path, registry):
    proj = project(tmp_path / "p", tools)
    local = digest_of(extvisor("extensions", "build", str(proj), "-o", f"oci:{tmp_path}/lay:v1"))
    ref = registry.ref("authors/hello", "1.0.0")
    auth = ["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)]
    pushed = digest_of(extvisor("extensions", "build", str(proj), "-o", ref, *auth))
    assert pushed == local  # the registry serves the very manifest built here
    out = extvisor("extensions", "validate", ref, *auth, "-o", "json")
    assert out.returncode == 0 and json.loads(out.stdout)["digest"] == local, out.stdout + out.stderr


@pytest.mark.runc
def test_round_trip_dev_build_install_run(tools, tmp_path, registry):
    """dev -> build -> validate -> install on a node -> the service prints what it printed under dev."""
    proj = project(tmp_path / "p", tools)
    dev = subprocess.Popen([sys.executable, "-m", "extvisor", "dev", str(proj), "--backend", "runc"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    try:
        assert dev.stdout is not None
        for line in dev.stdout:
            lines.append(line.rstrip("\n"))
            if "tick 2" in line:
                break
    finally:
        dev.send_signal(2)
        rest, _ = dev.communicate(timeout=60)
    printed = [line.split("| ", 1)[1] for line in lines if line.startswith("ext-hello") and "| " in line]
    assert printed[:3] == ["hello says bonjour", "tick 1", "tick 2"], lines + rest.splitlines()
    assert not [line for line in lines if "manifest.yaml" in line]  # the manifest is no service file to dev mode

    image = tmp_path / "hello.tar"
    digest = digest_of(extvisor("extensions", "build", str(proj), "-o", f"oci-archive:{image}"))
    assert extvisor("extensions", "validate", f"oci-archive:{image}").returncode == 0
    node = DaemonProcess(tmp_path / "node").start()
    try:
        out = node.cli("extensions", "install", f"oci-archive:{image}")
        assert "installed hello 1.0.0" in out.stdout
        assert json.loads(node.cli("extensions", "-o", "json").stdout)[0]["digest"] == digest

        def log() -> list[str]:
            return b"".join(node.client.logs("ext-hello")).decode().splitlines()

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(log()) < 3:
            time.sleep(0.2)
        assert log()[:3] == printed[:3]
    finally:
        node.stop()


def test_push_signed_then_verified(tools, tmp_path, registry):
    """--key signs the pushed digest with the trust issue's signer; validate verifies it under a rule."""
    import textwrap

    proj = project(tmp_path / "p", tools)
    env = {"EXTVISOR_SIGNING_PASSWORD": "build-pw"}
    assert extvisor("gen", "signing-key", "--output-dir", str(tmp_path / "k"), env=env).returncode == 0
    ref = registry.ref("authors/signed", "2.0.0")
    auth = ["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)]
    wrong = extvisor("extensions", "build", str(proj), "-o", ref, "--key", str(tmp_path / "k/cosign.key"), *auth,
                     env={"EXTVISOR_SIGNING_PASSWORD": "nope"})  # fmt: skip
    assert wrong.returncode == 1 and "password" in wrong.stderr
    assert extvisor("extensions", "validate", ref, *auth).returncode == 1  # nothing was pushed
    out = extvisor("extensions", "build", str(proj), "-o", ref, "--key", str(tmp_path / "k/cosign.key"), *auth, env=env)
    digest = digest_of(out)
    assert f"signed {digest}" in out.stderr
    policy = tmp_path / "verify.yaml"
    pem = textwrap.indent((tmp_path / "k/cosign.pub").read_text(), "          ")
    policy.write_text(f"apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n  - image: {registry.host}/authors/*\n"
                      f"    publicKey:\n      certificate: |\n{pem}")  # fmt: skip
    checked = extvisor("extensions", "validate", ref, *auth, "--image-verification", str(policy), "-o", "json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = json.loads(checked.stdout)
    assert result["digest"] == digest and result["verified"].startswith("key ")
