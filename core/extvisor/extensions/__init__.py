"""Talos system extension images: fetch, unpack, check, and keep them installed.

Holds reference parsing (``refs``), fetching with skopeo (``fetch``), applying layers safely
(``unpack``, reading tars with Go's bounds in ``tarread``), Talos's reading and rules
(``manifest``, ``semver``), every check (``check``; problems are :class:`extvisor.Finding`),
the whole pipeline (``image``), progress records (``progress``), a reference's digest without
fetching it (``resolve``), the on-disk store with atomic install, upgrade and removal
(``store``, its 0700 directories by ``dirs``), building an image from a dev-mode project
folder: the folder checked (``project``), the layer and OCI layout written (``build``);
cosign signatures: checking them before a fetch (``verify``), making keys and signing
(``sign``); and a declared-state file as an OCI artifact pushed, pulled and promoted with
skopeo (``artifact``).
docs/extensions.md tells the story.

May import: ``extvisor.oci``, ``extvisor.plugins``, ``extvisor.documents``, ``extvisor.shared``
(the private-directory check) and the plugin surface. Never ``extvisor.runtime``, ``extvisor.server``, ``extvisor.client`` or
``extvisor.cli`` (the daemon calls in here, not the other way round).
"""

from __future__ import annotations

from .check import CheckResult
from .fetch import FetchError, FetchOptions, host_arch
from .manifest import TALOS_VERSION, ExtensionError, Manifest
from .progress import Progress
from .refs import Ref, RefError, parse_ref

__all__ = [
    "TALOS_VERSION",
    "CheckResult",
    "ExtensionError",
    "FetchError",
    "FetchOptions",
    "Manifest",
    "Progress",
    "Ref",
    "RefError",
    "host_arch",
    "parse_ref",
]
