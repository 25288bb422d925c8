"""A reference's digest without fetching its layers: ``skopeo inspect --raw``.

The digest is the one an install records: for an index (OCI or Docker list), the digest of
the ``linux/<arch>`` manifest skopeo copy would pick; for a manifest, its own. A reference
that carries a digest is answered without asking anyone.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .fetch import FetchError, FetchOptions, inspect_raw
from .image import sha256_file
from .refs import Ref
from .verify import platform_digest


def digest_of(ref: Ref, options: FetchOptions, timeout: float = 60.0) -> str:
    """The platform manifest digest *ref* names now. Raises FetchError."""
    if ref.transport == "docker" and "@" in ref.target:
        return ref.target.split("@", 1)[1]
    if ref.transport == "tarball":
        try:
            return sha256_file(Path(ref.path))
        except OSError as exc:
            raise FetchError(f"{ref}: {exc.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="extvisor-resolve-") as work:
        digest, raw = inspect_raw(ref, options, Path(work), timeout)
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise FetchError(f"{ref}: the registry answered something that is not a manifest") from None
    if "manifests" not in manifest:
        return digest
    found = platform_digest(raw, options.arch)  # an index: the manifest skopeo copy would pick
    if not found:
        raise FetchError(f"no OCI image found for {options.arch} in {ref}")
    return found[0]
