"""A registry that stops sending mid-blob (issue 24 item 10): the fetch stops after
--image-pull-progress-timeout, a queued install says what it waits for, and Ctrl-C of the
CLI cancels the install on the node (skopeo killed, staging deleted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from extensions.images import Image, extension_entries, service_yaml
from extensions.registry import StallingProxy

from extvisor.extensions import FetchOptions, parse_ref
from extvisor.extensions.store import InstallError

BIG = 8 << 20  # a random blob: the proxy stops forwarding after its first MiB


def big_image(name: str) -> Image:
    files = {f"rootfs/usr/local/share/{name}/blob": os.urandom(BIG)}
    return Image([extension_entries(name, {name: service_yaml(name)}, files)])


def small_image(name: str) -> Image:
    return Image([extension_entries(name, {name: service_yaml(name)})])


@pytest.fixture
def proxy(registry):
    p = StallingProxy(registry.port)
    yield p
    p.close()


def skopeo_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-x", "skopeo"], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def test_a_stalled_fetch_stops_after_the_progress_timeout(tmp_path, registry, pusher, proxy, store, kinds, talos):
    pusher.image("siderolabs/stall", "1", big_image("stall"))
    options = FetchOptions(arch="amd64", authfile=str(proxy.authfile(registry, tmp_path / "auth.json")),
                           cert_dir=str(registry.cert_dir), stall_timeout=2)  # fmt: skip
    started = time.monotonic()
    with pytest.raises(InstallError) as err:
        store.install(parse_ref(f"docker://{proxy.host}/siderolabs/stall:1"), options, talos, kinds)
    elapsed = time.monotonic() - started
    assert proxy.stalled.is_set()
    assert "no progress for 2 s" in str(err.value) and "--image-pull-progress-timeout" in str(err.value)
    assert elapsed < 20, f"took {elapsed:.1f} s"
    assert os.listdir(store.staging) == [] and store.list() == []
    assert skopeo_children(os.getpid()) == []


def test_validate_stops_a_stalled_fetch(tmp_path, registry, pusher, proxy):
    pusher.image("siderolabs/stall", "v", big_image("stall"))
    authfile = proxy.authfile(registry, tmp_path / "auth.json")
    out = subprocess.run([sys.executable, "-m", "extvisor", "extensions", "validate", f"docker://{proxy.host}/siderolabs/stall:v",
                          "--authfile", str(authfile), "--cert-dir", str(registry.cert_dir),
                          "--image-pull-progress-timeout", "2"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and "no progress for 2 s" in out.stdout, out.stdout + out.stderr


def daemon_with(tmp_path: Path, registry, authfile: Path, timeout: str) -> DaemonProcess:
    d = DaemonProcess(tmp_path, extra=["--authfile", str(authfile), "--cert-dir", str(registry.cert_dir),
                                       "--image-pull-progress-timeout", timeout])  # fmt: skip
    return d.start()


def cli(d: DaemonProcess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "extvisor", *args], env={**os.environ, "EXTVISOR_SOCKET": str(d.socket)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_daemon_stops_a_stalled_fetch(tmp_path, registry, pusher, proxy):
    pusher.image("siderolabs/stall", "d", big_image("stall"))
    authfile = proxy.authfile(registry, tmp_path / "auth.json")
    d = daemon_with(tmp_path, registry, authfile, "2")
    try:
        out = d.cli("extensions", "install", f"docker://{proxy.host}/siderolabs/stall:d", check=False)
        assert out.returncode == 1 and "no progress for 2 s" in out.stderr
        assert os.listdir(d.state_dir / "extensions" / "staging") == []
        assert skopeo_children(d.proc.pid) == []
    finally:
        d.stop()


def test_queued_install_says_so_and_ctrl_c_cancels_on_the_node(tmp_path, registry, pusher, proxy):
    pusher.image("siderolabs/stall", "q", big_image("stall"))
    pusher.image("siderolabs/after", "1", small_image("after"))
    authfile = proxy.authfile(registry, tmp_path / "auth.json")  # the proxy's address and the registry's
    auths = json.loads(authfile.read_text())
    auths["auths"].update(json.loads(registry.authfile.read_text())["auths"])
    authfile.write_text(json.dumps(auths))
    d = daemon_with(tmp_path, registry, authfile, "600")  # far longer than the test: only Ctrl-C ends it
    stalled_ref = f"docker://{proxy.host}/siderolabs/stall:q"
    first = queued = second = None
    try:
        first = cli(d, "extensions", "install", stalled_ref)
        assert proxy.stalled.wait(30), "the proxy never held the blob"
        staging = d.state_dir / "extensions" / "staging"
        d.wait(lambda: skopeo_children(d.proc.pid) != [], what="skopeo running")
        # a queued install says what it waits for, and Ctrl-C takes it out of the queue
        queued = cli(d, "extensions", "install", registry.ref("siderolabs/after", "1"))
        assert queued.stderr is not None
        line = queued.stderr.readline()
        assert f"queue: waiting for another install of {stalled_ref}" in line, line
        queued.send_signal(signal.SIGINT)
        _, err = queued.communicate(timeout=20)
        assert queued.returncode == 130 and "cancelled" in err
        d.wait(lambda: "cancelled: the client went away" in d.log(), what="the queued install cancelled")
        assert d.client.request("GET", "/v1/extensions") == [] and skopeo_children(d.proc.pid) != []
        # Ctrl-C of the running one: skopeo killed, staging deleted, the next one goes
        second = cli(d, "extensions", "install", registry.ref("siderolabs/after", "1"))
        assert second.stderr is not None
        assert "waiting for another install of" in second.stderr.readline()
        assert list(staging.iterdir()) != []
        first.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = first.communicate(timeout=20)
        assert first.returncode == 130 and "cancelled" in err
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert "installed after 1.0.0" in out
        assert skopeo_children(d.proc.pid) == []
        assert [i["name"] for i in d.client.request("GET", "/v1/extensions")] == ["after"]
        assert list(staging.iterdir()) == []
        assert "install of " + stalled_ref + " cancelled: the client went away" in d.log()
    finally:
        for p in (first, queued, second):
            if p is not None and p.poll() is None:
                p.kill()
        d.stop()
