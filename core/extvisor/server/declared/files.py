"""What a declared node keeps under ``<state-dir>/declared/``, every file written atomically.

    generations/<N>.json   one per successful apply: the document with tags pinned, what it
                           installed (name, digest, image, store tree), the config text, when,
                           by whom, and the generation it replaced (``previous``)
    current                the number of the last good generation
    pending.json           an apply in progress: what to come back to if the daemon dies
    last.json              the last attempt: applied, unchanged, rolled back or failed, and why

A file is written to ``.<name>.tmp``, fsynced, renamed over the old one and the directory
fsynced: a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

KEEP = 5  #: generations kept besides the current one and its previous


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # generations hold secrets
    tmp = path.with_name(f".{path.name}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class NodeState:
    """What a node runs, as far as a declared file says: extension name -> (digest, store tree,
    image), and the text of the config documents ("" for none)."""

    def __init__(self, extensions: dict[str, dict[str, Any]] | None = None, configs: str = ""):
        self.extensions = extensions or {}  #: name -> {"digest", "token", "image", "version", "services"}
        self.configs = configs

    def as_dict(self) -> dict[str, Any]:
        return {"extensions": self.extensions, "configs": self.configs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeState:
        return cls(dict(data.get("extensions") or {}), str(data.get("configs") or ""))

    def same(self, other: NodeState) -> bool:
        digests = {n: e["digest"] for n, e in self.extensions.items()}
        return digests == {n: e["digest"] for n, e in other.extensions.items()} and self.configs == other.configs

    def tokens(self) -> list[str]:
        return [e["token"] for e in self.extensions.values() if e.get("token")]


class Files:
    def __init__(self, root: Path):
        self.root = root
        self.gens = root / "generations"

    def _read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _private(self) -> None:
        """The state's directories: this user's alone (generations hold the config's secrets)."""
        from extvisor.shared.dirs import private_dir

        private_dir(self.root, "the declared state", parents=True, tighten=True)
        private_dir(self.gens, "the declared state's generations", tighten=True)

    def _write(self, path: Path, data: Any) -> None:
        self._private()
        write_atomic(path, json.dumps(data, indent=1))

    # -- generations --------------------------------------------------------------------

    def current_number(self) -> int | None:
        try:
            return int((self.root / "current").read_text().strip())
        except (OSError, ValueError):
            return None

    def generation(self, number: int | None) -> dict[str, Any] | None:
        if number is None:
            return None
        data = self._read(self.gens / f"{number}.json")
        return data if isinstance(data, dict) else None

    def current(self) -> dict[str, Any] | None:
        return self.generation(self.current_number())

    def numbers(self) -> list[int]:
        if not self.gens.is_dir():
            return []
        return sorted(int(p.stem) for p in self.gens.glob("*.json") if p.stem.isdigit())

    def next_number(self) -> int:
        return max(self.numbers(), default=0) + 1

    def add(self, gen: dict[str, Any]) -> None:
        """Write a generation and make it current (the file first, then the pointer)."""
        self._write(self.gens / f"{gen['generation']}.json", gen)
        self.set_current(gen["generation"])

    def set_current(self, number: int) -> None:
        self._private()
        write_atomic(self.root / "current", f"{number}\n")

    def prune(self) -> list[int]:
        """Generations to keep: the newest few, the current one and its previous."""
        numbers = self.numbers()
        keep = set(numbers[-KEEP:])
        cur = self.current()
        if cur is not None:
            keep.add(cur["generation"])
            if cur.get("previous") is not None:
                keep.add(cur["previous"])
        for n in numbers:
            if n not in keep:
                (self.gens / f"{n}.json").unlink(missing_ok=True)
        return sorted(keep)

    # -- the apply in progress, the last attempt ----------------------------------------------

    def pending(self) -> dict[str, Any] | None:
        return self._read(self.root / "pending.json")

    def set_pending(self, data: dict[str, Any]) -> None:
        self._write(self.root / "pending.json", data)

    def clear_pending(self) -> None:
        (self.root / "pending.json").unlink(missing_ok=True)

    def last(self) -> dict[str, Any] | None:
        return self._read(self.root / "last.json")

    def set_last(self, data: dict[str, Any]) -> None:
        self._write(self.root / "last.json", data)
