"""The follower's decisions (server/follow.py) with a source and an engine standing in for the
registry and the declared-state engine: jitter, backoff, refused digests kept and not retried,
what is recorded. The real registry and daemons are in tests/declared/test_follow.py."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from extvisor.server import follow as fl

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


class Source:
    def __init__(self) -> None:
        self.digest = D1
        self.down = False
        self.refuse: dict[str, str] = {}
        self.fetched: list[str] = []
        self.resolved = 0

    def resolve(self) -> str:
        self.resolved += 1
        if self.down:
            raise fl.Transient("docker://r/fleet:stable: pinging container registry r: connection refused")
        return self.digest

    def fetch(self, digest: str) -> fl.Fetched:
        self.fetched.append(digest)
        if digest in self.refuse:
            raise fl.Refusal(self.refuse[digest])
        return fl.Fetched(digest, f"doc {digest[7:9]}", "node.yaml", int(digest[7]), "key abc (rule 0 (r/*))")


class Engine:
    def __init__(self, errors: tuple[type[Exception], type[Exception]]) -> None:
        self.busy_cls, self.doc_cls = errors
        self.results: dict[str, dict[str, Any]] = {}
        self.applied: list[tuple[str, str]] = []
        self.generation = 0

    async def apply(self, text: str, filename: str, timeout: float, by: str, progress: Any = None) -> dict[str, Any]:
        self.applied.append((text, by))
        result = self.results.get(text)
        if isinstance(result, Exception):
            raise result
        if result is None:
            self.generation += 1
            result = {"result": "applied", "generation": self.generation, "reason": ""}
        return result


@pytest.fixture
def errors() -> tuple[type[Exception], type[Exception]]:
    return fl.engine_errors()  # the declared engine's Busy and DocumentError


def make(tmp_path: Path, errors, **kw: Any) -> tuple[fl.Follower, Source, Engine, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    source, engine, events = Source(), Engine(errors), []
    f = fl.Follower("docker://r/fleet:stable", 60.0, source, engine, tmp_path, event=lambda s, m: events.append((s, m)),
                    rng=random.Random(7), **kw)  # fmt: skip
    return f, source, engine, events


def check(f: fl.Follower) -> str:
    return asyncio.run(f.check())


@pytest.mark.parametrize("text, seconds", [("60", 60), ("60s", 60), ("5m", 300), ("1m30s", 90), ("1h", 3600), ("2.5s", 2.5), (30, 30)])
def test_interval(text: str, seconds: float) -> None:
    assert fl.parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "1d", "-5s", "0.5s", "5 m", "m5"])
def test_interval_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration|at least 1s"):
        fl.parse_interval(text)


def test_checks_spread_within_twenty_percent_and_back_off_up_to_the_interval(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    f, source, _, _ = make(tmp_path, errors)
    waits = [f.delay("unchanged") for _ in range(2000)]
    assert 48 <= min(waits) < 49.5 and 70.5 < max(waits) <= 72  # ±20 %, and the whole range is used
    assert len({round(w, 3) for w in waits}) > 1500
    source.down = True
    backoff = []
    for _ in range(9):
        assert check(f) == "outage"
        backoff.append(f.delay("outage"))
    bases = [1, 2, 4, 8, 16, 32, 60, 60, 60]  # doubling from BACKOFF, capped at the interval
    assert all(0.8 * b <= w <= 1.2 * b for w, b in zip(backoff, bases)), backoff
    source.down = False
    assert check(f) == "applied" and f.delay("applied") >= 48  # back to the interval


def test_a_new_digest_is_fetched_and_applied_once(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    f, source, engine, events = make(tmp_path, errors)
    assert check(f) == "applied"
    assert engine.applied == [("doc 11", f"follow docker://r/fleet:stable@{D1}")]
    for _ in range(3):
        assert check(f) == "unchanged"
    assert source.fetched == [D1] and len(engine.applied) == 1
    status = f.status()
    assert status["source"] == "docker://r/fleet:stable" and status["digest"] == D1 and status["generation"] == 1
    assert status["checked_digest"] == D1 and status["last_error"] is None and status["checked_at"] > 0
    assert f.counts["applied"] == 1
    source.digest = D2
    assert check(f) == "applied" and f.status()["digest"] == D2
    assert [s for s, _ in events] == ["Running", "Running"] and D2 in events[-1][1] and "node generation 2" in events[-1][1]


def test_a_refused_digest_is_recorded_and_not_tried_again_until_the_tag_moves(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    f, source, engine, events = make(tmp_path, errors)
    check(f)
    source.digest = D2
    source.refuse[D2] = "refused by rule 0 (r/*): no valid signature: signed with another key (not key abc)"
    assert check(f) == "refused"
    for _ in range(3):
        assert check(f) == "refused before"
    assert source.fetched == [D1, D2] and len(engine.applied) == 1  # fetched once, never applied
    status = f.status()
    assert status["digest"] == D1  # still runs the last good one
    assert status["refused"][0]["digest"] == D2 and "another key" in status["refused"][0]["reason"]
    assert status["last_error"].startswith(D2) and "another key" in status["last_error"]
    assert f.counts["refused"] == 1 and events[-1][0] == "Failed"
    source.digest = D3
    assert check(f) == "applied" and f.status()["digest"] == D3


def test_a_rollback_refuses_the_digest_with_the_engines_reason(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    f, source, engine, _ = make(tmp_path, errors)
    check(f)
    source.digest = D2
    engine.results["doc 22"] = {"result": "rolled back", "generation": 1, "reason": "ext-a failed: exit code 1"}
    assert check(f) == "rolled_back"
    assert check(f) == "refused before" and len(engine.applied) == 2
    assert f.status()["digest"] == D1 and f.counts["rolled_back"] == 1
    assert f.status()["refused"][0]["reason"] == "rolled back: ext-a failed: exit code 1"


def test_an_invalid_document_is_refused(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    f, source, engine, _ = make(tmp_path, errors)
    from extvisor.documents.findings import Finding

    engine.results["doc 11"] = errors[1]([Finding("node.yaml", 3, 5, "error", "extensions.0.image", "invalid image reference")])
    assert check(f) == "refused"
    assert "does not validate" in f.status()["refused"][0]["reason"] and f.status()["digest"] is None


def test_an_apply_that_failed_before_changing_anything_is_tried_again_then_refused(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    f, source, engine, _ = make(tmp_path, errors)
    engine.results["doc 11"] = {"result": "failed", "generation": None, "reason": "r/ext:1: connection refused"}
    assert [check(f) for _ in range(fl.TRIES + 1)] == ["failed"] * fl.TRIES + ["refused before"]
    assert len(engine.applied) == fl.TRIES and f.counts["failed"] == fl.TRIES
    assert f.status()["refused"][0]["reason"].startswith(f"failed {fl.TRIES} times")


def test_an_outage_changes_nothing_and_is_said_once(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    f, source, engine, events = make(tmp_path, errors)
    check(f)
    before = f.status()
    source.down = True
    source.digest = D2
    assert [check(f) for _ in range(4)] == ["outage"] * 4
    status = f.status()
    assert status["digest"] == D1 and status["checked_at"] == before["checked_at"]  # the last successful read
    assert "connection refused" in status["last_error"] and len(engine.applied) == 1
    assert [s for s, _ in events] == ["Running", "Waiting"]
    source.down = False
    assert check(f) == "applied" and f.status()["digest"] == D2
    assert [s for s, _ in events][-2:] == ["Running", "Running"] and "answers again" in events[2][1]


def test_the_record_survives_a_restart(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    f, source, engine, _ = make(tmp_path, errors)
    check(f)
    source.digest = D2
    source.refuse[D2] = "not signed"
    check(f)
    g, source2, engine2, _ = make(tmp_path, errors)
    source2.digest = D2
    assert check(g) == "refused before" and source2.fetched == [] and engine2.applied == []
    assert g.status()["digest"] == D1
    source2.digest = D1
    assert check(g) == "unchanged"


def test_run_checks_at_once_then_at_the_interval(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    source, engine = Source(), Engine(errors)
    f = fl.Follower("docker://r/fleet:stable", 1.0, source, engine, tmp_path, rng=random.Random(1))

    async def go() -> None:
        task = asyncio.create_task(f.run())
        await asyncio.sleep(3.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert 3 <= source.resolved <= 5 and len(engine.applied) == 1


def test_daemon_options_checked_before_anything_starts() -> None:
    import click

    from extvisor.cli.daemon import _follow

    assert _follow("docker://r.example/fleet/node:stable", "5m") == {"follow": "docker://r.example/fleet/node:stable",
                                                                     "follow_interval": 300.0}  # fmt: skip
    assert _follow(None, "60s") == {"follow": None, "follow_interval": 60.0}
    with pytest.raises(click.BadParameter, match="published to a registry"):
        _follow("oci:/srv/layout:x", "60s")
    with pytest.raises(click.BadParameter, match="not a duration"):
        _follow("docker://r.example/fleet/node:stable", "soon")


def test_hand_changes_refused_and_the_status_and_metrics_served(tmp_path: Path, errors) -> None:  # type: ignore[no-untyped-def]
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry, generate_latest

    from extvisor.server.routes_follow import ConfigCollector, add_follow_routes

    f, source, engine, _ = make(tmp_path, errors)
    check(f)
    app = FastAPI()
    for method, path in (("POST", "/v1/extensions"), ("DELETE", "/v1/extensions/{name}"), ("POST", "/v1/declared/apply"),
                         ("POST", "/v1/declared/rollback"), ("POST", "/v1/declared/diff"), ("GET", "/v1/extensions")):  # fmt: skip
        app.add_api_route(path, lambda: {"ran": True}, methods=[method])
    add_follow_routes(app, f)
    client = TestClient(app)
    for method, path in (("POST", "/v1/extensions"), ("DELETE", "/v1/extensions/alpha"), ("POST", "/v1/declared/apply"),
                         ("POST", "/v1/declared/rollback")):  # fmt: skip
        r = client.request(method, path)
        assert r.status_code == 409 and r.json()["detail"].startswith("this node follows docker://r/fleet:stable: hand changes")
    assert client.post("/v1/declared/diff").json() == {"ran": True}  # reading is not a change
    assert client.get("/v1/extensions").json() == {"ran": True}
    assert client.get("/v1/follow").json()["digest"] == D1
    nobody = FastAPI()
    add_follow_routes(nobody, None)
    assert TestClient(nobody).get("/v1/follow").json() == {"source": None}
    registry = CollectorRegistry()
    registry.register(ConfigCollector(lambda: engine.generation, f))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert "extvisor_config_generation 1.0" in text
    assert 'extvisor_config_apply_total{result="applied"} 1.0' in text and 'extvisor_config_apply_total{result="refused"} 0.0' in text
    line = next(x for x in text.splitlines() if x.startswith("extvisor_config_last_check_timestamp_seconds "))
    assert float(line.split()[1]) == f.record["checked_at"]
    quiet = CollectorRegistry()
    quiet.register(ConfigCollector(lambda: None, None))  # type: ignore[arg-type]
    lines = [x for x in generate_latest(quiet).decode().splitlines() if not x.startswith("#")]
    assert lines == ["extvisor_config_generation 0.0"]  # not following: the generation alone
