"""Image references in skopeo's transport syntax, plus ``tarball:FILE``.

``docker://HOST[:PORT]/REPO:TAG`` (or ``@sha256:...``), ``oci:DIR[:TAG]``, ``oci-archive:FILE``,
``docker-archive:FILE`` go to skopeo as written; a bare ``HOST/REPO:TAG`` means ``docker://``.
``tarball:FILE`` is the plain tar of ``manifest.yaml`` + ``rootfs/`` that Talos's imager takes
as ``tarballPath``; it never goes through skopeo.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

SKOPEO_TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive")
LOCAL = ("oci", "oci-archive", "docker-archive", "tarball", "dir")
TRANSPORTS = (*SKOPEO_TRANSPORTS, "tarball")
OTHER_SKOPEO = ("dir", "containers-storage", "docker-daemon", "ostree", "sif", "atomic")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RefError(ValueError):
    pass


@dataclass(frozen=True)
class Ref:
    """A parsed reference. ``given`` is the text as the user wrote it (what listings show)."""

    transport: str  #: docker, oci, oci-archive, docker-archive, tarball, or dir (validate only)
    target: str  #: what follows ``transport:`` (for docker, without the ``//``)
    given: str

    @property
    def is_local(self) -> bool:
        return self.transport in LOCAL

    @property
    def path(self) -> str:
        """The file or directory of a local reference (an ``oci:DIR:TAG`` without its tag)."""
        if self.transport in ("oci", "oci-archive", "docker-archive"):
            return _split_path_suffix(self.target)[0]
        return self.target

    def skopeo(self) -> str:
        """The reference as skopeo takes it."""
        if self.transport == "docker":
            return "docker://" + self.target
        return f"{self.transport}:{self.target}"

    def absolute(self, cwd: str | os.PathLike[str]) -> Ref:
        """The same reference with a relative local path made absolute against *cwd*."""
        if not self.is_local or os.path.isabs(self.path):
            return self
        path, suffix = (_split_path_suffix(self.target) if self.transport != "tarball" and self.transport != "dir"
                        else (self.target, ""))  # fmt: skip
        return Ref(self.transport, os.path.join(os.fspath(cwd), path) + suffix, self.given)

    def __str__(self) -> str:
        return self.given


def _split_path_suffix(target: str) -> tuple[str, str]:
    """``DIR:TAG`` -> (``DIR``, ``:TAG``); a path holding no colon has no suffix."""
    if ":" in target:
        head, _, tail = target.rpartition(":")
        if "/" not in tail and head:
            return head, ":" + tail
    return target, ""


def _check_docker(target: str, given: str) -> None:
    if not target or target.startswith("/") or " " in target:
        raise RefError(f"invalid image reference {given!r}: expected HOST/REPO:TAG or HOST/REPO@sha256:...")
    if "@" in target:
        digest = target.split("@", 1)[1]
        if not _DIGEST.match(digest):
            raise RefError(f"invalid image reference {given!r}: digest must be sha256: and 64 hex digits")


def parse_ref(text: str, allow_dir: bool = False) -> Ref:
    """Parse *text*. With *allow_dir*, an existing directory is an unpacked extension (``dir``)."""
    text = text.strip()
    if not text:
        raise RefError("empty image reference")
    if allow_dir and os.path.isdir(text):
        return Ref("dir", text, text)
    if text.startswith("docker://"):
        target = text[len("docker://") :]
        _check_docker(target, text)
        return Ref("docker", target, text)
    head, sep, rest = text.partition(":")
    if sep and "/" not in head and head in TRANSPORTS:
        if not rest:
            raise RefError(f"invalid image reference {text!r}: {head}: needs a path")
        if head == "docker":
            raise RefError(f"invalid image reference {text!r}: write docker://HOST/REPO:TAG")
        return Ref(head, rest, text)
    if sep and head in OTHER_SKOPEO:
        raise RefError(f"unsupported transport {head!r} in {text!r} (use one of: docker://, "
                       "oci:, oci-archive:, docker-archive:, tarball:)")  # fmt: skip
    _check_docker(text, text)
    return Ref("docker", text, text)
