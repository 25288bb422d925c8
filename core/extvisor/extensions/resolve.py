"""A reference's digest without fetching its layers: ``skopeo inspect --raw``.

The digest is the one an install records: for an index (OCI or Docker list), the digest of
the ``linux/<arch>`` manifest skopeo copy would pick; for a manifest, its own. A reference
that carries a digest is answered without asking anyone.
"""

from __future__ import annotations

import hashlib
import json
import subprocess

from .fetch import INDEX_TYPES, FetchError, FetchOptions, _policy_args, _skopeo_message
from .refs import Ref


def digest_of(ref: Ref, options: FetchOptions, timeout: float = 60.0) -> str:
    """The platform manifest digest *ref* names now. Raises FetchError."""
    if ref.transport == "docker" and "@" in ref.target:
        return ref.target.split("@", 1)[1]
    if ref.transport == "tarball":
        h = hashlib.sha256()
        try:
            with open(ref.path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError as exc:
            raise FetchError(f"{ref}: {exc.strerror}") from None
        return "sha256:" + h.hexdigest()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="extvisor-resolve-") as work:
        from pathlib import Path

        policy = _policy_args(Path(work))
        args = options.access_args() if ref.transport == "docker" else []
        cmd = [options.skopeo, *policy, "inspect", "--raw", *args, ref.skopeo()]
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise FetchError(f"{options.skopeo} not found: install skopeo (apt-get install skopeo)") from None
        except subprocess.TimeoutExpired:
            raise FetchError(f"{ref}: the registry did not answer within {timeout:.0f} s") from None
    if out.returncode != 0:
        raise FetchError(f"{ref}: {_skopeo_message(out.stderr.decode(errors='replace'), ref, options.arch)}")
    raw = out.stdout
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise FetchError(f"{ref}: the registry answered something that is not a manifest") from None
    if manifest.get("mediaType") in INDEX_TYPES or (not manifest.get("mediaType") and "manifests" in manifest):
        for entry in manifest.get("manifests") or []:
            platform = entry.get("platform") or {}
            if platform.get("os") == "linux" and platform.get("architecture") == options.arch:
                return str(entry.get("digest"))
        raise FetchError(f"no OCI image found for {options.arch} in {ref}")
    return "sha256:" + hashlib.sha256(raw).hexdigest()
