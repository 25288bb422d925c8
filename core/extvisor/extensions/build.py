"""``extvisor extensions build``: a checked project folder becomes a system extension image.

The image is what siderolabs/extensions publishes: one gzip'd tar layer (``manifest.yaml`` and
``rootfs/``), an OCI config and an OCI manifest, written as an OCI layout and from there to
``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]`` or, through ``skopeo copy --preserve-digests``,
``docker://REF``. Reproducible: what goes into the digest is the entries' names (sorted as
``tar --sort=name``), types, contents, symlink targets and modes (0644/0755 by the owner's
execute bit; setuid/setgid only when allowed), and nothing of the host: owners 0:0 without
names, every time ``SOURCE_DATE_EPOCH`` (0 unless set), gzip without a file name or time (and
zlib's output at level 6, the same from one zlib release to the next in practice),
JSON with sorted keys. docs/extensions.md says the same for authors.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import struct
import tarfile
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from .fetch import OCI_CONFIG, OCI_MANIFEST, FetchOptions, run_skopeo
from .progress import Progress, ProgressFn, nothing
from .project import Entry
from .refs import Ref, _split_path_suffix

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
GZIP_LEVEL = 6  #: gzip's and tar -z's default
CHUNK = 1 << 20


class BuildError(Exception):
    pass


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org), 0 when unset."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {text!r}") from None
    if value < 0:
        raise BuildError("SOURCE_DATE_EPOCH must not be negative")
    return value


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _GzipPipe:
    """The tar stream, gzip'd and hashed in a second thread, as ``tar | gzip`` runs in two
    processes: zlib and sha256 release the GIL, so reading files and compressing overlap.

    The output is what ``gzip.GzipFile(filename="", mtime=0)`` writes: no name, no time.
    """

    def __init__(self, out, level: int = GZIP_LEVEL):  # type: ignore[no-untyped-def]
        self.out = out
        self.buffer = bytearray()
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.diff = hashlib.sha256()  #: of the tar: the layer's diff_id
        self.blob = hashlib.sha256()  #: of the gzip'd stream: the layer's digest
        self.size = 0  #: of the gzip'd stream
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(level,), daemon=True)
        xfl = b"\002" if level == 9 else b"\004" if level == 1 else b"\000"
        self._emit(b"\037\213\010\000" + struct.pack("<L", 0) + xfl + b"\377")
        self.thread.start()

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob.update(data)
            self.size += len(data)
            self.out.write(data)

    def _run(self, level: int) -> None:
        comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)
        crc, length = 0, 0
        try:
            while (chunk := self.queue.get()) is not None:
                self.diff.update(chunk)
                crc = zlib.crc32(chunk, crc)
                length += len(chunk)
                self._emit(comp.compress(chunk))
            self._emit(comp.flush() + struct.pack("<LL", crc, length & 0xFFFFFFFF))
        except BaseException as exc:  # handed to the writer, which raises it
            self.error = exc
            while self.queue.get() is not None:
                pass

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self._send()
        return len(data)

    def _send(self) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(bytes(self.buffer))
        self.buffer.clear()

    def close(self) -> None:
        if self.buffer:
            self._send()
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


@dataclass
class Layer:
    path: Path
    digest: str  #: of the gzip'd blob
    diff_id: str  #: of the uncompressed tar
    size: int


def write_layer(entries: list[Entry], out: Path, epoch: int, progress: ProgressFn = nothing) -> Layer:
    """The one layer, gzip'd, to *out*."""
    total = sum(e.size for e in entries if e.kind == "file")
    done = 0
    last = time.monotonic()
    with open(out, "wb") as raw:
        pipe = _GzipPipe(raw)
        try:
            with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:  # type: ignore[arg-type]
                for e in entries:
                    info = tarfile.TarInfo(e.name)
                    info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
                    info.mode = e.mode
                    if e.kind == "dir":
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    elif e.kind == "symlink":
                        info.type, info.linkname = tarfile.SYMTYPE, e.target
                        tar.addfile(info)
                    elif e.data is not None:
                        info.size = len(e.data)
                        tar.addfile(info, _Bytes(e.data))
                    else:
                        with open(e.source, "rb") as f:
                            info.size = os.fstat(f.fileno()).st_size
                            if info.size != e.size:
                                raise BuildError(f"{e.source} changed while the image was built")
                            tar.addfile(info, f)
                        done += info.size
                        if time.monotonic() - last > 0.5:
                            progress(Progress("layer", "", done, total))
                            last = time.monotonic()
        finally:
            pipe.close()
    progress(Progress("layer", f"{pipe.size / 1e6:.1f} MB compressed", done, total))
    return Layer(out, "sha256:" + pipe.blob.hexdigest(), "sha256:" + pipe.diff.hexdigest(), pipe.size)


