"""Nodes that follow a signed declared state in a registry (issue 29): a private TLS registry
with a password, three real daemons (runc) with ``--follow`` — two on ``:stable``, one on
``:canary`` — and documents published with ``extvisor publish``. Generation 1, then 2 (only
the changed services restart), a broken 3 (every node rolls back and reports it), a good 4,
an unsigned and a wrongly signed document (refused, nothing changes), hand changes refused,
the registry stopped for a while, then canary before stable. The steps build on each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from extensions.images import Pusher, busybox_path
from extensions.registry import Registry, require_tools

from declared.fleet import PLAIN, ext_image
from extvisor.shared import routes
from extvisor.testing import make_busybox_rootfs

pytestmark = [pytest.mark.runc, pytest.mark.timeout(600)]
INTERVAL = 1.5
WAIT = 90.0


class Node:
    def __init__(self, d: DaemonProcess, tag: str):
        self.d, self.tag = d, tag

    def follow(self) -> dict:
        return self.d.client.call(routes.FOLLOW)  # its answer checked against the route's shape

    def pids(self) -> dict[str, int | None]:
        return {s["id"]: s["pid"] for s in self.d.client.services()}

    def metrics(self) -> str:
        return _metrics(self.d)

    def wait(self, predicate, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.d.base.name}: {what} not within {WAIT}s; follow={self.follow()}\n{self.d.log()[-4000:]}")


def _metrics(d: DaemonProcess) -> str:
    import httpx

    transport = httpx.HTTPTransport(uds=str(d.socket))
    with httpx.Client(transport=transport, base_url="http://x", timeout=10) as c:
        return c.get("/metrics").text


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    require_tools("docker-registry", "openssl", "htpasswd", "skopeo", "runc", "busybox")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry):
    from extvisor.extensions.sign import write_key_pair

    base = tmp_path_factory.mktemp("follow")
    bb = busybox_path()
    pusher = Pusher(f"https://{registry.host}", (registry.user, registry.password), registry.ca)
    for name, tag, script in (("alpha", "1.0.0", None), ("alpha", "2.0.0", None), ("beta", "1.0.0", None),
                              ("beta", "broken", "echo beta broken; exit 1")):  # fmt: skip
        pusher.image(f"ext/{name}", tag, ext_image(name, "1.1.0" if tag == "broken" else tag, bb, script))
    pusher.close()
    keys = {k: write_key_pair(base / f"key{k}", b"pw-" + k.encode())[1].read_text() for k in "AB"}
    policy = ("apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n"
              f"  - image: {registry.host}/fleet/*\n    publicKey:\n      certificate: |\n"
              + "".join(f"        {line}\n" for line in keys["A"].splitlines())
              + f"  - image: {registry.host}/ext/*\n    skip: true\n")  # fmt: skip
    nodes = []
    for i, tag in enumerate(("stable", "stable", "canary")):
        flags = ["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir),
                 "--follow", f"docker://{registry.host}/fleet/node:{tag}", "--follow-interval", f"{INTERVAL}s"]  # fmt: skip
        d = DaemonProcess(base / f"node{i}", extra=flags)
        (d.config_dir / "plain.yaml").write_text(PLAIN)
        make_busybox_rootfs(d.rootfs_dir / "plain")
        (d.service_config_dir / "trust.yaml").write_text(policy)
        nodes.append(Node(d, tag))
    env = {**os.environ, "EXTVISOR_SIGNING_PASSWORD": "pw-A"}
    env.pop("EXTVISOR_SOCKET", None)
    w = type("World", (), {})()
    w.events = None
    w.base, w.registry, w.nodes, w.env = base, registry, nodes, env
    try:
        for n in nodes:
            n.d.start()
        for n in nodes:
            n.d.wait_state("ext-plain", "Running", timeout=30)
        w.events_file = base / "events.txt"
        with open(w.events_file, "w") as out:  # node 0's event stream, all along
            w.events = subprocess.Popen([sys.executable, "-m", "extvisor", "events", "-f"], stdout=out, stderr=subprocess.STDOUT,
                                        env={**env, "EXTVISOR_SOCKET": str(nodes[0].d.socket)})  # fmt: skip
        yield w
    finally:
        if getattr(w, "events", None) is not None:
            w.events.terminate()
            w.events.wait(10)
        for n in nodes:
            if n.d.proc is not None and n.d.proc.poll() is None:
                n.d.stop()


def document(w, alpha: str = "1.0.0", beta: str = "1.0.0", greeting: str = "hello", name: str = "node.yaml") -> Path:  # type: ignore[no-untyped-def]
    host = w.registry.host
    path = w.base / name
    path.write_text("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions:\n"
                    f"  - image: {host}/ext/alpha:{alpha}\n  - image: {host}/ext/beta:{beta}\n"
                    "---\napiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: beta\n"
                    f"environment:\n  - GREETING={greeting}\n")  # fmt: skip
    return path


def publish(w, *args: str, key: str | None = "A", check: bool = True) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    reg = w.registry
    extra = ["--authfile", str(reg.authfile), "--cert-dir", str(reg.cert_dir)]
    if key:
        extra += ["--key", str(w.base / f"key{key}" / "cosign.key")]
    env = {**w.env, "EXTVISOR_SIGNING_PASSWORD": f"pw-{key or 'A'}"}
    r = subprocess.run([sys.executable, "-m", "extvisor", "publish", *args, *extra, "-o", "json"], capture_output=True,
                       text=True, env=env, timeout=120)  # fmt: skip
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def release(w, path: Path, key: str | None = "A") -> str:  # type: ignore[no-untyped-def]
    """Publish to canary, then promote to stable; the digest."""
    tag = f"docker://{w.registry.host}/fleet/node"
    out = json.loads(publish(w, str(path), f"{tag}:canary", key=key).stdout)
    promoted = json.loads(publish(w, f"{tag}:canary", f"{tag}:stable", key=None).stdout)
    assert promoted["digest"] == out["digest"]
    return out["digest"]


def converge(w, digest: str, nodes=None) -> None:  # type: ignore[no-untyped-def]
    for n in nodes or w.nodes:
        n.wait(lambda n=n: n.follow()["digest"] == digest, f"running {digest}")


def refused(w, digest: str, nodes=None) -> list[str]:  # type: ignore[no-untyped-def]
    reasons = []
    for n in nodes or w.nodes:
        n.wait(lambda n=n: any(r["digest"] == digest for r in n.follow()["refused"]), f"refusing {digest}")
        reasons.append(next(r["reason"] for r in n.follow()["refused"] if r["digest"] == digest))
    return reasons


def test_generation_1_then_2_restarts_only_what_changed(world) -> None:  # type: ignore[no-untyped-def]
    w = world
    plain = {n.d.base.name: n.pids()["ext-plain"] for n in w.nodes}
    g1 = release(w, document(w))
    converge(w, g1)
    for n in w.nodes:
        n.d.wait_state("ext-alpha", "Running", timeout=30)
        n.d.wait_state("ext-beta", "Running", timeout=30)
        assert n.pids()["ext-plain"] == plain[n.d.base.name]
        status = n.follow()
        assert status["source"] == f"docker://{w.registry.host}/fleet/node:{n.tag}" and status["generation"] == 1
    before = {n.d.base.name: n.pids() for n in w.nodes}
    g2 = release(w, document(w, alpha="2.0.0"))
    converge(w, g2)
    for n in w.nodes:
        n.d.wait_state("ext-alpha", "Running", timeout=30)
        now = n.pids()
        old = before[n.d.base.name]
        assert now["ext-alpha"] != old["ext-alpha"]  # upgraded: restarted
        assert now["ext-beta"] == old["ext-beta"] and now["ext-plain"] == old["ext-plain"]  # untouched
        applied = json.loads(n.d.cli("applied", "-o", "json").stdout)
        assert applied["generation"] == 2 and applied["follow"]["digest"] == g2
        assert applied["applied_by"] == f"follow docker://{w.registry.host}/fleet/node:{n.tag}@{g2}"
        text = n.d.cli("applied").stdout
        assert f"following docker://{w.registry.host}/fleet/node:{n.tag} every {INTERVAL:g}s: runs {g2} (published generation 2)" in text
        m = n.metrics()
        assert metric(m, "extvisor_config_generation") == 2
        assert metric(m, 'extvisor_config_apply_total{result="applied"}') == 2
        assert time.time() - 30 < metric(m, "extvisor_config_last_check_timestamp_seconds") <= time.time() + 1
    w.g2 = g2


def test_a_broken_generation_3_rolls_back_everywhere_and_a_good_4_is_taken(world) -> None:  # type: ignore[no-untyped-def]
    w = world
    g3 = release(w, document(w, alpha="2.0.0", beta="broken"))
    for reason in refused(w, g3):
        assert reason.startswith("rolled back: ext-beta") and "exit" in reason, reason
    for n in w.nodes:
        status = n.follow()
        assert status["digest"] == w.g2 and g3 in status["last_error"]
        n.d.wait_state("ext-beta", "Running", timeout=30)
        assert json.loads(n.d.cli("applied", "-o", "json").stdout)["generation"] == 2  # the last good one
        assert metric(n.metrics(), 'extvisor_config_apply_total{result="rolled_back"}') == 1
    events = w.events_file.read_text()
    assert f"declared [Running]: declared state {w.g2} (published generation 2)" in events, events
    assert f"declared [Failed]: declared state {g3} from docker://{w.registry.host}/fleet/node:stable not taken: rolled back: ext-beta" in events
    g4 = release(w, document(w, alpha="2.0.0", greeting="bonjour"))
    converge(w, g4)
    for n in w.nodes:
        n.wait(lambda n=n: "beta 1.0.0 bonjour" in b"".join(n.d.client.logs("ext-beta")).decode(), "beta restarted with bonjour")
        assert json.loads(n.d.cli("applied", "-o", "json").stdout)["generation"] == 3  # the node's third good one
    w.g4 = g4


def test_unsigned_and_wrongly_signed_documents_change_nothing(world) -> None:  # type: ignore[no-untyped-def]
    w = world
    before = {n.d.base.name: n.pids() for n in w.nodes}
    unsigned = release(w, document(w, alpha="1.0.0", greeting="unsigned", name="unsigned.yaml"), key=None)
    for reason in refused(w, unsigned):
        assert "not signed" in reason, reason
    wrong = release(w, document(w, alpha="1.0.0", greeting="wrong", name="wrong.yaml"), key="B")
    for reason in refused(w, wrong):
        assert "signed with another key" in reason, reason
    for n in w.nodes:
        assert n.pids() == before[n.d.base.name] and n.follow()["digest"] == w.g4
        assert metric(n.metrics(), 'extvisor_config_apply_total{result="refused"}') == 2


def test_hand_changes_are_refused_naming_the_reference(world) -> None:  # type: ignore[no-untyped-def]
    n = world.nodes[0]
    ref = f"docker://{world.registry.host}/fleet/node:stable"
    for args in (("apply", "-f", str(document(world)), "--yes"), ("rollback", "--yes"), ("extensions", "remove", "alpha"),
                 ("extensions", "install", f"docker://{world.registry.host}/ext/alpha:1.0.0")):  # fmt: skip
        r = n.d.cli(*args, check=False)
        assert r.returncode != 0 and f"this node follows {ref}" in r.stdout + r.stderr, (args, r.stdout, r.stderr)
    assert n.follow()["digest"] == world.g4


def test_a_registry_outage_changes_nothing_and_nodes_catch_up(world) -> None:  # type: ignore[no-untyped-def]
    w = world
    before = {n.d.base.name: n.pids() for n in w.nodes}
    w.registry.stop()
    try:
        for n in w.nodes:
            n.wait(lambda n=n: "connection refused" in (n.follow()["last_error"] or ""), "the outage seen")
        time.sleep(3 * INTERVAL)
        for n in w.nodes:
            assert n.pids() == before[n.d.base.name] and n.follow()["digest"] == w.g4
    finally:
        w.registry.restart()
    g5 = release(w, document(w, alpha="1.0.0", greeting="back"))
    converge(w, g5)
    w.g5 = g5


def test_a_node_that_was_down_catches_up_when_it_starts(world) -> None:  # type: ignore[no-untyped-def]
    w = world
    down = w.nodes[1]
    assert down.d.stop() == 0
    g = release(w, document(w, alpha="1.0.0", greeting="while-down"))
    converge(w, g, [w.nodes[0], w.nodes[2]])
    record = json.loads((down.d.state_dir / "follow.json").read_text())
    assert record["digest"] == w.g5 and record["refused"]  # what it runs and what it refused, kept on disk
    down.d.start()
    converge(w, g, [down])
    down.wait(lambda: "beta 1.0.0 while-down" in b"".join(down.d.client.logs("ext-beta")).decode(), "beta with the new value")
    assert down.follow()["refused"] and all(r["digest"] != g for r in down.follow()["refused"])  # refusals kept too
    w.g5 = g


def test_canary_first_then_stable_by_skopeo_copy(world) -> None:  # type: ignore[no-untyped-def]
    w = world
    stable, canary = w.nodes[:2], w.nodes[2:]
    tag = f"docker://{w.registry.host}/fleet/node"
    g6 = json.loads(publish(w, str(document(w, alpha="2.0.0", greeting="canary")), f"{tag}:canary").stdout)["digest"]
    converge(w, g6, canary)
    time.sleep(3 * INTERVAL)
    for n in stable:
        assert n.follow()["digest"] == w.g5 and n.follow()["checked_digest"] == w.g5
    reg = w.registry
    access = ["--authfile", str(reg.authfile), "--cert-dir", str(reg.cert_dir)]
    r = subprocess.run(["skopeo", "copy", "--preserve-digests", "--src-authfile", str(reg.authfile), "--src-cert-dir",
                        str(reg.cert_dir), "--dest-authfile", str(reg.authfile), "--dest-cert-dir", str(reg.cert_dir),
                        f"{tag}:canary", f"{tag}:stable"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    converge(w, g6, stable)  # the signature binds repository and digest: it verifies at the new tag
    pulled = subprocess.run([sys.executable, "-m", "extvisor", "publish", "--pull", f"{tag}:stable", *access],
                            capture_output=True, text=True, env=w.env, timeout=60)  # fmt: skip
    assert pulled.returncode == 0 and f"# digest: {g6}" in pulled.stdout and "GREETING=canary" in pulled.stdout
    w.g6 = g6


def test_publish_refuses_a_file_that_does_not_validate_and_pull_says_what_is_missing(world) -> None:  # type: ignore[no-untyped-def]
    w = world
    tag = f"docker://{w.registry.host}/fleet/node"
    bad = w.base / "bad.yaml"
    bad.write_text("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions:\n  - image: nope\n")
    r = publish(w, str(bad), f"{tag}:canary", check=False)
    assert r.returncode == 1 and f"{bad}:4:12: error: extensions.0.image: invalid image reference 'nope'" in r.stderr
    assert "not published: the file does not validate" in r.stderr
    assert json.loads(publish(w, "--pull", f"{tag}:canary", key=None).stdout)["digest"] == w.g6  # unchanged
    r = publish(w, "--pull", f"{tag}:nothing-here", key=None, check=False)
    assert r.returncode == 1 and "manifest unknown" in r.stderr
