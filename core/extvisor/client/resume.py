"""Followed streams that ride over a daemon restart: ``logs -f`` and ``events`` reconnect by
themselves and go on without a missing or repeated line or event.

Logs: the daemon says where a stream starts (``X-Extvisor-Log-Position: INODE:OFFSET``); the
reader counts the bytes it got and asks the next daemon for ``since=INODE:OFFSET+count``
(rotations included: the daemon walks on into newer files). Events: the reader asks for
``since=<time of the last event>`` and drops the events of that instant it has already
shown. A stream that ends (the daemon killed, upgraded, restarted) is opened again every
0.1 s for up to ``PATIENCE`` seconds (then the stream fails as it did before: "closed the
stream"); with systemd's socket (or an upgrade in place) the connection simply waits until
the new daemon answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from extvisor.client.wire import WireError

Client = Any  # extvisor.client.http.Client, which imports this module

PATIENCE = 10.0  #: seconds a follower waits for the next daemon
LOG_POSITION = "x-extvisor-log-position"


def _reopen(client: Client, path: str, params: dict[str, Any], since: float | None) -> Any:
    """The stream's response; once a stream has run (*since* set), retried until PATIENCE is spent."""
    while True:
        try:
            return client._open("GET", path, params, None, client.timeout, read_timeout=None)
        except client.errors:
            if since is None:
                raise
            if time.monotonic() - since > PATIENCE:
                raise client.errors[0]("the extvisor daemon closed the stream (did it stop?)") from None
            time.sleep(0.1)


def _chunks(response: Any) -> Iterator[bytes]:
    """The stream's chunks until it ends, cleanly or not."""
    try:
        yield from response.iter_raw()
    except (OSError, WireError):
        return
    finally:
        response.close()


def follow_logs(client: Client, service_id: str, tail: int) -> Iterator[bytes]:
    path = f"/v1/services/{service_id}/logs"
    params: dict[str, Any] = {"tail": tail, "follow": True}
    lost: float | None = None
    while True:
        response = _reopen(client, path, params, lost)
        start = response.headers.get(LOG_POSITION, "")
        inode, _, offset = start.partition(":")
        got = 0
        for chunk in _chunks(response):
            got += len(chunk)
            yield chunk
        lost = time.monotonic()
        if inode.isdigit() and offset.isdigit():
            params = {"follow": True, "since": f"{inode}:{int(offset) + got}"}
        else:  # no file when this stream began: go on from the end of what the next daemon has
            params = {"follow": True, "tail": 0}


def follow_events(client: Client, tail: int) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {"follow": True, "tail": tail}
    last: float | None = None
    shown: set[tuple[Any, ...]] = set()  # the events of the instant *last*
    lost: float | None = None
    while True:
        began = time.time()
        response = _reopen(client, "/v1/events", params, lost)
        buf = b""
        for chunk in _chunks(response):
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                key = (event.get("service"), event.get("state"), event.get("msg"), event.get("ts"))
                ts = float(event.get("ts") or 0)
                if last is not None and (ts < last or (ts == last and key in shown)):
                    continue
                if ts != last:
                    last, shown = ts, set()
                shown.add(key)
                yield event
        lost = time.monotonic()
        params = {"follow": True, "since": last if last is not None else began}
