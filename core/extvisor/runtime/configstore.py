"""ExtensionServiceConfig documents at run time.

Documents are read from ``--service-config-dir`` (``*.yaml``, several a file). For a service
whose name matches, each ``configFiles`` entry is written under the state directory and
bind-mounted read-only at its ``mountPath``; its ``environment`` follows the spec's own.
A document added, changed or removed restarts that service, as in Talos. A broken file is
reported and changes nothing: the documents it held before stay in force.

The same files may hold the node's one ``ImageVerificationConfig`` (documents/imageverify.py),
which extension installs are checked against. A broken one is not kept from before: it makes
every install refused until it is fixed (a policy that cannot be read must not open the door),
and so do two of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from extvisor.runtime.envfile import parse_env_file
from extvisor.documents.findings import Finding
from extvisor.documents.imageverify import ImageVerification, one_per_node
from extvisor.documents.models import ExtensionServiceConfig, ServiceSpec

log = logging.getLogger("extvisor.configs")


class ConfigStore:
    def __init__(self, config_dir: Path | None, files_dir: Path):
        self.config_dir = config_dir
        self.files_dir = files_dir
        self._by_file: dict[str, dict[str, ExtensionServiceConfig]] = {}
        self._docs: dict[str, ExtensionServiceConfig] = {}
        self._signature: dict[str, tuple[int, int, int]] = {}
        self.findings: list[Finding] = []
        self._changed = asyncio.Event()
        self.verification: ImageVerification | None = None  #: the node's ImageVerificationConfig
        self.verification_errors: list[Finding] = []  #: why it cannot be used (installs are refused)
        self._pending: set[str] = set()

    # ConfigView, for conditions
    def get(self, name: str) -> ExtensionServiceConfig | None:
        return self._docs.get(name)

    async def changed(self) -> None:
        await self._changed.wait()

    def names(self) -> list[str]:
        return sorted(self._docs)

    # -- reading --------------------------------------------------------------------------

    def _scan(self) -> dict[str, tuple[int, int, int]]:
        if self.config_dir is None or not self.config_dir.is_dir():
            return {}
        sig = {}
        for entry in sorted(os.scandir(self.config_dir), key=lambda e: e.name):
            if entry.name.endswith(".yaml") and entry.is_file():
                st = entry.stat()
                sig[entry.name] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return sig

    def reload(self) -> set[str]:
        """Re-read changed files; return the names of services whose document changed."""
        from extvisor.documents.imageverify import load_machine_config

        signature = self._scan()
        if signature == self._signature:
            return set()
        self._signature = signature
        by_file = {k: v for k, v in self._by_file.items() if k in signature}
        self.findings = []
        verify_errors: list[Finding] = []
        verify_by_file: dict[str, list[ImageVerification]] = {}
        for name in signature:
            path = self.config_dir / name  # type: ignore[operator]
            read = load_machine_config(path)
            docs, findings = read.configs, read.findings
            errors = [f for f in findings if f.severity == "error"]
            self.findings.extend(findings)
            for f in findings:
                log.warning("%s", f)
            if errors and read.holds_verification:
                verify_errors += errors
            verify_by_file[name] = read.verifications
            if errors:
                continue  # keep what this file held before
            by_file[name] = {d.name: d for d in docs}
        verifications = [v for fname in sorted(verify_by_file) for v in verify_by_file[fname]]
        verify_errors += one_per_node(verifications) if len(verifications) > 1 else []
        for f in one_per_node(verifications):
            log.error("%s", f)
        self.verification = verifications[0] if len(verifications) == 1 else None
        self.verification_errors = verify_errors
        merged: dict[str, ExtensionServiceConfig] = {}
        for fname in sorted(by_file):
            for doc_name, doc in by_file[fname].items():
                if doc_name in merged:
                    log.warning("%s: duplicate document: ExtensionServiceConfig/%s (kept the first)", fname, doc_name)
                    continue
                merged[doc_name] = doc
        changed = {n for n in set(merged) | set(self._docs) if merged.get(n) != self._docs.get(n)}
        self._by_file, self._docs = by_file, merged
        if changed:
            self._changed.set()
            self._changed = asyncio.Event()
        return changed

    def refresh(self) -> None:
        """Read changes now (an install must see the current ImageVerificationConfig); the
        watcher still reports the services whose document changed."""
        self._pending |= self.reload()

    async def watch(self, on_change: Callable[[set[str]], Awaitable[Any]], interval: float = 1.0) -> None:
        """Re-read the directory each *interval* (a few stat calls) and report changed names."""
        while True:
            await asyncio.sleep(interval)
            try:
                changed = self.reload() | self._pending
                self._pending = set()
            except Exception:
                log.exception("reading service configs failed")
                continue
            if changed:
                await on_change(changed)

    # -- what a container gets -------------------------------------------------------------

    def materialize(self, name: str) -> tuple[list[str], list[dict[str, Any]]]:
        """Write the service's config files; return its environment and read-only bind mounts."""
        doc = self._docs.get(name)
        base = self.files_dir / name
        if doc is None:
            return [], []
        mounts = []
        for cf in doc.configFiles or []:
            # Keyed by a hash of the path: lossless, unlike Talos's "/" -> "-".
            digest = hashlib.sha256(cf.mountPath.encode()).hexdigest()[:16]
            target = base / f"{digest}-{os.path.basename(cf.mountPath)}"
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not target.exists() or target.read_text() != cf.content:
                tmp = target.with_suffix(".tmp")
                tmp.write_text(cf.content)
                os.chmod(tmp, 0o644)
                tmp.replace(target)
            mounts.append({"destination": cf.mountPath, "type": "bind", "source": str(target), "options": ["ro", "bind"]})
        return list(doc.environment or []), mounts

    def read_environment_file(self, spec: ServiceSpec) -> list[str]:
        path = spec.container.environmentFile
        return parse_env_file(path) if path else []
