"""The third-party example: installed with pip from examples/extvisor-tcp, found by its entry point.

The package is installed into the current environment for this session and uninstalled
at its end (unless it was installed before the tests ran).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata as md
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from extvisor import ConditionContext, ServiceSpec
from extvisor.plugins import get_plugin_manager
from pydantic import TypeAdapter, ValidationError

from conftest import EXAMPLE, free_port  # noqa: E402


def make_ctx() -> ConditionContext:
    spec = ServiceSpec(name="web")
    return ConditionContext(spec.id, spec, None, None, {})  # type: ignore[arg-type]


def test_listed_as_a_plugin(tcp_plugin):
    assert [ep.value for ep in tcp_plugin.entry_points if ep.group == "extvisor"] == ["extvisor_tcp"]
    pm = get_plugin_manager()
    kinds = pm.condition_kinds()
    assert "tcp" in kinds, pm.problems
    assert pm.provider_of("extvisor_register_conditions", "key", "tcp") == "tcp"
    info = {i.name: i for i in pm.plugin_infos()}["tcp"]
    assert (info.distribution, info.status, info.hooks) == ("extvisor-tcp", "active", ["extvisor_register_conditions"])
    # it did not displace the built-in kinds
    assert {"service", "path", "network", "time", "configuration"} <= set(kinds)


@pytest.mark.parametrize("value", ["127.0.0.1:80", "db.internal:5432", "[::1]:65535", "localhost:1"])
def test_valid_addresses(tcp_plugin, value):
    kind = get_plugin_manager().condition_kinds()["tcp"]
    assert TypeAdapter(kind.value_type).validate_python(value) == value


@pytest.mark.parametrize("value", ["127.0.0.1", ":80", "host:0", "host:65536", "host:http", "::1:80", "[]:80", 80])
def test_invalid_addresses(tcp_plugin, value):
    kind = get_plugin_manager().condition_kinds()["tcp"]
    with pytest.raises(ValidationError):
        TypeAdapter(kind.value_type).validate_python(value)


async def test_waits_until_a_listener_opens(tcp_plugin):
    kind = get_plugin_manager().condition_kinds()["tcp"]
    port = free_port()
    address = f"127.0.0.1:{port}"
    cond = kind.factory(address, make_ctx())
    assert cond.describe() == f'TCP port "{address}" to accept connections'
    task = asyncio.create_task(cond.wait())
    await asyncio.sleep(0.8)
    assert not task.done()  # refused, retried every 0.5 s
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        await asyncio.wait_for(task, 2)
    finally:
        server.close()
        await server.wait_closed()


async def test_wait_cancels(tcp_plugin):
    kind = get_plugin_manager().condition_kinds()["tcp"]
    task = asyncio.create_task(kind.factory(f"127.0.0.1:{free_port()}", make_ctx()).wait())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_loader_accepts_the_new_key(tcp_plugin):
    from extvisor.documents.loader import load_service_text

    kinds = get_plugin_manager().condition_kinds()
    text = (EXAMPLE / "example-service.yaml").read_text()
    loaded = load_service_text(text, "waits-for-tcp.yaml", kinds)
    assert loaded.ok, [str(f) for f in loaded.findings]
    assert [(d.kind, d.value) for d in loaded.spec.depends] == [("tcp", "127.0.0.1:5432")]
    bad = load_service_text(text.replace("127.0.0.1:5432", "127.0.0.1:99999"), "bad.yaml", kinds)
    assert bad.spec is None
    assert any("port must be a number from 1 to 65535" in str(f) for f in bad.findings), bad.findings
