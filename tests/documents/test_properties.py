"""Arbitrary input never crashes the loader.

The contract: ``load_service_text`` and ``load_config_text`` never raise; they return
findings, and a missing spec always comes with at least one error finding located in the
file. ``parse_service`` raises nothing but :class:`LoadError`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extvisor import LoadError
from extvisor.documents.findings import Finding
from extvisor.documents.loader import load_config_text, load_service_text, parse_service

HERE = Path(__file__).parents[1]  # tests/
# Drawing nested structures costs more than loading them: fewer examples there keeps this < 10 s.
SETTINGS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SHAPED = settings(SETTINGS, max_examples=120)


def _testkinds():
    spec = importlib.util.spec_from_file_location("extvisor_testkinds", HERE / "fakedist" / "helpers" / "testkinds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KINDS


KINDS = _testkinds()

KEYS = [
    "name", "container", "entrypoint", "args", "environment", "environmentFile", "mounts", "source",
    "destination", "type", "options", "uidmappings", "containerID", "hostID", "size", "security",
    "maskedPaths", "readonlyPaths", "writeableRootfs", "writeableSysfs", "rootfsPropagation", "depends",
    "service", "path", "file", "network", "time", "configuration", "restart", "logToConsole",
    "apiVersion", "kind", "configFiles", "content", "mountPath",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["always", "untilSuccess", "ExtensionServiceConfig", "v1alpha1", "addresses", "/abs", "./rel", "", "~"]),
)
KEY = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
YAMLISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(KEY, children, max_size=4)),
    max_leaves=10,
)


def check_service(loaded, filename: str = "f.yaml") -> None:
    assert all(isinstance(f, Finding) for f in loaded.findings)
    assert all(f.file == filename and f.severity in ("error", "warning") for f in loaded.findings)
    if loaded.spec is None:
        assert any(f.severity == "error" for f in loaded.findings)
    else:
        assert not any(f.severity == "error" for f in loaded.findings)
        loaded.spec.model_dump_json()  # a loaded spec is a usable spec


def check_config(result) -> None:
    configs, findings = result
    assert all(isinstance(f, Finding) for f in findings)
    for config in configs:
        config.model_dump_json()


@SETTINGS
@given(st.text())
def test_arbitrary_text(text):
    check_service(load_service_text(text, "f.yaml", KINDS))
    check_config(load_config_text(text, "f.yaml"))


@SETTINGS
@given(st.binary())
def test_arbitrary_bytes(data):
    check_service(load_service_text(data, "f.yaml", KINDS))
    check_config(load_config_text(data, "f.yaml"))


@SHAPED
@given(YAMLISH, st.booleans())
def test_arbitrary_yaml_structures(value, strict):
    text = yaml.safe_dump(value)
    check_service(load_service_text(text, "f.yaml", KINDS, strict=strict))
    check_config(load_config_text(text, "f.yaml"))
    try:
        parse_service(text.encode(), "f.yaml", KINDS)
    except LoadError as exc:
        assert exc.findings


@SHAPED
@given(
    st.fixed_dictionaries(
        {"name": SCALARS, "restart": SCALARS},
        optional={"container": YAMLISH, "depends": st.lists(st.dictionaries(KEY, YAMLISH, max_size=2), max_size=3)},
    )
)
def test_spec_shaped_documents(doc):
    check_service(load_service_text(yaml.safe_dump(doc), "f.yaml", KINDS))


@SHAPED
@given(
    st.fixed_dictionaries(
        {"apiVersion": SCALARS, "kind": st.just("ExtensionServiceConfig"), "name": SCALARS},
        optional={"configFiles": YAMLISH, "environment": YAMLISH},
    )
)
def test_config_shaped_documents(doc):
    text = yaml.safe_dump(doc)
    check_config(load_config_text(text + "---\n" + text, "f.yaml"))
