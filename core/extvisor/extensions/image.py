"""From a reference to a checked, unpacked extension: fetch, verify, unpack, check.

Used by the store to install, and by ``extvisor extensions validate`` to check without
installing: both run exactly the same steps.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from extvisor.documents.findings import Finding
from extvisor.records import ConditionKind

from . import manifest as mf
from .check import CheckResult, check_extension
from .fetch import FetchError, FetchOptions, fetch
from .progress import Progress, ProgressFn, nothing
from .refs import Ref
from .semver import Version
from .unpack import Layer, UnpackError, apply_layers
from .verify import Policy, Verdict, VerifyError

IMAGE_DIR = "image"


@dataclass
class Unpacked:
    """An image unpacked into ``<work>/image`` and checked."""

    ref: Ref
    path: Path  #: the directory holding ``manifest.yaml`` and ``rootfs/``
    digest: str = ""  #: manifest digest (the chosen platform's), or the tarball's sha256
    media_type: str = ""
    check: CheckResult = field(default_factory=CheckResult)
    unpacked: bool = False  #: False when fetching or unpacking failed
    verdict: Verdict | None = None  #: what the ImageVerificationConfig decided (None: no policy given)

    @property
    def problems(self) -> list[Finding]:
        return self.check.problems


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def unpack(ref: Ref, work: Path, options: FetchOptions, progress: ProgressFn = nothing, allow_setuid: bool = False,
           cancel: threading.Event | None = None, policy: Policy | None = None) -> Unpacked:  # fmt: skip
    """Fetch and unpack *ref* into ``work/image``; problems (not exceptions) for a bad image.

    Raises :class:`Cancelled` once *cancel* is set (skopeo is killed; *work* is the caller's).
    With a *policy*, the image is verified first and, after a key check, fetched by the
    verified digest; a refusal is a problem and nothing is fetched or unpacked.
    """
    target = work / IMAGE_DIR
    result = Unpacked(ref, target)
    if policy is not None:
        try:
            result.verdict = policy.check(ref, options, work, progress)
        except VerifyError as exc:
            result.check.problems.append(Finding.at_path("", "error", str(exc)))
            return result
        ref = result.verdict.ref
    if ref.transport == "dir":
        result.path = Path(ref.path)
        result.unpacked = True
        return result
    target.mkdir()
    try:
        if ref.transport == "tarball":
            # Talos's tarballPath: one plain tar of manifest.yaml + rootfs/, no whiteouts
            path = Path(ref.path)
            if not path.is_file():
                raise FetchError(f"{ref}: {path} is not a file")
            result.digest = sha256_file(path)
            layers = [Layer(path, "", -1, "", "tarball")]
            whiteouts = False
        else:
            fetched = fetch(ref, work / "blobs", options, progress, cancel)
            result.digest, result.media_type, layers = fetched.digest, fetched.media_type, fetched.layers
            result.check.problems.extend(Finding.at_path("", "warning", w) for w in fetched.warnings)
            whiteouts = True
        for i, layer in enumerate(layers, 1):
            layer.label = layer.label or f"layer {i}"

        def applied(i: int, layer: Layer) -> None:
            progress(Progress("unpack", f"applied {layer.label}", i, len(layers), ref.given))

        report = apply_layers(layers, target, whiteouts, applied, allow_setuid, cancel)
        result.check.problems.extend(Finding.at_path("", "warning", w) for w in report.warnings)
        for name, is_dir, mode in report.writable:  # Talos's words; the tree gets no group/other write
            path = "/" + name.strip("/").removeprefix(mf.ROOTFS).lstrip("/")
            message = f"world-writeable {'directories' if is_dir else 'files'} are not allowed: {mf.go_q(path)}"
            result.check.problems.append(Finding.at_path(name.strip("/"), "warning", f"{message} (mode {mode:04o}, unpacked as {mode & ~0o022:04o})"))
        result.unpacked = True
    except FetchError as exc:
        result.check.problems.append(Finding.at_path("", "error", str(exc)))
    except UnpackError as exc:
        result.check.problems.append(Finding.at_path(exc.entry, "error", str(exc)))
    finally:
        shutil.rmtree(work / "blobs", ignore_errors=True)
    return result


def check(unpacked: Unpacked, talos: Version, kinds: Mapping[str, ConditionKind], strict: bool = False,
          progress: ProgressFn = nothing, allow_setuid: bool = False) -> Unpacked:  # fmt: skip
    """Run every check on an unpacked image; problems go into ``unpacked.check``."""
    if not unpacked.unpacked:
        return unpacked
    progress(Progress("check", "", ref=unpacked.ref.given))
    found = check_extension(unpacked.path, talos, kinds, strict, allow_setuid)
    found.problems[:0] = unpacked.check.problems
    unpacked.check = found
    return unpacked


def validate(ref: Ref, options: FetchOptions, talos: Version, kinds: Mapping[str, ConditionKind],
             strict: bool = False, progress: ProgressFn = nothing, tmp: str | None = None,
             allow_setuid: bool = False, policy: Policy | None = None) -> Unpacked:  # fmt: skip
    """Fetch, unpack and check *ref* in a temporary directory, then delete it."""
    with tempfile.TemporaryDirectory(prefix="extvisor-validate-", dir=tmp) as work:
        unpacked = unpack(ref, Path(work), options, progress, allow_setuid, policy=policy)
        return check(unpacked, talos, kinds, strict, progress, allow_setuid)


def default_talos() -> Version:
    return mf.talos_version(mf.TALOS_VERSION)
