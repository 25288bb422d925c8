"""``environmentFile``: ``KEY=value`` lines, read the way Talos's go-envparse reads them."""

from __future__ import annotations

import re

from extvisor.oci import ContainerSpecError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def parse_env_file(path: str) -> list[str]:
    """Return ``KEY=value`` entries; a malformed line is an error naming the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ContainerSpecError(f"environment file {path!r}: {exc}") from None
    out: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key):
            raise ContainerSpecError(f"{path}:{number}: malformed line {raw!r}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n")
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out.append(f"{key}={value}")
    return out
