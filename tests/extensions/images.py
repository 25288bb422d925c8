"""Building extension images for the tests, in the shape of siderolabs/extensions images.

An image is ``manifest.yaml`` + ``rootfs/`` in one or more gzip layers. ``Entry`` describes
one tar entry exactly (hostile names, whiteouts, links, devices included), so malicious
layers are built byte for byte. Images are written as an OCI layout (``oci:DIR:TAG``), an
oci-archive, a plain tarball, or pushed to a registry over its HTTP API (``push``), which
also covers what skopeo cannot write from a layout: Docker schema2 manifests and lists.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import ssl
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import httpx

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass
class Entry:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    mode: int = 0o644
    linkname: str = ""
    uid: int = 1000  # build users are not root: extvisor must not keep owners


def file(name: str, data: bytes | str = b"", mode: int = 0o644) -> Entry:
    return Entry(name, data.encode() if isinstance(data, str) else data, mode=mode)


def directory(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, type=tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, type=tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, type=tarfile.LNKTYPE, linkname=target)


def tar_bytes(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.mode = e.mode
            info.uid = info.gid = e.uid
            info.linkname = e.linkname
            info.mtime = 1700000000
            if e.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pax_bomb(size: int) -> tuple[bytes, str]:
    """A gzip layer holding one PAX header of *size* bytes, made in 1 MiB steps (never held whole):
    (the gzip blob, the tar's diff_id). 400 MB of it is a 1.8 MB blob."""
    value = size - len(f"{size} comment=\n")  # one record "<size> comment=<value>\n" filling the header
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, size
    out, h = io.BytesIO(), hashlib.sha256()
    z = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing

    def put(data: bytes) -> None:
        h.update(data)
        out.write(z.compress(data))

    put(info.tobuf(tarfile.USTAR_FORMAT))
    put(f"{size} comment=".encode())
    chunk = b"a" * (1 << 20)
    left = value
    while left > 0:
        put(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    put(b"\n" + b"\0" * (-size % 512))
    put(tar_bytes([file("rootfs/usr/local/share/after", "x")]))
    out.write(z.flush())
    return out.getvalue(), "sha256:" + h.hexdigest()


def manifest_yaml(name: str, version: str = "1.0.0", constraint: str = ">= v1.5.0", author: str = "Sidero Labs",
                  description: str = "", manifest_version: str = "v1alpha1") -> str:  # fmt: skip
    return (
        f"version: {manifest_version}\nmetadata:\n  name: {name}\n  version: {json.dumps(version)}\n"
        f"  author: {author}\n  description: |\n    {description or '[contrib] ' + name}\n"
        f"  compatibility:\n    talos:\n      version: {json.dumps(constraint)}\n"
    )


def service_yaml(name: str, args: list[str] | None = None, extra: str = "") -> str:
    args = args or ["/bin/sh", "-c", f"echo {name} up; exec sleep 1000"]
    lines = [f"name: {name}", "container:", f"  entrypoint: {args[0]}"]
    if len(args) > 1:
        lines.append("  args:")
        lines += [f"    - {json.dumps(a)}" for a in args[1:]]
    lines += ["depends:", "  - network:", "      - addresses", "restart: always"]
    return "\n".join(lines) + "\n" + extra


def extension_entries(name: str, services: dict[str, str], rootfs_files: dict[str, bytes] | None = None,
                      version: str = "1.0.0", constraint: str = ">= v1.5.0", busybox: Path | None = None) -> list[Entry]:  # fmt: skip
    """``manifest.yaml`` and ``rootfs/`` as bldr lays them out: each service's YAML and rootfs."""
    entries = [file("manifest.yaml", manifest_yaml(name, version, constraint))]
    entries += [directory("rootfs"), directory("rootfs/usr"), directory("rootfs/usr/local"),
                directory("rootfs/usr/local/etc"), directory("rootfs/usr/local/etc/containers"),
                directory("rootfs/usr/local/lib"), directory("rootfs/usr/local/lib/containers")]  # fmt: skip
    for svc, text in services.items():
        entries.append(file(f"rootfs/usr/local/etc/containers/{svc}.yaml", text))
        base = f"rootfs/usr/local/lib/containers/{svc}"
        entries += [directory(base), directory(base + "/bin")]
        if busybox is not None:
            entries.append(file(base + "/bin/busybox", busybox.read_bytes(), 0o755))
            entries += [symlink(f"{base}/bin/{tool}", "busybox") for tool in ("sh", "sleep", "echo", "cat", "ls")]
        else:
            entries.append(file(base + "/bin/sh", b"#!/bin/false\n", 0o755))
    for path, data in (rootfs_files or {}).items():
        entries.append(file(path, data, 0o755 if "/bin/" in path else 0o644))
    return entries


@dataclass
class Image:
    """One platform's image: layers (each a list of entries) and its config."""

    layers: list[list[Entry]]
    arch: str = "amd64"
    docker: bool = False  # Docker schema2 media types instead of OCI
    blobs: dict[str, bytes] = field(default_factory=dict)
    raw_layers: list[tuple[bytes, str]] = field(default_factory=list)  #: (gzip blob, diff_id) after the others

    def build(self) -> tuple[bytes, str]:
        """The manifest bytes and its media type; blobs filled in."""
        layer_type = DOCKER_LAYER if self.docker else OCI_LAYER
        descs, diff_ids = [], []
        for entries in self.layers:
            raw = tar_bytes(entries)
            blob = gz(raw)
            self.blobs[sha(blob)] = blob
            descs.append({"mediaType": layer_type, "digest": sha(blob), "size": len(blob)})
            diff_ids.append(sha(raw))
        for blob, diff_id in self.raw_layers:
            self.blobs[sha(blob)] = blob
            descs.append({"mediaType": layer_type, "digest": sha(blob), "size": len(blob)})
            diff_ids.append(diff_id)
        config = json.dumps({
            "architecture": self.arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {"Labels": {"org.opencontainers.image.source": "https://github.com/siderolabs/extensions"}},
        }, sort_keys=True).encode()  # fmt: skip
        self.blobs[sha(config)] = config
        mtype = DOCKER_MANIFEST if self.docker else OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": mtype,
            "config": {"mediaType": DOCKER_CONFIG if self.docker else OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": descs,
        }
        return json.dumps(manifest, indent=2).encode(), mtype


def build_index(images: list[Image], docker: bool = False) -> tuple[dict[str, bytes], bytes, str, dict[str, str]]:
    """Blobs, index bytes, its media type, and arch -> platform manifest digest."""
    blobs: dict[str, bytes] = {}
    entries, digests = [], {}
    for image in images:
        data, mtype = image.build()
        blobs.update(image.blobs)
        blobs[sha(data)] = data
        digests[image.arch] = sha(data)
        entries.append({"mediaType": mtype, "digest": sha(data), "size": len(data),
                        "platform": {"architecture": image.arch, "os": "linux"}})  # fmt: skip
    mtype = DOCKER_LIST if docker else OCI_INDEX
    index = json.dumps({"schemaVersion": 2, "mediaType": mtype, "manifests": entries}, indent=2).encode()
    return blobs, index, mtype, digests


def write_layout(path: Path, tag: str, blobs: dict[str, bytes], top: bytes, top_type: str) -> str:
    """An OCI layout holding *top* (a manifest or an index) under *tag*; returns its digest."""
    (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for digest, data in {**blobs, sha(top): top}.items():
        (path / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index_path = path / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": top_type, "digest": sha(top), "size": len(top),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})  # fmt: skip
    index_path.write_text(json.dumps(index))
    return sha(top)


def layout(path: Path, image: Image, tag: str = "latest") -> str:
    data, mtype = image.build()
    return write_layout(path, tag, image.blobs, data, mtype)


def oci_archive(path: Path, image: Image, tag: str = "latest") -> str:
    """An oci-archive file (a tar of an OCI layout); returns the manifest digest."""
    work = path.with_suffix(".layout")
    digest = layout(work, image, tag)
    with tarfile.open(path, "w") as tar:
        for child in sorted(work.iterdir()):
            tar.add(child, arcname=child.name)
    return digest


def plain_tarball(path: Path, entries: list[Entry]) -> None:
    path.write_bytes(tar_bytes(entries))


class Pusher:
    """Push blobs and manifests to a registry (distribution API v2), any media type."""

    def __init__(self, base: str, auth: tuple[str, str] | None, ca: Path | None):
        self.client = httpx.Client(base_url=base, auth=auth, verify=ssl.create_default_context(cafile=str(ca)) if ca else False, timeout=30)

    def blob(self, repo: str, data: bytes) -> None:
        digest = sha(data)
        if self.client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
            return
        r = self.client.post(f"/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        location = r.headers["location"]
        sep = "&" if "?" in location else "?"
        r = self.client.put(f"{location}{sep}digest={digest}", content=data,
                            headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        r.raise_for_status()

    def manifest(self, repo: str, ref: str, data: bytes, mtype: str) -> str:
        r = self.client.put(f"/v2/{repo}/manifests/{ref}", content=data, headers={"Content-Type": mtype})
        r.raise_for_status()
        return sha(data)

    def image(self, repo: str, tag: str, image: Image) -> str:
        data, mtype = image.build()
        for blob in image.blobs.values():
            self.blob(repo, blob)
        return self.manifest(repo, tag, data, mtype)

    def index(self, repo: str, tag: str, images: list[Image], docker: bool = False) -> tuple[str, dict[str, str]]:
        blobs, index, mtype, digests = build_index(images, docker)
        for digest, data in blobs.items():
            if digest in digests.values():
                continue
            self.blob(repo, data)
        for image_digest in digests.values():
            data = blobs[image_digest]
            self.manifest(repo, image_digest, data, json.loads(data)["mediaType"])
        return self.manifest(repo, tag, index, mtype), digests

    def close(self) -> None:
        self.client.close()


def busybox_path() -> Path | None:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p):
            return Path(p)
    return None
