"""The client configuration: talosconfig's shape, so a real talosconfig works as it is.

    context: reader
    contexts:
      reader:
        endpoints: [127.0.0.2:50000]
        nodes: [127.0.0.2, 127.0.0.3]      # optional
        ca: <base64 of the CA's PEM>
        crt: <base64 of the client certificate's PEM>
        key: <base64 of its key's PEM>

Read from ``--config FILE``, else ``$EXTVISOR_CONFIG``, else ``~/.extvisor/config``; written
0600 in a directory made 0700 (Talos's config.go). Fields this module does not know (Talos's
``auth``, ``cluster``...) are kept as they were.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extvisor.remote.where import CONFIG_ENV, config_file

__all__ = ["CONFIG_ENV", "Config", "ConfigError", "Context", "config_path", "default_path"]


class ConfigError(Exception):
    """A configuration that cannot be used, said in one line."""


def default_path() -> Path:
    return Path(config_file())


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(config_file(explicit))


def _b64(data: str | bytes | None) -> str:
    if not data:
        return ""
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(value: str, what: str) -> bytes:
    if not value:
        return b""
    try:
        return base64.b64decode(value, validate=False)
    except ValueError as exc:
        raise ConfigError(f"{what}: not base64 ({exc})") from None


@dataclass
class Context:
    endpoints: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    ca: str = ""  # base64 of PEM, as in the file
    crt: str = ""
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pems(cls, ca: bytes, crt: bytes, key: bytes, endpoints: list[str], nodes: list[str] | None = None) -> Context:
        return cls(endpoints=list(endpoints), nodes=list(nodes or []), ca=_b64(ca), crt=_b64(crt), key=_b64(key))

    @property
    def ca_pem(self) -> bytes:
        return _unb64(self.ca, "ca")

    @property
    def crt_pem(self) -> bytes:
        return _unb64(self.crt, "crt")

    @property
    def key_pem(self) -> bytes:
        return _unb64(self.key, "key")

    @classmethod
    def from_dict(cls, name: str, raw: Any) -> Context:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"context {name!r} is not a mapping")
        raw = dict(raw)

        def strings(key: str) -> list[str]:
            value = raw.pop(key, None) or []
            if isinstance(value, str):
                value = [value]
            return [str(v) for v in value]

        endpoints = strings("endpoints")
        target = raw.pop("target", None)  # deprecated in Talos, appended to endpoints on read
        if target:
            endpoints.append(str(target))
        return cls(endpoints=endpoints, nodes=strings("nodes"), ca=str(raw.pop("ca", "") or ""),
                   crt=str(raw.pop("crt", "") or ""), key=str(raw.pop("key", "") or ""), extra=raw)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoints": list(self.endpoints)}  # always written, as Talos does
        if self.nodes:
            out["nodes"] = list(self.nodes)
        for key in ("ca", "crt", "key"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out.update(self.extra)
        return out


@dataclass
class Config:
    context: str = ""
    contexts: dict[str, Context] = field(default_factory=dict)
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        """The file at *path*; a missing one is an empty configuration."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls(path=path)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        import yaml  # only once there is a file: `extvisor services` on the local socket never needs it

        try:
            raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml's when built
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not YAML ({exc})") from None
        if raw is None:
            return cls(path=path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: not a talosconfig (a mapping with context and contexts)")
        raw = dict(raw)
        contexts = raw.pop("contexts", None) or {}
        if not isinstance(contexts, dict):
            raise ConfigError(f"{path}: contexts is not a mapping")
        return cls(context=str(raw.pop("context", "") or ""),
                   contexts={str(k): Context.from_dict(str(k), v) for k, v in contexts.items()},
                   path=path, extra=raw)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"context": self.context, "contexts": {k: c.to_dict() for k, c in self.contexts.items()}, **self.extra}

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write atomically, mode 0600, creating the directory (0700) when missing."""
        import tempfile

        import yaml

        target = Path(path or self.path or default_path())
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)  # created 0600
        try:
            with os.fdopen(fd, "w") as f:
                yaml.safe_dump(self.to_dict(), f, sort_keys=False, default_flow_style=False)
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.path = target
        return target

    @property
    def empty(self) -> bool:
        return not self.contexts

    def current(self, name: str | None = None) -> tuple[str, Context]:
        """The context named (``--context``) or the current one."""
        name = name or self.context
        where = f" in {self.path}" if self.path else ""
        if self.empty:
            raise ConfigError(f"extvisor config file is empty{where}: create one with `extvisor config new`")
        if not name:
            raise ConfigError(f"no current context{where}: choose one with `extvisor config context NAME`")
        if name not in self.contexts:
            raise ConfigError(f"context {name!r} is not defined{where}")
        return name, self.contexts[name]

    def use(self, name: str) -> None:
        if name not in self.contexts:
            raise ConfigError(f"context {name!r} is not defined")
        self.context = name

    def merge(self, other: Config) -> list[str]:
        """Add *other*'s contexts; a clashing name becomes ``name-1``, ``name-2``... The current
        context becomes *other*'s. Returns the renames, as talosctl announces them."""
        notes: list[str] = []
        renamed: dict[str, str] = {}
        for name, ctx in other.contexts.items():
            new = name
            if name in self.contexts:
                i = 1
                while f"{name}-{i}" in self.contexts or f"{name}-{i}" in other.contexts:
                    i += 1
                new = f"{name}-{i}"
                notes.append(f'renamed extvisor config context "{name}" -> "{new}"')
            renamed[name] = new
            self.contexts[new] = ctx
        if other.context:
            self.context = renamed.get(other.context, other.context)
        return notes
