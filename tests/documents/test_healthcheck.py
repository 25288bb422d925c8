"""The ``healthcheck:`` key: Compose's shape and defaults, durations, exactly one way to check,
every problem at its line; and a file with it still loads by Talos's rules unchanged."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import CORPUS, TEST_KINDS as KINDS, require_corpus  # noqa: N811

from extvisor.documents.health import format_duration, parse_duration
from extvisor.documents.loader import load_service_file, load_service_text
from extvisor.documents.schema import service_schema

BASE = """\
name: hc
container:
  entrypoint: /bin/sh
restart: always
"""


def load(check: str, strict: bool = False):  # type: ignore[no-untyped-def]
    return load_service_text(BASE + textwrap.dedent(check), "svc.yaml", KINDS, strict=strict)


def problems(loaded) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{f.line}:{f.severity}:{f.field}: {f.message}" for f in loaded.findings]


def test_compose_defaults():
    loaded = load("healthcheck:\n  test: [CMD, /usr/local/bin/check, --quiet]\n", strict=True)
    assert loaded.ok and loaded.findings == []
    check = loaded.spec.health
    assert (check.interval, check.timeout, check.retries, check.start_period, check.start_interval) == (30, 30, 3, 0, 5)
    assert check.on_failure.value == "restart" and check.kind == "exec"
    assert check.argv == ["/usr/local/bin/check", "--quiet"]


@pytest.mark.parametrize(("test", "argv"), [
    ('[CMD-SHELL, "curl -f localhost || exit 1"]', ["/bin/sh", "-c", "curl -f localhost || exit 1"]),
    ('"pgrep iscsid"', ["/bin/sh", "-c", "pgrep iscsid"]),  # a plain string is CMD-SHELL (Compose)
])  # fmt: skip
def test_test_forms(test: str, argv: list[str]):
    assert load(f"healthcheck:\n  test: {test}\n").spec.health.argv == argv


def test_none_disables():
    loaded = load("healthcheck:\n  test: [NONE]\n", strict=True)
    assert loaded.ok and loaded.spec.healthcheck is not None and loaded.spec.health is None
    assert load("healthcheck:\n  disable: true\n").spec.health is None


@pytest.mark.parametrize(("check", "kind"), [
    ("tcp: 127.0.0.1:9100", "tcp"),
    ("http: http://127.0.0.1:9100/healthz", "http"),
    ("notify: true", "notify"),
])  # fmt: skip
def test_other_kinds(check: str, kind: str):
    loaded = load(f"healthcheck:\n  {check}\n  interval: 10s\n  on_failure: none\n", strict=True)
    assert loaded.ok, problems(loaded)
    assert loaded.spec.health.kind == kind and loaded.spec.health.on_failure.value == "none"


def test_exactly_one_with_file_and_line():
    loaded = load("healthcheck:\n  tcp: 127.0.0.1:1\n  http: http://x/\n")
    assert not loaded.ok
    assert problems(loaded) == [
        "6:error:healthcheck: a healthcheck sets exactly one of test, tcp, http, notify (got tcp, http)"
    ]
    assert "got none" in problems(load("healthcheck:\n  interval: 3s\n"))[0]
    assert str(load("healthcheck:\n  interval: 3s\n").findings[0]).startswith("svc.yaml:6:")


def test_durations_and_fields_are_checked_where_they_are():
    loaded = load("""\
        healthcheck:
          test: [CMD, /check]
          interval: 10
          timeout: 1x
          start_period: -5s
          retries: 0
          on_failure: reboot
          intervall: 3s
    """)  # fmt: skip
    assert not loaded.ok
    assert problems(loaded) == [
        '7:error:healthcheck.interval: time: missing unit in duration "10" (write 30s, 500ms, 1m30s)',
        '8:error:healthcheck.timeout: time: invalid duration "1x" (write 30s, 500ms, 1m30s)',
        '9:error:healthcheck.start_period: time: invalid duration "-5s" (write 30s, 500ms, 1m30s)',
        '10:error:healthcheck.retries: Input should be greater than or equal to 1 (got "0")',
        "11:error:healthcheck.on_failure: Input should be 'restart', 'stop' or 'none' (got \"reboot\")",
        "12:warning:healthcheck.intervall: unknown key `intervall` (ignored); did you mean `interval`?",
    ]


@pytest.mark.parametrize(("check", "message"), [
    ("test: [CMD]", "[CMD] needs the program to run"),
    ("test: [CMD-SHELL, a, b]", "[CMD-SHELL] takes one text"),
    ("test: [RUN, x]", "test must start with CMD, CMD-SHELL or NONE"),
    ("tcp: localhost", "tcp must be host:port"),
    ("http: ftp://x/", "http must be an http:// or https:// URL"),
    ("tcp: 127.0.0.1:1\n  interval: 0s", "must be at least 1ms (got 0s)"),
])  # fmt: skip
def test_bad_checks(check: str, message: str):
    loaded = load(f"healthcheck:\n  {check}\n")
    assert not loaded.ok and message in problems(loaded)[0], problems(loaded)


def test_go_durations():
    assert parse_duration("1m30s") == 90 and parse_duration("500ms") == 0.5 and parse_duration("1h") == 3600
    assert parse_duration("1.5s") == 1.5 and parse_duration("0") == 0
    assert [format_duration(x) for x in (0, 0.5, 30, 90, 3600)] == ["0s", "500ms", "30s", "1m30s", "1h0m0s"]


def test_schema_knows_the_key():
    schema = service_schema(KINDS)
    text = str(schema)
    assert "healthcheck" in text and "start_interval" in text and "on_failure" in text


def test_talos_rules_unchanged_with_a_healthcheck(tmp_path: Path):
    """Every real service file loads to the same spec with a healthcheck added (Talos skips the
    key; extvisor's strict mode knows it), and the corpus loads as before without one."""
    require_corpus()
    files = sorted((CORPUS / "extension-services").glob("*.yaml"))
    assert files
    for path in files:
        plain = load_service_file(path, KINDS, strict=True)
        text = path.read_text()
        with_check = tmp_path / path.name
        with_check.write_text(text.rstrip("\n") + "\nhealthcheck:\n  test: [CMD, /bin/true]\n  interval: 10s\n")
        checked = load_service_file(with_check, KINDS, strict=True)
        assert checked.ok and checked.findings == [], [str(f) for f in checked.findings]
        assert plain.spec.healthcheck is None
        assert checked.spec.model_dump(exclude={"healthcheck"}) == plain.spec.model_dump(exclude={"healthcheck"})
        assert checked.spec.health.interval == 10


def test_a_relative_cmd_without_path_is_a_warning():
    loaded = load("healthcheck:\n  test: [CMD, iscsiadm, -m, session]\n")
    assert loaded.ok
    assert problems(loaded) == ["6:warning:healthcheck.test.1: `iscsiadm` is looked up in the service's PATH, "
                                "which it does not set: write its absolute path, or use CMD-SHELL"]
    assert not load("healthcheck:\n  test: [CMD, /usr/sbin/iscsiadm]\n").findings
    with_path = BASE.replace("  entrypoint: /bin/sh\n", "  entrypoint: /bin/sh\n  environment: [PATH=/usr/sbin]\n")
    assert not load_service_text(with_path + "healthcheck:\n  test: [CMD, iscsiadm]\n", "svc.yaml", KINDS).findings