class _Bytes:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        chunk, self.pos = self.data[self.pos : end], min(end, len(self.data))
        return chunk


@dataclass
class Image:
    """A built image in an OCI layout directory."""

    layout: Path
    digest: str  #: the manifest's: the image's digest
    manifest: bytes
    layer: Layer


def write_image(entries: list[Entry], layout: Path, arch: str, epoch: int, progress: ProgressFn = nothing) -> Image:
    """Layer, config and manifest as blobs of the OCI layout *layout* (made when missing)."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".layer-")
    os.close(fd)
    try:
        layer = write_layer(entries, Path(tmp), epoch, progress)
        final = blobs / layer.digest.removeprefix("sha256:")
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    layer.path = final
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    config = _canonical({
        "architecture": arch, "os": "linux", "created": created, "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": created, "created_by": "extvisor extensions build"}],
    })  # fmt: skip
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": layer.digest, "size": layer.size}],
    })  # fmt: skip
    for data in (config, manifest):
        (blobs / _digest(data).removeprefix("sha256:")).write_bytes(data)
    return Image(layout, _digest(manifest), manifest, layer)


def tag_layout(image: Image, tag: str) -> None:
    """Point *tag* of the layout's ``index.json`` at the image (replacing that tag only)."""
    layout = image.layout
    (layout / "oci-layout").write_bytes(_canonical({"imageLayoutVersion": "1.0.0"}))
    index_file = layout / "index.json"
    manifests = []
    if index_file.exists():
        try:
            manifests = json.loads(index_file.read_bytes()).get("manifests", [])
        except (ValueError, AttributeError):
            raise BuildError(f"{index_file} is not an OCI index: not touching it") from None
    manifests = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME, "") != tag]
    entry: dict[str, object] = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)}
    if tag:
        entry["annotations"] = {REF_NAME: tag}
    manifests.append(entry)
    tmp = index_file.with_name(".index.json.new")
    tmp.write_bytes(_canonical({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}))
    os.replace(tmp, index_file)


def _archive(layout: Path, out: Path, epoch: int) -> None:
    """The layout as a tar (oci-archive), entries sorted, owners 0:0, times *epoch*."""
    tmp = out.with_name(f".{out.name}.new")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*"), key=lambda p: p.relative_to(layout).parts):
            info = tar.gettarinfo(str(path), str(path.relative_to(layout)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    os.replace(tmp, out)


def _push(layout: Path, dest: Ref, options: FetchOptions, work: Path) -> None:
    args = ["copy", "--preserve-digests", "--quiet", *options.access_args("dest-"), f"oci:{layout}:build", dest.skopeo()]
    run_skopeo(args, dest, options, work, options.timeout)


def build(entries: list[Entry], dest: Ref, options: FetchOptions, epoch: int, progress: ProgressFn = nothing) -> Image:
    """Write the image of *entries* to *dest*; returns it (``digest`` is the image's digest)."""
    if dest.transport == "oci":
        path, suffix = _split_path_suffix(dest.target)
        layout = Path(path)
        if layout.exists() and any(layout.iterdir()) and not (layout / "oci-layout").exists():
            raise BuildError(f"{layout} exists and is not an OCI layout: not writing into it")
        image = write_image(entries, layout, options.arch, epoch, progress)
        tag_layout(image, suffix.lstrip(":"))
        return image
    if dest.transport not in ("oci-archive", "docker"):
        raise BuildError(f"cannot build to {dest}: give oci:DIR:TAG, oci-archive:FILE[:TAG] or docker://REF")
    with tempfile.TemporaryDirectory(prefix="extvisor-build-") as work:
        layout = Path(work) / "layout"
        image = write_image(entries, layout, options.arch, epoch, progress)
        if dest.transport == "oci-archive":
            path, suffix = _split_path_suffix(dest.target)
            tag_layout(image, suffix.lstrip(":"))
            out = Path(path)
            if out.is_dir():
                raise BuildError(f"{out} is a directory: oci-archive: writes a file")
            out.parent.mkdir(parents=True, exist_ok=True)
            _archive(layout, out, epoch)
        else:
            tag_layout(image, "build")
            progress(Progress("push", dest.given))
            _push(layout, dest, options, Path(work))
        return image  # its layout was a temporary directory, gone now
