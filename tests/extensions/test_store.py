"""The store: install, upgrade, remove, conflicts, the merged tree, and SIGKILL at any point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from extensions.images import directory, extension_entries, file, plain_tarball, service_yaml

from extvisor.extensions import FetchOptions, parse_ref
from extvisor.extensions.store import InstallError, Store

ROOT = Path(__file__).resolve().parents[2]


def tarball(tmp_path: Path, name: str, services: dict[str, str] | None = None, version: str = "1.0.0",
            files: dict[str, bytes] | None = None, extra=()) -> str:  # fmt: skip
    services = {name: service_yaml(name)} if services is None else services
    path = tmp_path / f"{name}-{version}.tar"
    plain_tarball(path, [*extension_entries(name, services, files, version=version), *extra])
    return f"tarball:{path}"


def install(store: Store, ref: str, kinds, talos, **kw):
    return store.install(parse_ref(ref), FetchOptions(arch="amd64"), talos, kinds, **kw)


def test_list_records_and_upgrade_keeps_position(tmp_path, store, kinds, talos):
    a, _ = install(store, tarball(tmp_path, "alpha"), kinds, talos)
    b, _ = install(store, tarball(tmp_path, "beta"), kinds, talos)
    assert [(r.id, r.name) for r in store.list()] == [("0", "alpha"), ("1", "beta")]
    item = store.list()[0].as_dict()
    for key in ("id", "name", "version", "author", "description", "digest", "ref", "services"):
        assert key in item
    assert item["services"] == ["ext-alpha"] and item["author"] == "Sidero Labs"
    new, old = install(store, tarball(tmp_path, "alpha", version="2.0.0"), kinds, talos)
    assert (old.version, new.version) == ("1.0.0", "2.0.0") and new.tree != old.tree
    assert [(r.id, r.name, r.version) for r in store.list()] == [("0", "alpha", "2.0.0"), ("1", "beta", "1.0.0")]
    assert old.tree.exists()  # services may still run on it until the daemon moved them
    store.collect()
    assert not old.tree.exists() and new.tree.exists()


def test_remove_removes_every_file(tmp_path, store, kinds, talos):
    rec, _ = install(store, tarball(tmp_path, "alpha"), kinds, talos)
    store.remove("alpha")
    store.collect()
    assert store.list() == [] and not rec.tree.exists()
    assert sorted(os.listdir(store.trees)) == [] and os.listdir(store.merged_root()) == []
    with pytest.raises(KeyError):
        store.remove("alpha")


def test_file_in_two_extensions_named_and_strict_refuses(tmp_path, store, kinds, talos):
    shared = {"rootfs/usr/local/bin/tool": b"from-a"}
    install(store, tarball(tmp_path, "alpha", files=shared), kinds, talos)
    ref_b = tarball(tmp_path, "beta", files={"rootfs/usr/local/bin/tool": b"from-b"})
    with pytest.raises(InstallError) as err:
        install(store, ref_b, kinds, talos, strict=True)
    assert "file /usr/local/bin/tool is provided by both 'alpha' and 'beta' ('beta' shadows 'alpha')" in str(err.value)
    assert [r.name for r in store.list()] == ["alpha"]
    rec, _ = install(store, ref_b, kinds, talos)
    assert rec.warnings == ["rootfs/usr/local/bin/tool: warning: file /usr/local/bin/tool is provided by both "
                            "'alpha' and 'beta' ('beta' shadows 'alpha')"]  # fmt: skip
    assert (store.mount_source("/usr/local/bin") / "tool").read_bytes() == b"from-b"  # the later one on top


def test_service_name_clash_names_both_sources(tmp_path, store, kinds, talos):
    install(store, tarball(tmp_path, "alpha"), kinds, talos)
    with pytest.raises(InstallError) as err:
        install(store, tarball(tmp_path, "other", services={"alpha": service_yaml("alpha")}), kinds, talos)
    assert "service alpha of extension 'other' clashes with service alpha of installed extension 'alpha'" in str(err.value)
    with pytest.raises(InstallError) as err:
        install(store, tarball(tmp_path, "beta"), kinds, talos, taken={"beta": "/etc/containers/beta.yaml"})
    assert "service beta of extension 'beta' clashes with service beta loaded from /etc/containers/beta.yaml" in str(err.value)
    assert [r.name for r in store.list()] == ["alpha"]


def test_merged_tree_layers_later_on_top(tmp_path, store, kinds, talos):
    install(store, tarball(tmp_path, "alpha", files={"rootfs/usr/local/lib/x/one": b"1", "rootfs/usr/local/lib/y": b"y"}), kinds, talos)
    extra = [directory("rootfs/usr/local/lib/y"), file("rootfs/usr/local/lib/y/now-a-dir", "d"), file("rootfs/usr/local/lib/x", "f")]
    install(store, tarball(tmp_path, "beta", extra=extra), kinds, talos)
    lib = store.mount_source("/usr/local/lib")
    assert (lib / "x").read_text() == "f" and (lib / "y/now-a-dir").read_text() == "d"
    assert sorted(os.listdir(lib / "containers")) == ["alpha", "beta"]
    store.remove("beta")
    lib = store.mount_source("/usr/local/lib")
    assert (lib / "x/one").read_text() == "1" and (lib / "y").read_text() == "y"


def test_refused_image_leaves_nothing(tmp_path, store, kinds, talos):
    with pytest.raises(InstallError) as err:
        install(store, tarball(tmp_path, "bad", extra=[file("rootfs/etc/foo", "x")]), kinds, talos)
    assert err.value.problems[0].file == "rootfs/etc/foo"
    assert store.list() == [] and os.listdir(store.staging) == [] and os.listdir(store.trees) == []


def test_recover_removes_leftovers(tmp_path, store, kinds, talos):
    install(store, tarball(tmp_path, "alpha"), kinds, talos)
    (store.staging / "deadbeef" / "image").mkdir(parents=True)
    (store.trees / "orphan").mkdir()
    os.symlink("../trees/nothing", store.installed_dir / ".alpha.half")
    removed = store.recover()
    assert len(removed) == 3
    assert os.listdir(store.staging) == [] and [r.name for r in store.list()] == ["alpha"]
    assert sorted(os.listdir(store.trees)) == [os.path.basename(os.readlink(store.installed_dir / "alpha"))]


CHILD = """
import os, sys, time
from extvisor.extensions import FetchOptions, parse_ref
from extvisor.extensions import store as st
from extvisor.extensions.check import default_kinds
from extvisor.extensions.image import default_talos

