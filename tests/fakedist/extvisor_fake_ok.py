"""A well-behaved third-party plugin: a backend and a ``faketcp`` dependency kind."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from extvisor import BackendType, ConditionKind, hookimpl


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f'"{value}" is not host:port')
    return value


def _unused(*args):
    raise NotImplementedError


@hookimpl
def extvisor_register_backends():
    yield BackendType(name="fake", factory=_unused, description="a fake backend")


@hookimpl
def extvisor_register_conditions():
    yield ConditionKind(key="faketcp", value_type=Annotated[str, AfterValidator(_host_port)], factory=_unused,
                        description="a TCP port accepts connections")
