"""The declared-state engine of one node: plan, apply with a health gate, roll back, converge at start.

An apply is one change: every image is resolved and pulled and checked first (nothing on the
node changes if one fails), then the store switches the extensions together, the config file
is written, and only the services whose image or configuration changed restart. Each of them
must then be Running (and healthy, where it has a check) and stay so (``gate.py``)
within the timeout; otherwise the node goes back to what it ran before — the earlier trees are
still in the store — and says why. A successful apply is a new generation. ``pending.json``
says what to come back to while an apply is under way: a daemon killed half-way comes back on
the last good generation (:meth:`Declared.boot`, before any service starts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from extvisor.documents.declared import DeclaredNode, fetch_ref, load_declared, mask_text, pinned
from extvisor.documents.findings import Finding
from extvisor.extensions import FetchError, Progress, RefError, parse_ref
from extvisor.extensions.resolve import digest_of
from extvisor.extensions.store import Installed, InstallError
from extvisor.extensions.verify import VerifyError
from extvisor.runtime.configstore import ConfigStore
from extvisor.server.declared.boot import allow_setuid, converge_at_start, reason_of
from extvisor.server.declared.files import Files, NodeState, write_atomic
from extvisor.server.declared.gate import wait_ready
from extvisor.server.declared.policy import other_verification, policy_for, recheck
from extvisor.server.declared.plan import plan, repository
from extvisor.server.extensions import SOURCE, Extensions, source_of

log = logging.getLogger("extvisor.declared")
CONFIG_FILE = "00-declared.yaml"  #: in --service-config-dir; sorts first, so its documents win a duplicate
ProgressFn = Callable[[dict[str, Any]], None]


class DocumentError(Exception):
    """The file cannot be applied as written; ``findings`` say where."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("; ".join(str(f) for f in findings if f.severity == "error"))


class Busy(Exception):
    pass


class Refused(Exception):
    """Nothing to do what was asked with (no previous generation...)."""


def _nothing(_: dict[str, Any]) -> None:
    pass


