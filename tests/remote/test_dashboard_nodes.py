"""``extvisor dashboard -n a,b,c``: one view per node, switched with h/l and the arrows; a
node that is down shows its error and is retried while the others keep working."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import free_port
from daemon_process import DaemonProcess

from extvisor.dashboard import DashboardApp
from extvisor.dashboard.feed import Feed
from extvisor.dashboard.widgets import Banner, HeaderBar
from extvisor.remote import certs, tls
from extvisor.remote.nodes import parse_node


async def until(pilot, predicate, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {what}")
        await pilot.pause(0.05)


@pytest.fixture
def nodes(tmp_path: Path):
    ca = certs.new_ca()
    certs.write_pair(tmp_path / "ca", "ca", ca)
    port = free_port()
    daemons = {}

    def daemon(ip: str, host_service: str) -> DaemonProcess:
        certs.write_pair(tmp_path / ip, "server", certs.new_server(ca, [ip]), overwrite=True)
        return DaemonProcess(tmp_path / f"d-{ip}", extra=[
            "--host-service", host_service, "--listen", f"{ip}:{port}",
            "--tls-cert", str(tmp_path / ip / "server.crt"), "--tls-key", str(tmp_path / ip / "server.key"),
            "--client-ca", str(tmp_path / "ca" / "ca.crt")])  # fmt: skip

    daemons["127.0.0.2"] = daemon("127.0.0.2", "cri").start()
    daemons["127.0.0.3"] = daemon("127.0.0.3", "udevd")  # down until the test starts it
    pair = certs.new_client(ca, ["os:reader"])
    ctx = tls.client_context(ca.crt, pair.crt, pair.key)
    feeds = [(ip, Feed.node(parse_node(ip, port).url, ctx)) for ip in daemons]
    yield daemons, feeds
    for d in daemons.values():
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


async def test_switch_nodes_and_a_down_node_retries(nodes) -> None:  # type: ignore[no-untyped-def]
    daemons, feeds = nodes
    app = DashboardApp(nodes=feeds, max_backoff=0.5)
    async with app.run_test(size=(150, 40)) as pilot:
        header, banner = app.query_one(HeaderBar), app.query_one(Banner)
        await until(pilot, lambda: app.table.shown() == ["cri"], "first node's services")
        await until(pilot, lambda: "node 127.0.0.2 (1/2, 1 down)" in str(header.render()), "header names node and count")
        assert not banner.has_class("-shown")

        await pilot.press("l")  # to the node that is down: its error, retried
        assert app.current == 1
        await until(pilot, lambda: banner.has_class("-shown"), "banner for the down node")
        text = str(banner.render())
        assert "node 127.0.0.3 not reachable" in text and "connection refused" in text
        assert app.table.shown() == []

        daemons["127.0.0.3"].start()  # comes up: retried without a key press
        await until(pilot, lambda: app.table.shown() == ["udevd"], "second node's services once it is up")
        assert not banner.has_class("-shown")
        assert "node 127.0.0.3 (2/2)" in str(header.render())

        await pilot.press("right")  # clamped at the last node
        assert app.current == 1
        await pilot.press("left")
        assert app.current == 0 and app.table.shown() == ["cri"]
        await pilot.press("h")
        assert app.current == 0

        daemons["127.0.0.2"].stop()  # the selected node goes away; the other keeps working
        await until(pilot, lambda: banner.has_class("-shown"), "banner when the selected node goes")
        await pilot.press("l")
        await until(pilot, lambda: app.table.shown() == ["udevd"] and not banner.has_class("-shown"), "other node fine")
