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
    except OSError as exc:
        raise ContainerSpecError(f"environment file {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # its text is never quoted: the file may hold secrets
        raise ContainerSpecError(f"environment file {path!r}: not valid UTF-8 (at byte {exc.start})") from None
    out: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, eq, value = line.partition("=")
        key = key.strip()
        # Say which line and why, never what it holds (an environment file may hold secrets).
        if not eq:
            raise ContainerSpecError(f"{path}:{number}: malformed line: no '=' (expected KEY=value)")
        if not _KEY.match(key):
            raise ContainerSpecError(f"{path}:{number}: malformed line: the text before '=' is not a variable "
                                     "name (expected KEY=value, KEY of letters, digits, _ and .)")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n")
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out.append(f"{key}={value}")
    return out