class Declared:
    def __init__(self, ext: Extensions, configs: ConfigStore, config_dir: Path | None, state_dir: Path):
        self.ext = ext
        self.configs = configs
        self.config_dir = config_dir
        self.files = Files(state_dir / "declared")
        self.lock = asyncio.Lock()
        self.following: Callable[[], dict[str, Any]] | None = None  #: server/follow's status, with --follow

    # -- reading the node ------------------------------------------------------------------

    @property
    def config_file(self) -> Path | None:
        return self.config_dir / CONFIG_FILE if self.config_dir is not None else None

    def config_now(self) -> str:
        try:
            return self.config_file.read_text() if self.config_file else ""  # type: ignore[union-attr]
        except OSError:
            return ""

    def node_state(self) -> NodeState:
        exts = {r.name: _entry(r, r.ref) for r in self.ext.store.list()}
        return NodeState(exts, self.config_now())

    def load(self, text: str, filename: str) -> DeclaredNode:
        node, findings = load_declared(text, filename)
        if node is None:
            raise DocumentError(findings)
        if node.config_text() and self.config_dir is None:
            raise DocumentError([Finding(filename, 0, 0, "error", "", "this daemon runs without --service-config-dir: "
                                                                      "it cannot hold config documents")])  # fmt: skip
        return node

    def _policy(self, configs_text: str) -> Any:
        return policy_for(self.config_dir, CONFIG_FILE, configs_text, self.ext.settings.require_signatures)

    async def _resolve(self, images: list[str], progress: ProgressFn, known: set[str] | None = None) -> list[str]:
        """Each image's digest. With *known* (the repositories the store holds trees of), a tag
        of another repository is left unresolved (""): it is pulled anyway, by its tag, once."""

        async def one(image: str) -> str:
            ref = parse_ref(fetch_ref(image))
            if known is not None and "@" not in ref.target and repository(image) not in known:
                return ""
            if "@" not in ref.target:
                progress({"stage": "resolve", "message": f"{image} for linux/{self.ext.options.arch}", "ref": image})
            return await asyncio.to_thread(digest_of, ref, self.ext.options)

        return list(await asyncio.gather(*(one(i) for i in images)))

    async def diff(self, text: str, filename: str) -> dict[str, Any]:
        """What ``apply`` would do; nothing changes (tags are resolved at the registry)."""
        node = self.load(text, filename)
        try:
            digests = await self._resolve(node.images, _nothing)
        except (FetchError, RefError) as exc:
            raise Refused(str(exc)) from None
        store = self.ext.store
        installed = {r.name: r for r in store.list()}
        sup = self.ext.sup
        return plan(node, digests, installed, store.trees_by_digest(), self.config_now(), self.files.current(),
                    sup.services if sup else ())  # fmt: skip

    def applied(self, secrets: bool) -> dict[str, Any]:
        gen = self.files.current()
        out: dict[str, Any] = {"generation": None, "document": None, "applied_at": None, "applied_by": None,
                               "previous": None, "extensions": [], "last": self.files.last(),
                               "follow": self.following() if self.following else None}  # fmt: skip
        if gen is not None:
            doc = gen["document"]
            if not secrets:
                head, sep, rest = doc.partition("---\n")
                doc = head + (sep + mask_text(rest) if sep else "")
            out.update(generation=gen["generation"], document=doc, applied_at=gen["applied_at"], applied_by=gen["applied_by"],
                       previous=gen.get("previous"),
                       extensions=[{"name": n, **{k: e.get(k) for k in ("image", "digest", "version")}}
                                   for n, e in gen["state"]["extensions"].items()])  # fmt: skip
        return out

    # -- apply and rollback ------------------------------------------------------------------

    async def apply(self, text: str, filename: str, timeout: float, by: str, progress: ProgressFn = _nothing) -> dict[str, Any]:
        node = self.load(text, filename)
        if self.lock.locked():
            raise Busy("another apply is already in progress on this node")
        async with self.lock, self.ext.lock:
            self.ext.busy = "the apply of a declared file"
            try:
                return await self._apply(node, timeout, by, progress)
            finally:
                self.ext.busy = ""

    async def _apply(self, node: DeclaredNode, timeout: float, by: str, progress: ProgressFn) -> dict[str, Any]:
        began = time.monotonic()
        gen = self.files.current()
        before = self.node_state()
        try:  # _stage deletes what it pulled when it fails
            other = other_verification(self.config_dir, CONFIG_FILE) if node.verification is not None else None
            if other is not None:
                raise Refused(f"{other} already holds an ImageVerificationConfig and the file declares one: "
                              "a node takes at most one")  # fmt: skip
            store = self.ext.store
            known = {repository(r.ref) for r in [*store.list(), *store.trees_by_digest().values()]}
            digests = await self._resolve(node.images, progress, known)
            target, _ = await self._stage(node.images, digests, progress, self._policy(node.config_text()))
        except (FetchError, RefError, InstallError, Refused) as exc:
            return self._finish(began, "failed", gen, {}, reason_of(exc), by)
        target.configs = node.config_text()
        document = node.render([e["image"] for e in target.extensions.values()])
        if target.same(before) and gen is not None and gen["document"] == document:
            return self._finish(began, "unchanged", gen, {}, "", by)
        number = self.files.next_number()
        ok, reason, changed = await self._change(before, target, gen, number, timeout, by, progress)
        if not ok:
            return self._finish(began, "rolled back", gen, changed, reason, by)
        new = {"generation": number, "document": document, "state": target.as_dict(), "applied_at": time.time(),
               "applied_by": by, "previous": gen["generation"] if gen else None}  # fmt: skip
        self.files.add(new)
        return self._finish(began, "applied", new, changed, "", by)

    async def rollback(self, timeout: float, by: str, progress: ProgressFn = _nothing) -> dict[str, Any]:
        """Back to the generation before the current one (it becomes current again)."""
        if self.lock.locked():
            raise Busy("another apply is already in progress on this node")
        async with self.lock, self.ext.lock:
            began = time.monotonic()
            gen = self.files.current()
            if gen is None or gen.get("previous") is None:
                raise Refused("no previous generation to roll back to" + (f" (generation {gen['generation']} is the first)" if gen else ""))
            prev = self.files.generation(gen["previous"])
            if prev is None:
                raise Refused(f"generation {gen['previous']} is no longer kept on this node")
            self.ext.busy = "a rollback of the declared state"
            try:
                return await self._rollback(gen, prev, timeout, by, progress, began)
            finally:
                self.ext.busy = ""

    async def _rollback(self, gen: dict[str, Any], prev: dict[str, Any], timeout: float, by: str, progress: ProgressFn,
                        began: float) -> dict[str, Any]:  # fmt: skip
        before = self.node_state()
        target = NodeState.from_dict(prev["state"])
        try:
            images = [e["image"] for e in target.extensions.values()]
            found, _ = await self._stage(images, [e["digest"] for e in target.extensions.values()], progress,
                                              self._policy(target.configs))  # fmt: skip
        except (FetchError, RefError, InstallError, Refused) as exc:
            return self._finish(began, "failed", gen, {}, f"cannot roll back to generation {prev['generation']}: {reason_of(exc)}", by)
        target.extensions = found.extensions
        ok, reason, changed = await self._change(before, target, gen, prev["generation"], timeout, by, progress)
        if not ok:
            return self._finish(began, "failed", gen, changed, f"rollback to generation {prev['generation']} failed: {reason}", by)
        self.files.set_current(prev["generation"])
        why = f"back to generation {prev['generation']} from {gen['generation']} (extvisor rollback)"
        return self._finish(began, "rolled back", prev, changed, why, by)

    async def _stage(self, images: list[str], digests: list[str], progress: ProgressFn,
                     policy: Any = None) -> tuple[NodeState, list[str]]:  # fmt: skip
        """Every image as a tree in the store (pulled and checked if need be), none switched yet."""
        store, ext = self.ext.store, self.ext
        installed = {r.digest: r for r in store.list()}
        trees = store.trees_by_digest()
        sup = ext.sup
        taken = {s.spec.name: s.source for s in sup.services.values() if not s.source.startswith(SOURCE)} if sup else {}
        target: dict[str, dict[str, Any]] = {}
        staged: list[str] = []

        def forward(p: Progress) -> None:
            if p.stage != "fetch" or not p.done:
                progress(p.as_dict())

        try:
            for image, digest in zip(images, digests):
                record = installed.get(digest) or trees.get(digest)
                if record is not None and policy is not None:  # already here: under the policy of now
                    ref = parse_ref(fetch_ref(pinned(image, digest)))
                    try:
                        await asyncio.to_thread(recheck, policy, ref, getattr(record, "verified", "none"), ext.options)
                    except VerifyError as exc:
                        raise Refused(str(exc)) from None
                if record is None:  # by digest; an image never seen here by its tag, in one pull
                    ref = parse_ref(fetch_ref(pinned(image, digest) if digest else image))
                    record = await asyncio.to_thread(store.stage, ref, ext.options, ext.talos, ext.kinds, ext.strict,
                                                     taken, forward, [], allow_setuid(ext), None, policy, False)  # fmt: skip
                    staged.append(record.tree.name)
                    if digest and record.digest != digest:
                        raise Refused(f"{image}: pulled {record.digest}, but it was resolved to {digest}")
                if record.name in target:
                    raise Refused(f"{image} and {target[record.name]['image']} are both the extension {record.name}")
                target[record.name] = _entry(record, pinned(image, record.digest))
            owner: dict[str, str] = {}
            for name, entry in target.items():
                for sid in entry["services"]:
                    if sid in owner:
                        raise Refused(f"service {sid} is in both extension {owner[sid]!r} and {name!r}")
                    owner[sid] = name
        except BaseException:
            for token in staged:
                store.discard(token)
            raise
        return NodeState(target), staged

    async def _change(self, before: NodeState, target: NodeState, gen: dict[str, Any] | None, number: int, timeout: float,
                      by: str, progress: ProgressFn) -> tuple[bool, str, dict[str, list[str]]]:  # fmt: skip
        """Switch to *target*, wait for its services, and come back to *before* if they fail."""
        restore = NodeState.from_dict(gen["state"]) if gen else before
        self.files.set_pending({"generation": number, "restore": restore.as_dict(), "started_at": time.time(), "by": by})
        self._pin(before.tokens() + target.tokens() + restore.tokens())
        changed = _changes(before, target)
        try:
            restarted = await self._transition(before, target, progress)
            changed["restarted"] = restarted
            progress({"stage": "health", "message": f"waiting for {', '.join(restarted)}" if restarted else "nothing restarted"})
            ok, reason = await wait_ready(self.ext.sup, restarted, timeout)
        except Exception as exc:  # whatever went wrong, the node goes back
            log.exception("apply of generation %d failed", number)
            ok, reason = False, f"apply failed: {exc!r}"
        if not ok:
            progress({"stage": "rollback", "message": reason})
            log.warning("generation %d rolled back: %s", number, reason)
            try:
                again = await self._transition(self.node_state(), before, progress)
                ok_back, why_back = await wait_ready(self.ext.sup, again, min(timeout, 30.0))
                if not ok_back:
                    log.warning("after the rollback: %s", why_back)
            except Exception:
                log.exception("rolling back generation %d failed", number)
        self.files.clear_pending()
        self._pin()
        await asyncio.to_thread(self.ext.store.collect)
        return ok, reason, changed

    async def _transition(self, frm: NodeState, to: NodeState, progress: ProgressFn) -> list[str]:
        """Switch the store and the config file from *frm* to *to*; (re)start only what changed."""
        sup, store = self.ext.sup, self.ext.store
        assert sup is not None
        links: dict[str, str | None] = {n: e["token"] for n, e in to.extensions.items()
                                        if n not in frm.extensions or frm.extensions[n]["token"] != e["token"]}  # fmt: skip
        links.update({n: None for n in frm.extensions if n not in to.extensions})
        olds: dict[str, Installed | None] = {n: store.get(n) for n in links}
        for name, token in links.items():
            old = olds[name]
            if token is None and old is not None:
                for sid in old.services:
                    service = sup.services.get(sid)
                    if service is not None and service.source.startswith(source_of(name, "")):
                        await sup.remove(sid)
        if links:
            progress({"stage": "switch", "message": ", ".join(f"{n} {'removed' if t is None else 'installed'}"
                                                               for n, t in links.items())})  # fmt: skip
            await asyncio.to_thread(store.switch, links)
        changed_docs = self._write_configs(to.configs)
        restarted: list[str] = []
        for name, token in links.items():
            record = store.get(name) if token else None
            if record is None:
                continue
            await self.ext._apply(record, olds[name])
            restarted += [s for s in record.services if s in sup.services]
        for doc in sorted(changed_docs):
            service = sup.services.get(f"ext-{doc}")
            if service is not None and service.id not in restarted:
                await service.stop()
                service.start()
                restarted.append(service.id)
        return restarted

    def _write_configs(self, text: str) -> set[str]:
        """Write the config file (or remove it) and reload at once, so the watcher never restarts
        a service behind the engine's back; returns the names whose documents changed."""
        path = self.config_file
        if path is None or text == self.config_now():
            return set()
        if text:
            write_atomic(path, text, 0o600)
        else:
            path.unlink(missing_ok=True)
        return self.configs.reload()

    # -- bookkeeping -------------------------------------------------------------------------

    def _pin(self, extra: list[str] | None = None) -> None:
        """The store keeps every kept generation's trees (and, during an apply, both sides')."""
        self.files.prune()
        held = {f"generation-{n}": NodeState.from_dict(g["state"]).tokens()
                for n in self.files.numbers() if (g := self.files.generation(n))}  # fmt: skip
        if extra:
            held["pending"] = sorted(set(extra))
        self.ext.store.keep(held)

    def _finish(self, began: float, result: str, gen: dict[str, Any] | None, changed: dict[str, list[str]], reason: str,
                by: str) -> dict[str, Any]:  # fmt: skip
        number = gen["generation"] if gen else None
        last = {"result": result, "reason": reason, "at": time.time(), "by": by, "generation": number}
        if result != "unchanged":
            self.files.set_last(last)
        (log.info if result in ("applied", "unchanged") else log.warning)(
            "declared state: %s (generation %s)%s", result, number, f": {reason}" if reason else "")
        full = {"installed": [], "upgraded": [], "removed": [], "restarted": [], **changed}
        return {"result": result, "generation": number, "changed": full, "reason": reason,
                "duration": round(time.monotonic() - began, 3)}  # fmt: skip

    # -- at daemon start ----------------------------------------------------------------------

    def boot(self) -> None:
        """Converge to the last good generation before any service starts (``boot.py``)."""
        converge_at_start(self)


def _entry(record: Installed, image: str) -> dict[str, Any]:
    return {"digest": record.digest, "token": record.tree.name, "image": image, "version": record.version,
            "services": list(record.services)}  # fmt: skip


def _changes(before: NodeState, target: NodeState) -> dict[str, list[str]]:
    def label(n: str, e: dict[str, Any]) -> str:
        return f"{n} {e.get('version', '')}".strip()

    return {
        "installed": [label(n, e) for n, e in target.extensions.items() if n not in before.extensions],
        "upgraded": [f"{n} {before.extensions[n].get('version', '')} -> {e.get('version', '')}"
                     for n, e in target.extensions.items()
                     if n in before.extensions and before.extensions[n]["digest"] != e["digest"]],  # fmt: skip
        "removed": [label(n, e) for n, e in before.extensions.items() if n not in target.extensions],
        "restarted": [],
    }
