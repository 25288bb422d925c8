"""Every hook in hookspecs.py is documented in docs/hooks.md and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from extvisor import hookspecs

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs" / "hooks.md"
HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("extvisor_"))


def signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def hook_tests() -> dict[str, str]:
    files = sorted((ROOT / "tests").rglob("test_hook_*.py")) + [ROOT / "tests" / "test_hooks.py"]
    return {f.name: f.read_text() for f in files if f.exists()}


def test_hookspecs_found():
    assert len(HOOKS) >= 8 and "extvisor_load_services" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_signature(name):
    text = DOCS.read_text()
    match = re.search(rf"^## {name}\n(?P<body>.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/hooks.md has no section '## {name}'"
    body = match["body"]
    assert signature(name) in body, f"the section of {name} must show `{signature(name)}`"
    for word in ("**When:**", "**Returns:**", "**firstresult:**", "**Example:**"):
        assert word in body, f"the section of {name} lacks {word}"
    firstresult = getattr(hookspecs, name).extvisor_spec["firstresult"]
    said = re.search(r"\*\*firstresult:\*\* (\*\*)?(yes|no)", body)
    assert said and (said[2] == "yes") == firstresult, f"docs/hooks.md says the wrong firstresult for {name}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test(name):
    users = [f for f, text in hook_tests().items() if name in text]
    assert users, f"{name} is not referenced in tests/test_hook_*.py or tests/test_hooks.py"


def test_docs_document_no_unknown_hook():
    documented = set(re.findall(r"^## (extvisor_\w+)", DOCS.read_text(), re.M))
    assert documented == set(HOOKS)
