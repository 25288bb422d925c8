"""Fetching one platform's image with skopeo.

``skopeo copy --override-os linux --override-arch ARCH SRC dir:DEST`` picks ``linux/ARCH`` from
an index (OCI or Docker list), checks each blob against its digest as it copies, and writes the
manifest exactly as published (``dir:`` never converts a Docker schema2 manifest, unlike an
OCI layout), so the digest we record is the one the registry serves. The blobs are then checked
again here before anything reads them (unpack.verify_blob).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .progress import Cancelled, Progress, ProgressFn, nothing
from .refs import Ref
from .unpack import Layer, UnpackError, verify_blob

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}'
SYSTEM_POLICY = Path("/etc/containers/policy.json")
STALL_TIMEOUT = 300.0  #: containerd's image_pull_progress_timeout (5m)


class FetchError(Exception):
    pass


def host_arch() -> str:
    machine = platform.machine()
    return ARCHES.get(machine, machine)


@dataclass
class FetchOptions:
    """Registry access, with skopeo's meanings."""

    arch: str = field(default_factory=host_arch)
    authfile: str | None = None  #: containers-auth.json
    cert_dir: str | None = None  #: *.crt CAs, *.cert + *.key client certificates
    tls_verify: bool | None = None  #: None: skopeo's default (verify)
    skopeo: str = "skopeo"
    stall_timeout: float = STALL_TIMEOUT  #: no progress for this long stops the fetch (0: never)
    timeout: float | None = None  #: the whole copy at most this long (None: no limit; a slow but moving fetch goes on)

    def access_args(self, prefix: str = "") -> list[str]:
        """skopeo's registry options: ``--authfile`` etc., or ``--src-``/``--dest-`` ones with *prefix*."""
        args = []
        if self.authfile:
            args += [f"--{prefix}authfile", self.authfile]
        if self.cert_dir:
            args += [f"--{prefix}cert-dir", self.cert_dir]
        if self.tls_verify is not None:
            args.append(f"--{prefix}tls-verify={'true' if self.tls_verify else 'false'}")
        return args

    def skopeo_args(self, ref: Ref) -> list[str]:
        args = ["--override-os", "linux", "--override-arch", self.arch]
        return args + self.access_args("src-") if ref.transport == "docker" else args


@dataclass
class Fetched:
    path: Path  #: the ``dir:`` copy
    digest: str  #: sha256 of the manifest, as published
    media_type: str
    layers: list[Layer]
    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _skopeo_message(stderr: str, ref: Ref, arch: str) -> str:
    messages = re.findall(r'level=fatal msg="((?:[^"\\]|\\.)*)"', stderr)
    text = json.loads(f'"{messages[-1]}"') if messages else (stderr.strip().splitlines() or ["skopeo failed"])[-1]
    if "no image found in" in text and "for architecture" in text:
        return f"no OCI image found for {arch} in {ref} ({text})"
    if "certificate signed by unknown authority" in text:
        return f"{text} (give the registry's CA with --cert-dir DIR)"
    return text


def _dir_size(path: Path) -> int:
    total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
    except OSError:
        pass
    return total


def _run_skopeo(cmd: list[str], dest: Path, ref: Ref, options: FetchOptions, progress: ProgressFn,
                cancel: threading.Event | None = None) -> None:  # fmt: skip
    """Run skopeo, killing it when nothing has moved for ``options.stall_timeout`` seconds (a
    registry that stops sending mid-blob would hold it, and the store, for ever) or on *cancel*."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    errors: list[str] = []
    moved = [time.monotonic()]  # when the copy last made progress: a line from skopeo or more bytes on disk

    def read_stderr() -> None:
        assert proc.stderr is not None
        errors.extend(proc.stderr)

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # "Copying blob sha256:...", "Writing manifest ..."
            moved[0] = time.monotonic()
            if line.strip():
                progress(Progress("fetch", line.strip(), ref=ref.given))

    threads = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
    for t in threads:
        t.start()
    start, last = time.monotonic(), -1
    try:
        while proc.poll() is None:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            now, size = time.monotonic(), _dir_size(dest)
            if size != last:
                progress(Progress("fetch", "", done=size, ref=ref.given))
                last, moved[0] = size, now
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{ref}: cancelled")
            if options.stall_timeout and now - moved[0] > options.stall_timeout:
                raise FetchError(f"{ref}: no progress for {options.stall_timeout:g} s ({last} bytes fetched): the registry "
                                 "stopped sending; the fetch was stopped (--image-pull-progress-timeout)")  # fmt: skip
            if options.timeout and now - start > options.timeout:
                raise FetchError(f"skopeo copy of {ref} took longer than {options.timeout:g} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in threads:
            t.join(timeout=5)
    if proc.returncode != 0:
        raise FetchError(_skopeo_message("".join(errors), ref, options.arch))


def _policy_args(work: Path) -> list[str]:
    """Signature policy: the host's, or accept anything (as Talos, which checks no signature)."""
    if SYSTEM_POLICY.exists():
        return []
    path = work / "policy.json"
    path.write_text(POLICY)
    return ["--policy", str(path)]


