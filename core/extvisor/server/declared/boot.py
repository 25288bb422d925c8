"""At every daemon start, before any service loads: the node as its last good generation says.

After a crash in the middle of an apply, as ``pending.json`` says instead (the last good
generation, or the state before the first apply). An extension missing from the store is
pulled again by digest, the only thing reached over the network; one installed by hand since
is removed; the config file is rewritten.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from extvisor.documents.declared import fetch_ref
from extvisor.extensions import FetchError, RefError, parse_ref
from extvisor.extensions.store import InstallError
from extvisor.server.declared.files import NodeState, write_atomic

if TYPE_CHECKING:
    from extvisor.server.declared.engine import Declared

log = logging.getLogger("extvisor.declared")


def converge_at_start(engine: Declared) -> None:
    """Converge to the last good generation before any service starts (in a thread).

    After a crash in the middle of an apply, to what ``pending.json`` says; a missing image
    is pulled again by digest (the only thing reached over the network).
    """
    pending, gen = engine.files.pending(), engine.files.current()
    if pending is None and gen is None:
        return
    target = NodeState.from_dict(pending["restore"] if pending else gen["state"])  # type: ignore[index]
    store, ext = engine.ext.store, engine.ext
    store.recover()
    installed = {r.name: r for r in store.list()}
    trees = store.trees_by_digest()
    links: dict[str, str | None] = {}
    for name, entry in target.extensions.items():
        here = installed.get(name)
        if here is not None and here.digest == entry["digest"]:
            continue
        tree = trees.get(entry["digest"])
        if tree is None:
            try:
                tree = store.stage(parse_ref(fetch_ref(entry["image"])), ext.options, ext.talos, ext.kinds, ext.strict,
                                   {}, lambda p: None, [], allow_setuid(ext), None, engine._policy(target.configs))  # fmt: skip
            except (FetchError, RefError, InstallError) as exc:
                log.error("declared state: cannot bring back %s (%s): %s", name, entry["image"], reason_of(exc))
                continue
        links[name] = tree.tree.name
    links.update({n: None for n in installed if n not in target.extensions})
    if links:
        store.switch(links)
        log.warning("declared state: converged to %s: %s", f"generation {gen['generation']}" if gen else "the state before the first apply",
                    ", ".join(f"{n} {'removed' if t is None else 'installed'}" for n, t in links.items()))  # fmt: skip
    path = engine.config_file
    if path is not None and target.configs != engine.config_now():
        if target.configs:
            write_atomic(path, target.configs, 0o600)
        else:
            path.unlink(missing_ok=True)
    if pending is not None:
        where = f"generation {gen['generation']}" if gen else "the state before the first apply"
        engine.files.set_last({"result": "rolled back", "at": time.time(), "by": pending.get("by", ""),
                             "generation": gen["generation"] if gen else None,
                             "reason": f"the daemon stopped while generation {pending.get('generation')} was being "
                                       f"applied; back on {where}"})  # fmt: skip
        engine.files.clear_pending()
    engine._pin()


def allow_setuid(ext: Any) -> bool:
    return bool(getattr(ext.settings, "allow_setuid", False))


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, InstallError):
        return f"{exc.ref}: " + "; ".join(str(p) for p in exc.problems if p.severity == "error")
    return str(exc)
