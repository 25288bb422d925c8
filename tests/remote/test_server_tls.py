"""The API's TLS listener and role check under a real uvicorn, on 127.0.0.2."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import free_port
from fastapi import FastAPI

from extvisor.remote import certs, tls
from extvisor.server.remote import bind_tcp, tls_config, unix_app

CALLS: list[str] = []


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/services")
    async def services() -> list:
        CALLS.append("list")
        return []

    @app.post("/v1/services/{sid}/{action}")
    async def act(sid: str, action: str) -> dict:
        CALLS.append(f"{action} {sid}")
        return {"ok": True}

    @app.post("/v1/extensions")
    async def install() -> dict:
        CALLS.append("install")
        return {"ok": True}

    return app


class Served:
    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]):
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.server.serve(sockets=sockets),), daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return
            threading.Event().wait(0.02)
        raise AssertionError("uvicorn did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("pki")
    ca = certs.new_ca()
    certs.write_pair(d, "ca", ca)
    certs.write_pair(d, "server", certs.new_server(ca, ["127.0.0.2"]))
    return {"dir": d, "ca": ca}


@pytest.fixture(scope="module")
def node(pki: dict):
    sock = bind_tcp(f"127.0.0.2:{free_port()}")
    d = pki["dir"]
    ctx = tls.server_context(d / "server.crt", d / "server.key", d / "ca.crt")
    served = Served(tls_config(make_app(), ctx, log_level="warning", lifespan="off"), [sock])
    yield f"https://127.0.0.2:{sock.getsockname()[1]}"
    served.stop()


def client_for(pki: dict, roles: list[str]) -> httpx.Client:
    pair = certs.new_client(pki["ca"], roles)
    return httpx.Client(verify=tls.client_context(pki["ca"].crt, pair.crt, pair.key), timeout=5)


@pytest.mark.parametrize("roles,listed,stopped,installed", [
    (["os:reader"], 200, 403, 403),
    (["os:operator"], 200, 200, 403),
    (["os:admin"], 200, 200, 200),
    (["os:reader", "os:operator"], 200, 200, 403),
    (["os:nobody"], 403, 403, 403),
    ([], 403, 403, 403),
])  # fmt: skip
def test_roles_decide_and_a_refusal_does_nothing(pki: dict, node: str, roles: list[str], listed: int,
                                                 stopped: int, installed: int) -> None:  # fmt: skip
    CALLS.clear()
    with client_for(pki, roles) as c:
        answers = [c.get(f"{node}/v1/services"), c.post(f"{node}/v1/services/ext-a/stop"), c.post(f"{node}/v1/extensions")]
    assert [r.status_code for r in answers] == [listed, stopped, installed]
    for r in answers:
        if r.status_code == 403:
            assert r.json() == {"detail": "not authorized"}
    expected = [name for name, code in zip(["list", "stop ext-a", "install"], [listed, stopped, installed]) if code == 200]
    assert CALLS == expected  # refused calls never reached the API


def test_no_client_certificate_is_refused_at_the_handshake(pki: dict, node: str) -> None:
    CALLS.clear()
    with httpx.Client(verify=tls.client_context(pki["ca"].crt, None, None), timeout=5) as c:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError)):
            c.get(f"{node}/v1/services")
    assert CALLS == []


def test_unix_socket_callers_are_admin(tmp_path: Path) -> None:
    CALLS.clear()
    path = str(tmp_path / "api.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    served = Served(uvicorn.Config(unix_app(make_app()), log_level="warning", lifespan="off"), [sock])
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://x") as c:
            assert c.post("/v1/extensions").status_code == 200
            assert c.post("/v1/services/ext-a/restart").status_code == 200
    finally:
        served.stop()
    assert CALLS == ["install", "restart ext-a"]
