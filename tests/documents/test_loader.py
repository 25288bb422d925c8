"""Service-spec rules, each with a valid and an invalid case (condition kinds from a test plugin)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from extvisor import LoadError
from extvisor.documents.loader import load_service_text, parse_service
from extvisor.documents.models import Restart

from conftest import TEST_KINDS as KINDS  # noqa: E402

HERE = Path(__file__).parents[1]  # tests/


BASE = """\
name: svc
container:
  entrypoint: ./svc
restart: always
"""


def load(text: str, strict: bool = False):
    return load_service_text(textwrap.dedent(text), "svc.yaml", KINDS, strict)


def errors(loaded):
    return [f for f in loaded.findings if f.severity == "error"]


def warnings_(loaded):
    return [f for f in loaded.findings if f.severity == "warning"]


def with_depends(*entries: str) -> str:
    return BASE + "depends:\n" + "".join(f"  - {e}\n" for e in entries)


def test_minimal_valid():
    loaded = load(BASE)
    assert loaded.ok and loaded.findings == []
    assert loaded.spec.name == "svc" and loaded.spec.id == "ext-svc"
    assert loaded.spec.restart is Restart.always
    assert loaded.spec.depends is None


# -- YAML as Talos reads it ------------------------------------------------------------


def test_args_stay_strings():
    loaded = load(BASE.replace("./svc\n", "./svc\n  args: [0644, yes, 1e3, 'quoted', off, ~x]\n"))
    assert loaded.ok, loaded.findings
    assert loaded.spec.container.args == ["0644", "yes", "1e3", "quoted", "off", "~x"]


def test_environment_values_stay_text():
    loaded = load(BASE.replace("./svc\n", "./svc\n  environment:\n    - PATH=/bin:$PATH\n    - N=010\n"))
    assert loaded.spec.container.environment == ["PATH=/bin:$PATH", "N=010"]


def test_duplicate_key_is_an_error_at_the_second_key():
    loaded = load(BASE + "name: other\n")
    (err,) = errors(loaded)
    assert (err.line, err.column, err.field) == (5, 1, "name")
    assert 'mapping key "name" already defined at line 1' in err.message
    assert loaded.spec is None


def test_duplicate_nested_key():
    loaded = load(BASE.replace("./svc\n", "./svc\n  entrypoint: ./again\n"))
    (err,) = errors(loaded)
    assert (err.line, err.field) == (4, "container.entrypoint")


@pytest.mark.parametrize("text", ["- name: svc\n", "just text\n", "42\n", "~\n"])
def test_document_must_be_a_mapping(text):
    loaded = load(text)
    (err,) = errors(loaded)
    assert "must be a mapping" in err.message and err.line == 1


def test_only_the_first_document_counts():
    loaded = load(BASE + "---\nname: second\n")
    assert loaded.ok and loaded.spec.name == "svc"
    (warn,) = loaded.findings
    assert warn.severity == "warning" and "1 more document(s) after the first ignored" in warn.message
    assert warn.line == 6
    assert load(BASE + "---\n").findings == []  # a trailing separator is no document


def test_syntax_error_after_the_first_document_is_a_warning():
    loaded = load(BASE + "---\nname: second\nbogus: [\n")
    assert loaded.ok and loaded.spec.name == "svc"
    (warn,) = loaded.findings
    assert warn.severity == "warning" and "YAML syntax error" in warn.message  # Talos never reads it


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file_is_an_error(text):
    (err,) = errors(load(text))
    assert "empty" in err.message


def test_yaml_syntax_error_points_at_the_problem():
    loaded = load("name: svc\ncontainer:\n  entrypoint: [a\nrestart: always\n")
    (err,) = errors(loaded)
    assert err.message.startswith("YAML syntax error")
    assert err.line == 4


def test_tab_indentation_is_a_syntax_error():
    (err,) = errors(load("name: svc\ncontainer:\n\tentrypoint: x\n"))
    assert (err.line, err.column) == (3, 1)


def test_non_utf8_is_a_finding_not_an_exception():
    loaded = load_service_text(b"name: caf\xe9\nrestart: always\n", "svc.yaml", KINDS)
    (err,) = errors(loaded)
    assert "UTF-8" in err.message and (err.line, err.column) == (1, 10)


def test_anchors_aliases_and_merge_keys():
    loaded = load(
        """\
        name: svc
        container:
          entrypoint: ./svc
          mounts:
            - &m {source: /a, destination: /a, type: bind, options: [bind, ro]}
            - <<: *m
              destination: /b
        restart: always
        """
    )
    assert loaded.ok, loaded.findings
    m0, m1 = loaded.spec.container.mounts
    assert (m1.source, m1.destination, m1.options) == ("/a", "/b", ["bind", "ro"])


def test_recursive_alias_is_an_error():
    assert any("recursive" in e.message for e in errors(load("name: &a [*a]\n")))


def test_alias_bomb_is_stopped():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    loaded = load("\n".join(lines) + "\n")
    assert any("more than" in e.message for e in errors(loaded))


# -- Talos's Validate() rules ---------------------------------------------------------


@pytest.mark.parametrize("name", ["svc", "a-b_c-9", "0"])
def test_name_valid(name):
    assert load(BASE.replace("name: svc", f"name: {name}")).ok


@pytest.mark.parametrize("name", ["FOO", "a.b", "'a b'", "'x\n'"])
def test_name_invalid(name):
    (err,) = errors(load(BASE.replace("name: svc", f"name: {name}")))
    assert err.field == "name" and "is invalid (must match ^[-_a-z0-9]+$)" in err.message
    assert (err.line, err.column) == (1, 7)


def test_name_message_in_talos_words():
    (err,) = errors(load(BASE.replace("name: svc", "name: FOO")))
    assert err.message == 'name "FOO" is invalid (must match ^[-_a-z0-9]+$)'


def test_missing_name_is_invalid():
    (err,) = errors(load(BASE.replace("name: svc\n", "")))
    assert err.message == 'name "" is invalid (must match ^[-_a-z0-9]+$)'


@pytest.mark.parametrize(
    "value,expected",
    [
        ("always", "always"),
        ("ALWAYS", "always"),
        ("never", "never"),
        ("untilsuccess", "untilSuccess"),
        ("UntilSuccess", "untilSuccess"),
    ],
)
def test_restart_is_case_insensitive(value, expected):
    loaded = load(BASE.replace("restart: always", f"restart: {value}"))
    assert loaded.ok and loaded.spec.restart.value == expected


def test_restart_invalid_in_talos_words():
    (err,) = errors(load(BASE.replace("restart: always", "restart: random")))
    assert err.message == 'restart kind is invalid: "random" (one of always, never, untilSuccess)'
    assert (err.field, err.line, err.column) == ("restart", 4, 10)


def test_restart_is_required():
    (err,) = errors(load(BASE.replace("restart: always\n", "")))
    assert err.field == "restart" and "required" in err.message


def test_entrypoint_valid_relative_or_absolute():
    assert load(BASE.replace("./svc", "/usr/bin/svc")).ok


@pytest.mark.parametrize(
    "text", [BASE.replace("  entrypoint: ./svc\n", "  args: [a]\n"), BASE.replace("./svc", "''"), BASE.replace("./svc", "")]
)
def test_entrypoint_empty(text):
    (err,) = errors(load(text))
    assert err.message == "container entrypoint can't be empty" and err.field == "container.entrypoint"


def test_all_errors_of_a_file_are_reported():
    loaded = load(
        """\
        name: BAD
        container:
          entrypoint: ""
          mounts:
            - source: /a
              options: bind
        depends:
          - {}
          - path: relative
        restart: sometimes
        """
    )
    fields = sorted(e.field for e in errors(loaded))
    assert fields == ["container.entrypoint", "container.mounts.0.options", "depends.0", "depends.1.path", "name", "restart"]
    assert [f.line for f in loaded.findings] == sorted(f.line for f in loaded.findings)


# -- depends ---------------------------------------------------------------------------


def test_depends_valid_kinds_become_dependencies():
    loaded = load(
        with_depends("service: cri", "path: /dev/zfs", "network: [addresses, Hostname]", "time: true", "configuration: true")
    )
    assert loaded.ok, loaded.findings
    deps = [(d.kind, d.value) for d in loaded.spec.depends]
    assert deps == [
        ("service", "cri"),
        ("path", "/dev/zfs"),
        ("network", ["addresses", "hostname"]),
        ("time", True),
        ("configuration", True),
    ]
    assert loaded.spec.service_dependencies() == ["cri"]
    assert loaded.spec.model_dump()["depends"][0] == {"service": "cri"}


def test_depends_no_kind_set():
    loaded = load(with_depends("{}", "time: false", "configuration: off"))
    assert [e.message for e in errors(loaded)] == ["no dependency specified"] * 3
    assert errors(loaded)[0].field == "depends.0"


def test_depends_null_entry_is_empty():
    (err,) = errors(load(BASE + "depends:\n  -\n"))
    assert err.message == "no dependency specified"


def test_depends_more_than_one():
    (err,) = errors(load(with_depends("{path: /foo, network: [addresses]}")))
    assert err.message == "more than a single dependency is set" and err.field == "depends.0"


def test_depends_unset_kind_beside_a_set_one_is_fine():
    loaded = load(with_depends("{path: /foo, time: false}"))
    assert loaded.ok and loaded.spec.depends[0].kind == "path"


def test_depends_unknown_kind_names_the_known_ones():
    (err,) = errors(load(with_depends("nothing: true")))
    assert err.field == "depends.0.nothing" and "nothing" in err.message
    assert "configuration, network, path, service, time" in err.message
    assert (err.line, err.column) == (6, 5)


def test_depends_must_be_a_list_of_mappings():
    assert "must be a list" in errors(load(BASE + "depends: cri\n"))[0].message
    assert "mapping" in errors(load(with_depends("cri")))[0].message


def test_path_must_be_absolute():
    (err,) = errors(load(with_depends("path: ./somefile")))
    assert err.message == 'path is not absolute: "./somefile"'
    assert (err.field, err.line, err.column) == ("depends.0.path", 6, 11)


def test_file_alias_is_path_with_a_warning():
    loaded = load(with_depends("file: /run/x"))
    assert loaded.ok
    assert (loaded.spec.depends[0].kind, loaded.spec.depends[0].value) == ("path", "/run/x")
    (warn,) = warnings_(loaded)
    assert warn.message == "`file` is deprecated, use `path`"
    assert (warn.field, warn.line, warn.column) == ("depends.0.file", 6, 5)


def test_file_alias_and_path_together_are_two_kinds():
    (err,) = errors(load(with_depends("{file: /a, path: /b}")))
    assert err.message == "more than a single dependency is set"


def test_network_status_invalid():
    (err,) = errors(load(with_depends("network: [bogus]")))
    assert err.message == '"bogus" is not a network status (addresses, connectivity, hostname, etcfiles)'


def test_network_address_alias_warns():
    loaded = load(with_depends("network: [address, connectivity]"))
    assert loaded.ok and loaded.spec.depends[0].value == ["addresses", "connectivity"]
    (warn,) = warnings_(loaded)
    assert "`address` is deprecated" in warn.message and warn.field == "depends.0.network"


def test_bool_kinds_take_plain_yaml_booleans_not_quoted_text():
    loaded = load(with_depends("time: yes", "configuration: True"))
    assert loaded.ok and [d.value for d in loaded.spec.depends] == [True, True]
    (err,) = errors(load(with_depends('time: "true"')))
    assert err.field == "depends.0.time"


def test_service_value_must_be_text():
    (err,) = errors(load(with_depends("service: [a, b]")))
    assert err.field == "depends.0.service" and "string" in err.message


# -- unknown keys, strictness ------------------------------------------------------------


def test_unknown_keys_warn_at_the_key_and_are_dropped():
    loaded = load(
        """\
        name: svc
        container:
          entrypoint: ./svc
          mounts:
            - source: /a
              destination: /a
              readonly: true
          security:
            writableRootfs: true
        mounts:
          - source: /b
        restart: always
        """
    )
    assert loaded.ok
    where = {(w.field, w.line, w.column) for w in warnings_(loaded)}
    assert where == {("container.mounts.0.readonly", 7, 7), ("container.security.writableRootfs", 9, 5), ("mounts", 10, 1)}
    assert all(w.message.startswith("unknown key `") and "(ignored, as Talos does)" in w.message for w in warnings_(loaded))
    dumped = loaded.spec.model_dump()
    assert "mounts" not in dumped and "readonly" not in dumped["container"]["mounts"][0]
    assert loaded.spec.container.security.writeableRootfs is False


def test_strict_makes_warnings_errors():
    text = BASE + "extra: 1\n"
    assert load(text).ok
    strict = load(text, strict=True)
    assert strict.spec is None
    (err,) = strict.findings
    assert err.severity == "error" and "unknown key `extra`" in err.message


def test_environment_file_is_deprecated():
    loaded = load(BASE.replace("./svc\n", "./svc\n  environmentFile: /var/etc/x.env\n"))
    assert loaded.ok and loaded.spec.container.environmentFile == "/var/etc/x.env"
    (warn,) = warnings_(loaded)
    assert "deprecated" in warn.message


# -- field types -------------------------------------------------------------------------


def test_masked_paths_absent_and_empty_are_distinct():
    absent = load(BASE).spec.container.security
    empty = load(BASE.replace("./svc\n", "./svc\n  security:\n    maskedPaths: []\n    readonlyPaths: []\n")).spec
    assert absent.maskedPaths is None and absent.readonlyPaths is None
    assert empty.container.security.maskedPaths == [] and empty.container.security.readonlyPaths == []


def test_null_values_are_go_zero_values():
    loaded = load(BASE.replace("./svc\n", "./svc\n  args:\n  security:\n"))
    assert loaded.ok and loaded.spec.container.args is None
    assert loaded.spec.container.security.maskedPaths is None


@pytest.mark.parametrize("value,expected", [("true", True), ("yes", True), ("false", False), ("off", False)])
def test_booleans(value, expected):
    loaded = load(BASE + f"logToConsole: {value}\n")
    assert loaded.ok and loaded.spec.logToConsole is expected


def test_boolean_invalid():
    (err,) = errors(load(BASE.replace("./svc\n", "./svc\n  security:\n    writeableRootfs: maybe\n")))
    assert err.field == "container.security.writeableRootfs" and (err.line, err.column) == (5, 22)
    assert '"maybe"' in err.message


def test_type_error_field_path_and_position():
    loaded = load(
        """\
        name: svc
        container:
          entrypoint: ./svc
          mounts:
            - source: /a
              destination: /a
              options: rbind
        restart: always
        """
    )
    (err,) = errors(loaded)
    assert (err.field, err.line, err.column) == ("container.mounts.0.options", 7, 16)
    assert str(err).startswith("svc.yaml:7:16: error: container.mounts.0.options: ")


def test_oci_mount_keys_and_id_mappings():
    loaded = load(
        BASE.replace(
            "./svc\n",
            "./svc\n  mounts:\n    - {source: /a, destination: /a, type: bind, options: [rbind, ro],"
            " uidmappings: [{containerID: 0, hostID: 1000, size: 1}]}\n",
        )
    )
    assert loaded.ok, loaded.findings
    assert loaded.spec.container.mounts[0].uidmappings[0].hostID == 1000


def test_parse_service_raises_load_error_only():
    assert parse_service(BASE, "svc.yaml", KINDS).name == "svc"
    with pytest.raises(LoadError) as info:
        parse_service(BASE + "name: x\n", "svc.yaml", KINDS)
    assert info.value.findings and "already defined" in str(info.value)


def test_unknown_key_warning_suggests_the_intended_key():
    typo = load_service_text(
        "name: a\ncontainer:\n  entrypoint: /x\n  mounts:\n    - {source: /a, destination: /b, optons: [bind]}\nrestart: never\n",
        "typo.yaml", KINDS,
    )  # fmt: skip
    assert [f.message for f in typo.findings] == ["unknown key `optons` (ignored, as Talos does); did you mean `options`?"]
    misplaced = load_service_text("name: a\ncontainer: {entrypoint: /x}\nrestart: never\nmounts: []\n", "m.yaml", KINDS)
    assert misplaced.findings[0].message.endswith("did you mean `container.mounts` (indented under `container:`)?")
    assert (misplaced.findings[0].line, misplaced.findings[0].column) == (4, 1)
