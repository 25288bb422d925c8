"""Client calls for a declared node (``/v1/declared...``) and rolling them out in waves.

The node does the work (its engine pulls, switches, waits and rolls back); the client sends
the document and decides which nodes go when: ``canary`` nodes first, then at most
``max_parallel`` at a time, stopping once more than ``max_failures`` nodes failed or rolled
back. Nodes not reached are ``skipped``: nothing was sent to them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from extvisor.client.http import Client, ClientError
from extvisor.shared import routes

OK = ("applied", "unchanged")


def applied(client: Client) -> dict[str, Any]:
    return client.call(routes.DECLARED)  # type: ignore[no-any-return]


def diff(client: Client, document: str, filename: str) -> dict[str, Any]:
    return client.call(routes.DECLARED_DIFF, body={"document": document, "filename": filename})  # type: ignore[no-any-return]


def apply(client: Client, document: str, filename: str, timeout: float) -> Iterator[dict[str, Any]]:
    """The node's lines as they come: ``{"progress"}``..., then ``{"result"}`` or ``{"error"}``."""
    body = {"document": document, "filename": filename, "timeout": float(timeout)}
    return client.lines(routes.DECLARED_APPLY, body=body)  # type: ignore[no-any-return]


def rollback(client: Client, timeout: float) -> Iterator[dict[str, Any]]:
    return client.lines(routes.DECLARED_ROLLBACK, body={"timeout": float(timeout)})  # type: ignore[no-any-return]


def outcome(lines: Iterator[dict[str, Any]], on_progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read a node's stream to its end: its result, or a ``failed`` one saying why."""
    began = time.monotonic()
    try:
        for line in lines:
            if "progress" in line:
                on_progress(line["progress"])
            elif "result" in line:
                return dict(line["result"])
            elif "error" in line:
                return failed(line["error"], began)
    except ClientError as exc:
        return failed(str(exc), began)
    return failed("the node sent no result", began)


def failed(reason: str, began: float) -> dict[str, Any]:
    return {"result": "failed", "generation": None, "reason": reason, "duration": round(time.monotonic() - began, 3),
            "changed": {"installed": [], "upgraded": [], "removed": [], "restarted": []}}  # fmt: skip


def skipped() -> dict[str, Any]:
    return {"result": "skipped", "generation": None, "reason": "not reached: the rollout stopped before this node",
            "duration": 0.0, "changed": {"installed": [], "upgraded": [], "removed": [], "restarted": []}}  # fmt: skip


def rollout(nodes: list[Any], run: Callable[[Any], dict[str, Any]], canary: int = 0, max_parallel: int = 1,
            max_failures: int = 0, ok: tuple[str, ...] = OK) -> list[dict[str, Any]]:  # fmt: skip
    """Run *run* on every node in waves; one result per node, in the nodes' order."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    results: dict[int, dict[str, Any]] = {}
    failures = 0
    stop = False
    order = list(range(len(nodes)))
    phases = [order[:canary], order[canary:]] if canary else [order]
    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, 64))) as pool:
        for phase in phases:
            pending = list(phase)
            running: dict[Any, int] = {}
            while (pending and not stop) or running:
                while pending and not stop and len(running) < max_parallel:
                    i = pending.pop(0)
                    running[pool.submit(run, nodes[i])] = i
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    i = running.pop(future)
                    results[i] = future.result()
                    if results[i]["result"] not in ok:
                        failures += 1
                        stop = stop or failures > max_failures
            if stop:
                break
    return [results.get(i) or skipped() for i in order]


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """``2m``, ``90s``, ``1m30s``, ``1h`` or plain seconds; ValueError otherwise."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = _DURATION.match(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration (2m, 90s, 1m30s)")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def changed_text(changed: dict[str, list[str]]) -> str:
    parts = [f"{word} {', '.join(changed[key])}" for key, word in
             (("installed", "installed"), ("upgraded", "upgraded"), ("removed", "removed"), ("restarted", "restarted"))
             if changed.get(key)]  # fmt: skip
    return "; ".join(parts) or "-"
