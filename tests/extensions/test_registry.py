"""Pulling from a real registry (TLS with our CA, basic auth) and from local image files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from extensions.images import (
    Image, directory, extension_entries, file, layout, oci_archive, service_yaml, symlink,
)  # fmt: skip

from extvisor.extensions import FetchOptions, parse_ref
from extvisor.extensions import image as img
from extvisor.extensions.store import InstallError


def hello_image(arch: str = "amd64", docker: bool = False, version: str = "1.0.0") -> Image:
    return Image([extension_entries("hello-world", {"hello-world": service_yaml("hello-world")}, version=version)], arch, docker)


def nfs_image() -> Image:
    services = {"rpcbind": service_yaml("rpcbind"), "rpc-statd": service_yaml("rpc-statd", extra="")}
    return Image([extension_entries("nfs-utils", services, rootfs_files={"rootfs/usr/local/sbin/mount.nfs": b"\x7fELF"})])


def whiteout_image() -> Image:
    base = extension_entries("layered", {"layered": service_yaml("layered")},
                             rootfs_files={"rootfs/usr/local/share/layered/old": b"old",
                                           "rootfs/usr/local/share/layered/cfg/a": b"a"})  # fmt: skip
    top = [directory("rootfs/usr/local/share/layered"), file("rootfs/usr/local/share/layered/.wh.old"),
           directory("rootfs/usr/local/share/layered/cfg"), file("rootfs/usr/local/share/layered/cfg/.wh..wh..opq"),
           file("rootfs/usr/local/share/layered/cfg/b", "b")]  # fmt: skip
    return Image([base, top])


def problems(result) -> list[str]:
    return [str(p) for p in result.problems if p.severity == "error"]


def test_install_hello_world_over_tls_with_password(registry, pusher, reg_options, store, kinds, talos):
    digest = pusher.image("siderolabs/hello-world-service", "v1.0.0", hello_image())
    seen = []
    record, old = store.install(parse_ref(f"{registry.host}/siderolabs/hello-world-service:v1.0.0"), reg_options,
                                talos, kinds, progress=seen.append)  # fmt: skip
    assert old is None
    assert (record.name, record.version, record.digest, record.services) == ("hello-world", "1.0.0", digest, ["ext-hello-world"])
    assert record.ref == f"{registry.host}/siderolabs/hello-world-service:v1.0.0"
    stages = [p.stage for p in seen]
    for stage in ("resolve", "fetch", "verify", "unpack", "check", "install"):
        assert stage in stages
    assert (record.service_rootfs("hello-world") / "bin/sh").exists()


def test_two_services_like_nfs_utils(registry, pusher, reg_options, store, kinds, talos):
    pusher.image("siderolabs/nfs-utils", "2.7.1", nfs_image())
    record, _ = store.install(parse_ref(registry.ref("siderolabs/nfs-utils", "2.7.1")), reg_options, talos, kinds)
    assert sorted(record.services) == ["ext-rpc-statd", "ext-rpcbind"]
    assert store.mount_source("/usr/local/sbin") == store.merged_root() / "usr/local/sbin"
    assert (store.mount_source("/usr/local/sbin") / "mount.nfs").read_bytes() == b"\x7fELF"
    assert store.mount_source("/etc") is None  # not an extension prefix: the host's


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_two_arch_index_picks_the_platform(registry, pusher, store, kinds, talos, reg_options, docker):
    repo = "siderolabs/multi-docker" if docker else "siderolabs/multi"
    _, digests = pusher.index(repo, "1.0.0", [hello_image("amd64", docker), hello_image("arm64", docker)], docker)
    for arch in ("arm64", "amd64"):
        options = FetchOptions(arch=arch, authfile=reg_options.authfile, cert_dir=reg_options.cert_dir)
        record, _ = store.install(parse_ref(registry.ref(repo, "1.0.0")), options, talos, kinds)
        assert record.digest == digests[arch]  # the chosen platform's manifest, not the index
        assert record.arch == arch
    options = FetchOptions(arch="s390x", authfile=reg_options.authfile, cert_dir=reg_options.cert_dir)
    result = img.validate(parse_ref(registry.ref(repo, "1.0.0")), options, talos, kinds)
    assert problems(result) and "no OCI image found for s390x" in problems(result)[0]


def test_docker_schema2_image(registry, pusher, reg_options, store, kinds, talos):
    digest = pusher.image("siderolabs/docker-v2", "1", hello_image(docker=True))
    record, _ = store.install(parse_ref(registry.ref("siderolabs/docker-v2", "1")), reg_options, talos, kinds)
    assert record.digest == digest
    assert record.media_type == "application/vnd.docker.distribution.manifest.v2+json"


def test_two_layers_with_whiteouts(registry, pusher, reg_options, store, kinds, talos):
    pusher.image("siderolabs/layered", "1", whiteout_image())
    record, _ = store.install(parse_ref(registry.ref("siderolabs/layered", "1")), reg_options, talos, kinds)
    share = record.rootfs / "usr/local/share/layered"
    assert sorted(os.listdir(share)) == ["cfg"] and sorted(os.listdir(share / "cfg")) == ["b"]


def test_pinned_digest(registry, pusher, reg_options, store, kinds, talos):
    digest = pusher.image("siderolabs/hello-world-service", "pin", hello_image(version="1.0.1"))
    record, _ = store.install(parse_ref(f"docker://{registry.host}/siderolabs/hello-world-service@{digest}"),
                              reg_options, talos, kinds)  # fmt: skip
    assert record.digest == digest and record.version == "1.0.1"


def test_wrong_password_and_missing_ca_are_clear(registry, pusher, tmp_path, kinds, talos):
    pusher.image("siderolabs/hello-world-service", "auth", hello_image())
    ref = parse_ref(registry.ref("siderolabs/hello-world-service", "auth"))
    bad = tmp_path / "auth.json"
    bad.write_text('{"auths": {"%s": {"auth": "ZXh0dmlzb3I6d3Jvbmc="}}}' % registry.host)
    result = img.validate(ref, FetchOptions(arch="amd64", authfile=str(bad), cert_dir=str(registry.cert_dir)), talos, kinds)
    assert "authentication required" in problems(result)[0] or "unauthorized" in problems(result)[0]
    result = img.validate(ref, FetchOptions(arch="amd64", authfile=str(registry.authfile)), talos, kinds)
    assert "certificate signed by unknown authority" in problems(result)[0] and "--cert-dir" in problems(result)[0]


def test_corrupted_blob_in_the_registry(registry, pusher, reg_options, store, kinds, talos):
    image = hello_image(version="6.6.6")
    pusher.image("siderolabs/corrupt", "1", image)
    layer_digest = next(d for d, b in image.blobs.items() if b[:2] == b"\x1f\x8b")
    path = registry.blob_path(layer_digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InstallError) as err:
        store.install(parse_ref(registry.ref("siderolabs/corrupt", "1")), reg_options, talos, kinds)
    assert "digest" in str(err.value).lower()
    assert store.list() == [] and os.listdir(store.staging) == []


def test_malicious_layer_from_the_registry(registry, pusher, reg_options, store, kinds, talos, tmp_path):
    target = tmp_path / "victim"
    target.mkdir()
    entries = extension_entries("evil", {"evil": service_yaml("evil")})
    entries += [symlink("rootfs/usr/local/share", str(target)), file("rootfs/usr/local/share/pwned", "x")]
    pusher.image("siderolabs/evil", "1", Image([entries]))
    with pytest.raises(InstallError) as err:
        store.install(parse_ref(registry.ref("siderolabs/evil", "1")), reg_options, talos, kinds)
    assert "'rootfs/usr/local/share/pwned'" in str(err.value) and "is a symlink" in str(err.value)
    assert os.listdir(target) == [] and store.list() == []


def test_local_transports(tmp_path, skopeo_tool, store, kinds, talos):
    oci_archive(tmp_path / "hello.tar", hello_image(version="2.0.0"))
    layout(tmp_path / "layout", nfs_image(), "2.7.1")
    subprocess.run(["skopeo", "copy", f"oci:{tmp_path}/layout:2.7.1", f"docker-archive:{tmp_path}/nfs-docker.tar"],
                   check=True, capture_output=True)  # fmt: skip
    opts = FetchOptions(arch="amd64")
    assert store.install(parse_ref(f"oci-archive:{tmp_path}/hello.tar"), opts, talos, kinds)[0].version == "2.0.0"
    assert store.install(parse_ref(f"oci:{tmp_path}/layout:2.7.1"), opts, talos, kinds)[0].name == "nfs-utils"
    record, old = store.install(parse_ref(f"docker-archive:{tmp_path}/nfs-docker.tar"), opts, talos, kinds)
    assert old is not None and old.name == "nfs-utils" and record.seq == old.seq
    assert [r.name for r in store.list()] == ["hello-world", "nfs-utils"]


def test_missing_skopeo_is_reported(tmp_path, kinds, talos):
    layout(tmp_path / "layout", hello_image(), "x")
    result = img.validate(parse_ref(f"oci:{tmp_path}/layout:x"), FetchOptions(skopeo=str(tmp_path / "no-skopeo")), talos, kinds)
    assert problems(result) == [f"error: {tmp_path}/no-skopeo not found: install skopeo (apt-get install skopeo)"]
    assert not list(Path(tmp_path).glob("extvisor-validate-*"))
