"""Client calls for the daemon's extension routes (``/v1/extensions``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from extvisor.client.http import Client, ClientError
from extvisor.client.wire import WireError


def list_extensions(client: Client) -> list[dict[str, Any]]:
    return client.request("GET", "/v1/extensions")  # type: ignore[no-any-return]


def install(client: Client, refs: list[str], cwd: str, strict: bool = False, allow_setuid: bool = False) -> Iterator[dict[str, Any]]:
    """Install or upgrade images; yields the daemon's lines as they come:
    ``{"progress": ...}``, then ``{"installed": ...}`` or ``{"error": ..., "problems": [...]}`` per ref.
    Closing the iterator early (Ctrl-C) closes the stream, which cancels the install on the node."""
    body = {"refs": refs, "cwd": cwd, "strict": strict, "allow_setuid": allow_setuid}
    response = client._open("POST", "/v1/extensions", None, body, client.timeout, read_timeout=None)
    buf = b""
    try:
        for chunk in response.iter_raw():
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
    except (OSError, WireError):
        raise ClientError("the extvisor daemon closed the stream (did it stop?)") from None
    finally:
        response.close()


def remove(client: Client, name: str) -> dict[str, Any]:
    return client.request("DELETE", f"/v1/extensions/{name}", timeout=None)  # type: ignore[no-any-return]
