"""Installed extension images inside a running daemon: their services run with the others.

At start the store is recovered (an install killed half-way leaves nothing) and every
installed extension's services are added to the supervisor, each with its rootfs from its own
extension, after those of ``--config-dir`` (a name both declare stays with the config dir,
logged). An install or upgrade while running applies only that extension's services
(``Supervisor.apply``: new ones start, changed ones restart on the new rootfs, dropped ones
stop); a removal stops them, then deletes the files. Mount sources under Talos's extension
prefixes that an installed extension provides point into the merged extension tree
(``<state-dir>/extensions/merged``), as ``/usr/local`` is on a node.

Every install is checked first against this node's ImageVerificationConfig (read with the
ExtensionServiceConfig documents of ``--service-config-dir``, re-read at each install) and
``--require-signatures``; the deciding rule is logged and becomes an event of each service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extvisor.extensions import FetchOptions, Progress, RefError, host_arch, parse_ref
from extvisor.extensions.manifest import TALOS_VERSION, talos_version
from extvisor.extensions.fetch import STALL_TIMEOUT
from extvisor.extensions.progress import Cancelled
from extvisor.extensions.store import Installed, InstallError, Store, StoreError
from extvisor.extensions.verify import Policy
from extvisor.records import ConditionKind
from extvisor.runtime.configstore import ConfigStore
from extvisor.runtime.supervisor import Supervisor
from extvisor.documents.findings import Finding
from extvisor.documents.loader import load_service_file
from extvisor.documents.models import ServiceSpec
from extvisor.server.files import DaemonError
from extvisor.state import ServiceEvent

log = logging.getLogger("extvisor.extensions")
SOURCE = "extension:"


@dataclass
class ExtensionSettings:
    """The daemon's extension options, with skopeo's meanings."""

    authfile: str | None = None
    cert_dir: str | None = None
    talos_version: str = TALOS_VERSION
    arch: str = ""  #: empty: the host's
    install: list[str] = field(default_factory=list)  #: refs installed at start (``extvisor dev --extension``)
    allow_setuid: bool = False  #: install setuid and setgid files (refused otherwise)
    stall_timeout: float = STALL_TIMEOUT  #: a fetch with no progress for this long is stopped
    require_signatures: bool = False  #: an image no ImageVerificationConfig rule matches is refused


def source_of(name: str, path: str) -> str:
    """How a service of an extension names its source: ``extension:NAME:/usr/local/etc/containers/x.yaml``."""
    return f"{SOURCE}{name}:{path}"


class Extensions:
    def __init__(self, state_dir: Path, settings: ExtensionSettings, kinds: Mapping[str, ConditionKind], strict: bool,
                 configs: ConfigStore | None = None):  # fmt: skip
        self.configs = configs  #: the ConfigStore holding the ImageVerificationConfig (None: no document)
        self.store = Store(state_dir / "extensions")
        self.settings = settings
        self.options = FetchOptions(arch=settings.arch or host_arch(), authfile=settings.authfile, cert_dir=settings.cert_dir,
                                    stall_timeout=settings.stall_timeout)  # fmt: skip
        self.talos = talos_version(settings.talos_version)
        self.kinds = kinds
        self.strict = strict
        self.lock = asyncio.Lock()
        self.busy = ""  #: what holds the lock: "another install of REF", "the removal of NAME"
        self.sup: Supervisor | None = None

    # -- services of an extension ------------------------------------------------------------

    def services_of(self, record: Installed) -> tuple[list[tuple[ServiceSpec, str, Path]], list[Finding]]:
        out, findings = [], []
        for path in record.service_files():
            inner = "/" + os.path.relpath(path, record.rootfs)
            loaded = load_service_file(path, self.kinds, self.strict)
            findings += [Finding(source_of(record.name, inner), f.line, f.column, f.severity, f.field, f.message)
                         for f in loaded.findings]  # fmt: skip
            if loaded.spec is not None:
                out.append((self._remap(loaded.spec), source_of(record.name, inner), record.service_rootfs(loaded.spec.name)))
        return out, findings

    def _remap(self, spec: ServiceSpec) -> ServiceSpec:
        """Mount sources an extension provides come from the merged tree, through its stable link."""
        mounts = spec.container.mounts or []
        if not any(self.store.mount_source(m.source or "") for m in mounts):
            return spec
        spec = spec.model_copy(deep=True)
        for m in spec.container.mounts or []:
            if m.source and self.store.mount_source(m.source) is not None:
                m.source = str(self.store.merged_link / os.path.normpath(m.source).lstrip("/"))
                # read-only, as Talos's overlay is: the merged tree hard-links the installed files
                m.options = [o for o in (m.options or []) if o != "rw"] + ([] if "ro" in (m.options or []) else ["ro"])
        return spec

    def policy(self) -> Policy:
        """This node's verification policy, as its documents say right now."""
        if self.configs is None:
            return Policy(None, self.settings.require_signatures)
        self.configs.refresh()
        return Policy(self.configs.verification, self.settings.require_signatures, self.configs.verification_errors)

    def _announce(self, record: Installed) -> None:
        """The daemon log and an event of each of its services name the rule that decided."""
        why = f"{record.verified_rule or 'no rule matched'}: {record.verified}"
        log.info("extension %s %s (%s): image verification: %s", record.name, record.version, record.digest, why)
        for sid in record.services:
            service = self.sup.services.get(sid) if self.sup else None
            if service is not None:
                event = ServiceEvent(service=sid, state=service.state,
                                     msg=f"extension {record.name} {record.version} installed; image verification: {why}")  # fmt: skip
                service.history.push(event)
                self.sup.publish(event)  # type: ignore[union-attr]

    # -- at start ----------------------------------------------------------------------------

    async def attach(self, sup: Supervisor) -> None:
        """Recover the store, install ``settings.install``, add every extension's services."""
        self.sup = sup
        try:
            removed = await asyncio.to_thread(self.store.recover)
        except StoreError as exc:
            raise DaemonError(f"extension store: {exc}") from None
        if removed:
            log.warning("removed what an interrupted install or removal left: %s", ", ".join(removed))
        for ref in self.settings.install:
            taken = {s.spec.name: s.source for s in sup.services.values()}
            try:
                parsed = parse_ref(ref).absolute(os.getcwd())
            except RefError as exc:
                raise InstallError(ref, [Finding.at_path("", "error", str(exc))]) from None
            record, _ = await asyncio.to_thread(self.store.install, parsed, self.options, self.talos, self.kinds,
                                                self.strict, taken, _log_progress, self.settings.allow_setuid,
                                                policy=self.policy())  # fmt: skip
            log.info("extension %s: image verification: %s: %s", record.name, record.verified_rule or "no rule matched",
                     record.verified)  # fmt: skip
            for warning in record.warnings:
                log.warning("%s: %s", record.name, warning)
            await asyncio.to_thread(self.store.collect)
        for record in self.store.list():
            services, findings = self.services_of(record)
            for f in findings:
                (log.error if f.severity == "error" else log.warning)("%s", f)
            for spec, source, rootfs in services:
                other = sup.services.get(spec.id)
                if other is not None:
                    log.error("service %s of extension %s not loaded: %s already declares it", spec.name, record.name, other.source)
                    continue
                sup.add(spec, source, rootfs)
        log.info("%d extension(s) installed", len(self.store.list()))

    # -- while running -----------------------------------------------------------------------

    async def _acquire(self, what: str, cancel: threading.Event | None, progress: Callable[[Progress], None]) -> None:
        """Take the store, saying what it waits for; :class:`Cancelled` if *cancel* is set meanwhile."""
        if self.lock.locked():
            progress(Progress("queue", f"waiting for {self.busy}", ref=what))
            log.info("%s waits for %s", what, self.busy)
        acquire = asyncio.ensure_future(self.lock.acquire())
        while not acquire.done():
            await asyncio.wait({acquire}, timeout=0.2)
            if cancel is not None and cancel.is_set() and not acquire.done():
                acquire.cancel()
        if cancel is not None and cancel.is_set():
            if not acquire.cancelled():
                self.lock.release()
            raise Cancelled(f"{what}: cancelled while queued")

    async def install(self, ref: str, cwd: str, strict: bool, progress: Callable[[Progress], None],
                      allow_setuid: bool = False, cancel: threading.Event | None = None) -> Installed:  # fmt: skip
        """Install or upgrade one image, then apply its services. Raises InstallError, or
        :class:`Cancelled` once *cancel* is set before the switch (its staging is deleted)."""
        assert self.sup is not None
        sup = self.sup
        await self._acquire(ref, cancel, progress)
        try:
            self.busy = f"another install of {ref}"
            parsed = parse_ref(ref).absolute(cwd or "/")
            taken = {s.spec.name: s.source for s in sup.services.values() if not s.source.startswith(SOURCE)}
            policy = self.policy()

            def logged(p: Progress) -> None:
                if p.stage == "verify" and "rule" in p.message:
                    log.info("%s", p)
                progress(p)

            try:
                record, old = await asyncio.to_thread(self.store.install, parsed, self.options, self.talos, self.kinds,
                                                      strict or self.strict, taken, logged,
                                                      allow_setuid or self.settings.allow_setuid, cancel, policy)  # fmt: skip
            except InstallError as exc:
                log.warning("extension %s refused: %s", ref, "; ".join(str(p) for p in exc.problems if p.severity == "error"))
                raise
            await self._apply(record, old)
            self._announce(record)
            await asyncio.to_thread(self.store.collect)
            log.info("extension %s %s installed from %s (%s)", record.name, record.version, ref, record.digest)
            return record
        finally:
            self.busy = ""
            self.lock.release()

    async def _apply(self, record: Installed, old: Installed | None) -> None:
        assert self.sup is not None
        services, findings = self.services_of(record)
        for f in findings:
            log.warning("%s", f)
        keep = {spec.id for spec, _, _ in services}
        for sid in old.services if old else []:
            if sid not in keep and sid in self.sup.services:
                await self.sup.remove(sid)
        for spec, source, rootfs in services:
            await self.sup.apply(spec, source, rootfs)

    async def remove(self, name: str) -> Installed:
        """Stop the extension's services, then remove every file it brought. Raises KeyError."""
        assert self.sup is not None
        await self._acquire(f"removal of {name}", None, lambda p: None)
        try:
            self.busy = f"the removal of {name}"
            record = self.store.get(name)
            if record is None:
                raise KeyError(name)
            for sid in record.services:
                service = self.sup.services.get(sid)
                if service is not None and service.source.startswith(source_of(name, "")):
                    await self.sup.remove(sid)
            await asyncio.to_thread(self.store.remove, name)
            await asyncio.to_thread(self.store.collect)
            log.info("extension %s removed", name)
            return record
        finally:
            self.busy = ""
            self.lock.release()

    def list(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.store.list()]


def _log_progress(p: Progress) -> None:
    if p.stage != "fetch" or not p.done:
        log.info("%s", p)


__all__ = ["Cancelled", "ExtensionSettings", "Extensions", "InstallError"]
