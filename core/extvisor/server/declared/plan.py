"""What applying a declared file would do to a node, and how the node drifted: no side effects.

The extensions are matched by digest first (an installed extension, or a tree the store
keeps), then by repository (an upgrade); an image matched by neither is new, its name known
once pulled. Config documents are compared by kind and name and shown as unified diffs with
every environment value and file content masked (``documents/declared.py``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from extvisor.documents.declared import DeclaredNode, masked, split_image
from extvisor.extensions.store import Installed


def repository(image: str) -> str:
    try:
        return split_image(image)[1]
    except ValueError:
        return image


def _short(digest: str) -> str:
    return digest[:19]


def match(node: DeclaredNode, digests: list[str], installed: dict[str, Installed], trees: dict[str, Installed],
          known: dict[str, str]) -> list[dict[str, Any]]:  # fmt: skip
    """One item per declared image: action (install, upgrade, unchanged), name (or ""), from, to.

    *known* maps repositories to extension names (from the generations), for images not pulled yet.
    """
    by_digest = {r.digest: r for r in installed.values()}
    by_repo = {repository(r.ref): r.name for r in installed.values()}
    items = []
    for image, digest in zip(node.images, digests):
        here = by_digest.get(digest)
        tree = here or trees.get(digest)
        name = tree.name if tree else known.get(repository(image)) or by_repo.get(repository(image), "")
        old = installed.get(name) if name else None
        to = {"digest": digest, "version": tree.version if tree else "", "image": image}
        if here is not None:
            items.append({"action": "unchanged", "name": name, "from": _about(here), "to": to})
        elif old is not None:
            items.append({"action": "upgrade", "name": name, "from": _about(old), "to": to})
        else:
            items.append({"action": "install", "name": name, "from": None, "to": to})
    return items


def _about(record: Installed) -> dict[str, Any]:
    return {"digest": record.digest, "version": record.version, "image": record.ref}


def config_docs(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text or "") if isinstance(d, dict)]
    except yaml.YAMLError:
        return {}
    return {(str(d.get("kind")), str(d.get("name", ""))): d for d in docs}


def config_changes(now: str, then: str) -> list[dict[str, Any]]:
    """Per document: added, changed or removed, with a masked unified diff."""
    import yaml

    old, new = config_docs(now), config_docs(then)
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        action = "add" if a is None else "remove" if b is None else "change"
        left = yaml.safe_dump(masked(a), sort_keys=False).splitlines() if a else []
        right = yaml.safe_dump(masked(b, a), sort_keys=False).splitlines() if b else []
        label = f"{key[0]}/{key[1]}" if key[1] else key[0]
        diff = "\n".join(difflib.unified_diff(left, right, f"a/{label}", f"b/{label}", lineterm=""))
        out.append({"action": action, "kind": key[0], "name": key[1], "diff": diff})
    return out


def drift(gen: dict[str, Any] | None, installed: dict[str, Installed], config_now: str) -> list[str]:
    """What changed on the node by hand since its last generation."""
    if gen is None:
        return []
    number = gen["generation"]
    had = gen["state"]["extensions"]
    out = []
    for name, record in sorted(installed.items()):
        if name not in had:
            out.append(f"{name} {record.version} ({_short(record.digest)}) installed by hand since generation {number}")
        elif had[name]["digest"] != record.digest:
            out.append(f"{name} changed by hand since generation {number}: {had[name].get('version', '')} "
                       f"({_short(had[name]['digest'])}) -> {record.version} ({_short(record.digest)})")  # fmt: skip
    for name in sorted(set(had) - set(installed)):
        out.append(f"{name} {had[name].get('version', '')} removed by hand since generation {number}")
    if config_docs(config_now) != config_docs(gen["state"]["configs"]):
        out.append(f"config documents edited by hand since generation {number}")
    return out


def plan(node: DeclaredNode, digests: list[str], installed: dict[str, Installed], trees: dict[str, Installed],
         config_now: str, gen: dict[str, Any] | None, services: Iterable[str]) -> dict[str, Any]:  # fmt: skip
    """The whole answer of ``diff``: extensions, config documents, restarts, drift."""
    known = {repository(e["image"]): n for n, e in (gen or {}).get("state", {}).get("extensions", {}).items()}
    items = match(node, digests, installed, trees, known)
    named = {i["name"] for i in items if i["name"]}
    for name, record in sorted(installed.items()):
        if name not in named:
            items.append({"action": "remove", "name": name, "from": _about(record), "to": None})
    configs = config_changes(config_now, node.config_text())
    running = set(services)
    restart: list[str] = []
    for item in items:
        if item["action"] in ("install", "upgrade"):
            tree = trees.get(item["to"]["digest"])
            restart += tree.services if tree else (installed[item["name"]].services if item["name"] in installed else [])
    for change in configs:
        sid = f"ext-{change['name']}"
        if change["kind"] == "ExtensionServiceConfig" and sid in running and sid not in restart:
            restart.append(sid)
    stop = [s for i in items if i["action"] == "remove" for s in installed[i["name"]].services]
    return {
        "changed": any(i["action"] != "unchanged" for i in items) or bool(configs),
        "generation": gen["generation"] if gen else None,
        "extensions": items,
        "configs": configs,
        "restart": sorted(set(restart) - set(stop)),
        "stop": sorted(stop),
        "drift": drift(gen, installed, config_now),
    }
