"""Issue 17: the HTTP API under arbitrary paths, query values and bodies (hypothesis).

Every answer must be below 500 (a documented 4xx is fine), and the daemon must go on
supervising: the service it runs keeps its PID and keeps writing its log.
"""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import httpx
import pytest
from daemon_process import DaemonProcess
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc

TICK = "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.05; done"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    d = DaemonProcess(tmp_path_factory.mktemp("fuzz"))
    for name in ("tick", "victim"):
        make_busybox_rootfs(d.rootfs_dir / name)
        (d.config_dir / f"{name}.yaml").write_text(
            f'name: {name}\ncontainer: {{entrypoint: /bin/sh, args: ["-c", "{TICK}"]}}\nrestart: always\n')
    d.start()
    d.wait_state("ext-tick", "Running")
    yield d
    assert d.stop() == 0, d.log()[-3000:]


def _templates(daemon: DaemonProcess) -> list[str]:
    spec = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket))).get("http://d/openapi.json").json()
    return sorted(spec["paths"])


segment = st.one_of(
    st.sampled_from(["ext-victim", "ext-nope", "", "..", "%2e%2e", "a" * 300, "ext-victim/..", "\u00e9", "%00",
                     "start", "stop", "restart", "logs", "x y"]),
    st.text(alphabet=string.printable + "\u00e9\u2603", max_size=40),
)
query_value = st.one_of(
    st.sampled_from(["-1", "0", "1", "99999999999999999999", "-99999999999", "true", "false", "yes", "", "nan",
                     "1e9", "\x00"]),
    st.text(max_size=30),
)
body = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                 max_leaves=10).map(lambda v: json.dumps(v).encode()),
)


def test_api_answers_every_request_below_500_and_keeps_supervising(daemon: DaemonProcess) -> None:
    templates = _templates(daemon)
    before = daemon.service("ext-tick")
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)), timeout=httpx.Timeout(10, read=3))
    seen: dict[int, int] = {}

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              phases=[Phase.explicit, Phase.generate])  # no shrinking: each example is a real request
    @given(
        template=st.sampled_from(templates) | st.text(alphabet=string.printable, max_size=60).map(lambda t: "/" + t),
        fill=st.lists(segment, min_size=3, max_size=3),
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        params=st.dictionaries(st.sampled_from(["tail", "follow", "events", "n", "ref", "force", "x"]), query_value,
                               max_size=3),
        payload=body,
    )
    def one(template: str, fill: list[str], method: str, params: dict, payload: bytes | None) -> None:
        path = template
        for value in fill:
            if "{" in path and "}" in path[path.index("{"):]:
                start = path.index("{")
                end = path.index("}", start)
                path = path[:start] + quote(value, safe="") + path[end + 1:]
        if "ext-tick" in path:
            return  # the service whose supervision is checked is left alone
        url = "http://d" + quote(path if path.startswith("/") else "/" + path, safe="/%")
        try:
            request = client.build_request(method, url, params=params, content=payload)
        except (httpx.InvalidURL, UnicodeEncodeError, ValueError):
            return  # not a request a client can send
        response = client.send(request, stream=True)  # streams (follow=true): the status is enough
        try:
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (method, url, params, payload, response.read()[:500])
        finally:
            response.close()

    one()
    after = daemon.service("ext-tick")
    assert after["state"] == "Running" and after["pid"] == before["pid"], (before, after)
    size = (daemon.log_dir / "ext-tick.log").stat().st_size
    daemon.wait(lambda: (daemon.log_dir / "ext-tick.log").stat().st_size > size, what="ext-tick still logging")
    assert client.get("http://d/v1/daemon").status_code == 200
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
    assert len(seen) > 1, seen  # more than one kind of answer: the inputs reached the routes