where = sys.argv[3]
def pause(what):
    print("PAUSED " + what, flush=True)
    time.sleep(60)
if where == "unpack":  # in the middle of the layer, right after the big file is written
    from extvisor.extensions import unpack
    real_write = unpack._Applier.write
    def write(self, tar, member, *rest):
        real_write(self, tar, member, *rest)
        if member.size > 1 << 20:
            pause("unpack")
    unpack._Applier.write = write
if where == "link":
    real = st.Store._link
    def link(self, name, token):
        pause("link")
        real(self, name, token)
    st.Store._link = link
store = st.Store(sys.argv[1])
store.install(parse_ref(sys.argv[2]), FetchOptions(arch="amd64"), default_talos(), default_kinds())
print("DONE", flush=True)
"""


@pytest.mark.parametrize("where", ["unpack", "link"])
@pytest.mark.parametrize("upgrade", [False, True], ids=["fresh", "upgrade"])
def test_sigkill_mid_install_leaves_old_version(tmp_path, store, kinds, talos, where, upgrade):
    if upgrade:
        old, _ = install(store, tarball(tmp_path, "alpha"), kinds, talos)
    big = {"rootfs/usr/local/share/blob": os.urandom(8 << 20)}
    ref = tarball(tmp_path, "alpha", version="2.0.0", files=big)
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    proc = subprocess.Popen([sys.executable, str(script), str(store.root), ref, where], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("PAUSED " + where), line
        if where == "unpack":
            assert len(list(store.staging.glob("*/image/rootfs/usr/local/share/blob"))) == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    if where == "link":
        assert len(os.listdir(store.trees)) == (2 if upgrade else 1)  # the new tree is there, not linked
    store.recover()
    listed = [(r.name, r.version) for r in store.list()]
    assert listed == ([("alpha", "1.0.0")] if upgrade else [])
    assert os.listdir(store.staging) == []
    assert len(os.listdir(store.trees)) == (1 if upgrade else 0)
    if upgrade:
        assert (old.service_rootfs("alpha") / "bin/sh").exists()
    new, _ = install(store, ref, kinds, talos)
    assert new.version == "2.0.0"