def run_skopeo(args: list[str], ref: Ref, options: FetchOptions, work: Path, timeout: float | None,
               error: type[Exception] = FetchError, own_policy: bool = False) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """One skopeo call that must succeed; its failure is one line, raised as *error*.

    With *own_policy* skopeo's signature policy accepts anything (extvisor checks signatures
    itself, by digest); without, the host's policy applies as for a pull.
    """
    if own_policy:
        policy = work / "open-policy.json"
        policy.write_text(POLICY)
        cmd = [options.skopeo, "--policy", str(policy), *args]
    else:
        cmd = [options.skopeo, *_policy_args(work), *args]
    try:
        out = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except FileNotFoundError:
        raise error(f"{options.skopeo} not found: install skopeo (apt-get install skopeo)") from None
    except subprocess.TimeoutExpired:
        raise error(f"{ref}: skopeo did not answer within {timeout:g} s") from None
    if out.returncode != 0:
        raise error(f"{ref}: {_skopeo_message(out.stderr.decode(errors='replace'), ref, options.arch)}")
    return out


def inspect_raw(ref: Ref, options: FetchOptions, work: Path, timeout: float | None,
                error: type[Exception] = FetchError) -> tuple[str, bytes]:  # fmt: skip
    """The digest of the manifest *ref* names now (an index for a multi-platform image) and
    its bytes: one ``skopeo inspect --raw``, nothing else fetched."""
    access = options.access_args() if ref.transport == "docker" else []
    out = run_skopeo(["inspect", "--raw", *access, ref.skopeo()], ref, options, work, timeout, error, own_policy=True)
    return "sha256:" + hashlib.sha256(out.stdout).hexdigest(), out.stdout


def fetch(ref: Ref, dest: Path, options: FetchOptions, progress: ProgressFn = nothing,
          cancel: threading.Event | None = None) -> Fetched:  # fmt: skip
    """Copy the ``linux/<arch>`` image of *ref* into the new directory *dest* and check it."""
    if ref.transport not in ("docker", "oci", "oci-archive", "docker-archive"):
        raise FetchError(f"{ref}: not an image reference skopeo reads")
    if ref.is_local and not os.path.exists(ref.path):
        raise FetchError(f"{ref}: {ref.path} does not exist")
    progress(Progress("resolve", f"{ref.skopeo()} for linux/{options.arch}", ref=ref.given))
    cmd = [options.skopeo, *_policy_args(dest.parent), "copy", *options.skopeo_args(ref), ref.skopeo(), f"dir:{dest}"]
    try:
        _run_skopeo(cmd, dest, ref, options, progress, cancel)
    except FileNotFoundError:
        raise FetchError(f"{options.skopeo} not found: install skopeo (apt-get install skopeo)") from None
    return read_dir(dest, ref, options.arch, progress)


def read_dir(dest: Path, ref: Ref, arch: str, progress: ProgressFn = nothing) -> Fetched:
    """The manifest, config and layers of a ``dir:`` copy, each blob checked."""
    raw = (dest / "manifest.json").read_bytes()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise FetchError(f"{ref}: the image manifest is not JSON: {exc}") from None
    media_type = manifest.get("mediaType") or ""
    config_desc = manifest.get("config") or {}
    if not media_type and config_desc.get("mediaType") == OCI_CONFIG:
        media_type = OCI_MANIFEST  # mediaType is optional in an OCI manifest
    if media_type in INDEX_TYPES:
        raise FetchError(f"{ref}: got an index where one image was expected")
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST) or manifest.get("schemaVersion") != 2:
        raise FetchError(f"{ref}: unsupported manifest type {media_type or manifest.get('schemaVersion')!r} "
                         "(OCI image manifest or Docker schema 2 only)")  # fmt: skip
    progress(Progress("verify", f"manifest {digest}", ref=ref.given))
    warnings: list[str] = []
    config: dict[str, Any] = {}
    try:
        config_digest = config_desc["digest"]
        config_path = dest / config_digest.split(":", 1)[1]
        verify_blob(config_path, config_digest, config_desc.get("size", -1), "config")
        config = json.loads(config_path.read_bytes())
        layers = []
        for i, desc in enumerate(manifest.get("layers") or [], 1):
            layer_digest = desc["digest"]
            layers.append(Layer(dest / layer_digest.split(":", 1)[1], layer_digest, desc.get("size", -1),
                                desc.get("mediaType", ""), f"layer {i} ({layer_digest[:19]})"))  # fmt: skip
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise FetchError(f"{ref}: malformed image manifest or config: {exc!r}") from None
    except UnpackError as exc:
        raise FetchError(f"{ref}: {exc}") from None
    if not layers:
        raise FetchError(f"{ref}: the image has no layers")
    got = config.get("architecture")
    if got and got != arch:
        warnings.append(f"{ref}: the image config says architecture {got!r}, not {arch!r}")
    return Fetched(dest, digest, media_type, layers, config, warnings)
