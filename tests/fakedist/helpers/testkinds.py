"""Condition kinds equivalent to the conditions plugin's, for loader tests that must not
depend on it. Loaded by path (``load_testkinds()`` in each test module), never imported
through sys.path, so the fake dist-info beside it is not discovered by other tests.
"""

from __future__ import annotations

import posixpath
import warnings
from typing import Annotated

from pydantic import AfterValidator, StrictBool

from extvisor import ConditionKind, SpecWarning, hookimpl

STATUSES = ("addresses", "connectivity", "hostname", "etcfiles")


def _absolute(value: str) -> str:
    if not posixpath.isabs(value):
        raise ValueError(f'path is not absolute: "{value}"')
    return value


def _statuses(values: list[str]) -> list[str]:
    out = []
    for raw in values:
        value = raw.lower()
        if value == "address":
            warnings.warn(SpecWarning("network status `address` is deprecated, use `addresses`"), stacklevel=2)
            value = "addresses"
        if value not in STATUSES:
            raise ValueError(f'"{raw}" is not a network status ({", ".join(STATUSES)})')
        if value not in out:
            out.append(value)
    return out


def _nonempty(value: str) -> str:
    if not value:
        raise ValueError("service must not be empty")
    return value


def _factory(value, ctx):  # the loader never builds conditions
    raise NotImplementedError


def kinds() -> list[ConditionKind]:
    return [
        ConditionKind("service", Annotated[str, AfterValidator(_nonempty)], _factory),
        ConditionKind("path", Annotated[str, AfterValidator(_absolute)], _factory, aliases=("file",)),
        ConditionKind("network", Annotated[list[str], AfterValidator(_statuses)], _factory),
        ConditionKind("time", StrictBool, _factory, is_set=lambda v: v is True),
        ConditionKind("configuration", StrictBool, _factory, is_set=lambda v: v is True),
    ]


KINDS = {k.key: k for k in kinds()}


@hookimpl
def extvisor_register_conditions():
    return kinds()
