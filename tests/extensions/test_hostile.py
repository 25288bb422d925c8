"""Hostile images, end to end (issue 24): a PAX-header bomb, forged file lists, writable and
setuid files, and the store's directories whatever modes they had."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from extensions.images import Image, directory, extension_entries, file, layout, pax_bomb, plain_tarball, service_yaml

from extvisor.extensions import FetchOptions, parse_ref
from extvisor.extensions import image as img
from extvisor.extensions.store import InstallError, Store, StoreError

BOMB = 400 << 20  # the 400 MB PAX header in a 1.8 MB gzip layer
RSS_LIMIT_KB = 250 << 10  # a Python process plus skopeo; the bomb took 1.33 GB (validate), 1.56 GB (daemon)


def hello_with_bomb() -> Image:
    return Image([extension_entries("bomb", {"bomb": service_yaml("bomb")})], raw_layers=[pax_bomb(BOMB)])


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_pax_bomb_refused_by_validate_with_bounded_memory(tmp_path, skopeo_tool):
    layout(tmp_path / "layout", hello_with_bomb(), "1")
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "extvisor", "extensions", "validate", f"oci:{tmp_path}/layout:1"],
                                stdout=o, stderr=e)  # fmt: skip
    # The child's own high-water mark, sampled until it exits: wait4's ru_maxrss would also
    # count the test process itself, whose pages a vfork'ed child starts with.
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, peak_rss_kb(proc.pid))
        except (OSError, StopIteration):
            pass
        time.sleep(0.01)
    assert peak < RSS_LIMIT_KB, f"validate peaked at {peak >> 10} MB"
    assert proc.returncode == 1, out.read_text() + err.read_text()
    assert "layer 2 (sha256:" in out.read_text() and (
        f"a PAX header of {BOMB} bytes at offset 0: special headers over 1048576 bytes are refused") in out.read_text()


def test_pax_bomb_refused_by_the_daemon_with_bounded_memory(tmp_path, registry, pusher):
    pusher.image("siderolabs/bomb", "1", hello_with_bomb())
    d = DaemonProcess(tmp_path, extra=["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)])
    d.start()
    try:
        out = d.cli("extensions", "install", registry.ref("siderolabs/bomb", "1"), check=False)
        assert peak_rss_kb(d.proc.pid) < RSS_LIMIT_KB, f"the daemon peaked at {peak_rss_kb(d.proc.pid) >> 10} MB"
        assert out.returncode == 1
        assert f"a PAX header of {BOMB} bytes at offset 0: special headers over 1048576 bytes are refused" in out.stderr
        assert os.listdir(d.state_dir / "extensions" / "staging") == []
    finally:
        d.stop()


def tarball(tmp_path: Path, name: str, extra=(), files: dict[str, bytes] | None = None) -> str:
    path = tmp_path / f"{name}.tar"
    plain_tarball(path, [*extension_entries(name, {name: service_yaml(name)}, files), *extra])
    return f"tarball:{path}"


def install(store: Store, ref: str, kinds, talos, **kw):
    return store.install(parse_ref(ref), FetchOptions(arch="amd64"), talos, kinds, **kw)


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", *cmd], user=65534, group=65534, capture_output=True, text=True, timeout=10)


@pytest.fixture
def open_state(tmp_path):
    """A state dir that already existed 0755 on a path every user can walk (the issue's setup),
    with an extension store left 0777 by someone."""
    if os.geteuid() != 0:
        pytest.fail("needs root: it checks what another user can do")
    base = Path(tempfile.mkdtemp(prefix="extvisor-open-state-", dir="/tmp"))
    os.chmod(base, 0o755)
    state = base / "state"
    state.mkdir(0o755)
    for d in ("extensions", "extensions/trees", "extensions/installed", "extensions/staging"):
        (state / d).mkdir()
        os.chmod(state / d, 0o777)
    yield state
    shutil.rmtree(base)


def test_nothing_in_the_store_is_writable_by_another_user(tmp_path, open_state, kinds, talos):
    svc = "rootfs/usr/local/lib/containers/open"
    ref = tarball(tmp_path, "open", extra=[directory(f"{svc}/drop", 0o777), file(f"{svc}/bin/tool", "#!/bin/sh\n", 0o777),
                                           directory(f"{svc}/tmp", 0o1777)])  # fmt: skip
    store = Store(open_state / "extensions")
    record, _ = install(store, ref, kinds, talos)
    assert any("world-writeable files are not allowed" in w for w in record.warnings)
    assert any("world-writeable directories are not allowed" in w for w in record.warnings)
    tree = record.service_rootfs("open")
    for target in (f"touch {tree}/drop/pwned", f"echo pwned > {tree}/bin/tool", f"touch {tree}/tmp/pwned",
                   f"touch {store.root}/pwned", f"touch {store.trees}/pwned"):  # fmt: skip
        out = as_nobody(target)
        assert out.returncode != 0, f"another user could: {target}"
    assert not (tree / "drop/pwned").exists() and (tree / "bin/tool").read_text() == "#!/bin/sh\n"
    for d in (store.root, store.trees, store.installed_dir, store.staging, store.merged_d):
        assert os.lstat(d).st_mode & 0o777 == 0o700, d
    for dirpath, dirnames, filenames in os.walk(store.root):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            if not stat.S_ISLNK(st.st_mode):
                assert st.st_mode & 0o022 == 0, f"{dirpath}/{n} is {st.st_mode & 0o7777:04o}"


def test_a_store_dir_of_another_user_or_a_symlink_is_refused(tmp_path, kinds, talos):
    root = tmp_path / "state" / "extensions"
    root.mkdir(parents=True)
    os.chown(root, 65534, 65534)
    with pytest.raises(StoreError, match=r"refusing .*/extensions for the extension store: it belongs to uid 65534, not to you"):
        Store(root).recover()
    other = tmp_path / "elsewhere"
    other.mkdir()
    link = tmp_path / "state2" / "extensions"
    link.parent.mkdir()
    link.symlink_to(other)
    with pytest.raises(StoreError, match="for the extension store: it is a symlink"):
        Store(link).recover()
    assert os.listdir(other) == []


def test_setuid_file_refused_unless_allowed(tmp_path, store, kinds, talos):
    ref = tarball(tmp_path, "suid", files=None, extra=[file("rootfs/usr/local/lib/containers/suid/bin/su", "x", 0o4755)])
    with pytest.raises(InstallError) as err:
        install(store, ref, kinds, talos)
    assert ("tarball: entry 'rootfs/usr/local/lib/containers/suid/bin/su': setuid file (mode 4755): not installed "
            "unless the operator allows it (--allow-setuid)") in str(err.value)
    assert store.list() == [] and os.listdir(store.staging) == []
    record, _ = install(store, ref, kinds, talos, allow_setuid=True)
    assert os.lstat(record.service_rootfs("suid") / "bin/su").st_mode & 0o7777 == 0o4755


def test_setuid_through_the_daemon_needs_the_flag(tmp_path, registry, pusher):
    entries = [*extension_entries("suid", {"suid": service_yaml("suid")}),
               file("rootfs/usr/local/lib/containers/suid/bin/su", "x", 0o6755)]  # fmt: skip
    pusher.image("siderolabs/suid", "1", Image([entries]))
    d = DaemonProcess(tmp_path, extra=["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)])
    d.start()
    try:
        ref = registry.ref("siderolabs/suid", "1")
        out = d.cli("extensions", "install", ref, check=False)
        assert out.returncode == 1
        assert "entry 'rootfs/usr/local/lib/containers/suid/bin/su': setuid and setgid file (mode 6755)" in out.stderr
        out = d.cli("extensions", "install", "--allow-setuid", ref)
        assert "installed suid 1.0.0" in out.stdout
    finally:
        d.stop()


def test_newline_in_a_name_cannot_forge_the_file_list(tmp_path, store, kinds, talos):
    forged = "rootfs/usr/local/share/x\n/usr/local/bin/tool"
    with pytest.raises(InstallError) as err:
        install(store, tarball(tmp_path, "forger", extra=[file(forged, "x")]), kinds, talos)
    assert "'rootfs/usr/local/share/x\\n/usr/local/bin/tool': name contains a control character" in str(err.value)
    assert "\n/usr/local/bin/tool" not in str(err.value)  # printed escaped, never as a line of its own
    # a list written by an earlier version (files.txt) whose lines were forged that way
    old, _ = install(store, tarball(tmp_path, "old", files={"rootfs/usr/local/bin/real": b"r"}), kinds, talos)
    (old.tree / "files.json").unlink()
    (old.tree / "files.txt").write_text("/usr/local/bin/real\n/usr/local/share/x\n/usr/local/bin/tool\n")
    assert store.files_of(old) == ["/usr/local/bin/real"]  # forged lines name nothing in its tree
    record, _ = install(store, tarball(tmp_path, "victim", files={"rootfs/usr/local/bin/tool": b"t"}), kinds, talos, strict=True)
    assert record.name == "victim"
    with pytest.raises(InstallError, match="file /usr/local/bin/real is provided by both 'old' and 'clash'"):
        install(store, tarball(tmp_path, "clash", files={"rootfs/usr/local/bin/real": b"c"}), kinds, talos, strict=True)


def test_the_daemon_locks_down_a_state_dir_that_existed(tmp_path):
    d = DaemonProcess(tmp_path)
    d.state_dir.mkdir()
    os.chmod(d.state_dir, 0o777)
    d.start()
    try:
        assert os.lstat(d.state_dir).st_mode & 0o777 == 0o700
        assert os.lstat(d.state_dir / "extensions").st_mode & 0o777 == 0o700
    finally:
        d.stop()
    os.chown(d.state_dir, 65534, 65534)
    with pytest.raises(RuntimeError, match=r"for the state directory: it belongs to uid 65534, not to you"):
        d.start()


def test_validate_of_a_directory_reports_control_characters_and_setuid(tmp_path, kinds, talos):
    d = tmp_path / "unpacked"
    d.mkdir()
    ref = tarball(tmp_path, "dirval")
    with tarfile.open(ref.removeprefix("tarball:")) as tar:
        tar.extractall(d)  # noqa: S202 - our own tar
    share = d / "rootfs/usr/local/share"
    share.mkdir()
    (share / "x\n/usr/local/bin").mkdir(parents=True)  # the name the list would print as two lines
    (share / "x\n/usr/local/bin/tool").write_text("x")
    (share / "su").write_text("x")
    os.chmod(share / "su", 0o4755)
    (share / "open").mkdir(mode=0o777)
    os.chmod(share / "open", 0o777)
    result = img.validate(parse_ref(str(d), allow_dir=True), FetchOptions(), talos, kinds)
    lines = [str(p) for p in result.problems]
    assert lines == [
        'rootfs/usr/local/share/open: warning: world-writeable directories are not allowed: "/usr/local/share/open"',
        'rootfs/usr/local/share/su: error: setuid and setgid files are not allowed: "/usr/local/share/su" '
        "(mode 4755; the operator may allow them: --allow-setuid)",
        'rootfs/usr/local/share/x\\n: error: control characters are not allowed in names: "/usr/local/share/x\\n"',
    ]
    assert not any("tool" in f for f in result.check.files)
    allowed = img.validate(parse_ref(str(d), allow_dir=True), FetchOptions(), talos, kinds, allow_setuid=True)
    assert not any("setuid" in str(p) for p in allowed.problems)
