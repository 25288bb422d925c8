"""``network:`` read from the kernel, in a private network namespace the test creates.

Each status is seen to flip both ways: veth pairs, addresses and routes are added and
removed with pyroute2 (this kernel has no dummy driver).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from extvisor import ConditionContext, ServiceSpec
from pyroute2 import IPRoute

from extvisor_conditions import netmonitor
from extvisor_conditions import network as netmod
from extvisor_conditions.netstatus import STATUSES, NetlinkHint, read_status

ADDR = "198.51.100.2"  # TEST-NET-2: never routed anywhere
GATEWAY = "198.51.100.1"


class NoViews:
    def state(self, service_id):
        return None

    def is_up(self, service_id):
        return False

    def get(self, name):
        return None

    async def changed(self):
        await asyncio.Event().wait()


def make_cond(statuses, **options) -> netmod.NetworkCondition:
    spec = ServiceSpec(name="web")
    ctx = ConditionContext(spec.id, spec, NoViews(), NoViews(), options)
    return netmod.factory(statuses, ctx)


def in_thread(fn):
    """Run a blocking pyroute2 call off the event loop's thread (its sync API refuses a running loop)."""

    def wrapper(*args, **kwargs):
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(fn, *args, **kwargs).result()

    return wrapper


class Netns:
    """A private namespace with a veth pair ve0 <-> ve1, both inside it."""

    def __init__(self, name: str):
        self.name = name

    def ipr(self) -> IPRoute:
        return IPRoute(netns=self.name, flags=0)

    def index(self, ipr: IPRoute, ifname: str = "ve0") -> int:
        return ipr.link_lookup(ifname=ifname)[0]

    @in_thread
    def set_up(self, up: bool) -> None:
        with self.ipr() as ipr:
            for ifname in ("ve0", "ve1"):
                ipr.link("set", index=self.index(ipr, ifname), state="up" if up else "down")

    @in_thread
    def link_up(self, ifname: str) -> None:
        with self.ipr() as ipr:
            ipr.link("set", index=self.index(ipr, ifname), state="up")

    @in_thread
    def address(self, add: bool, address: str = ADDR, prefixlen: int = 24) -> None:
        with self.ipr() as ipr:
            ipr.addr("add" if add else "del", index=self.index(ipr), address=address, prefixlen=prefixlen)

    @in_thread
    def default_route(self, add: bool) -> None:
        with self.ipr() as ipr:
            ipr.route("add" if add else "del", dst="0.0.0.0/0", gateway=GATEWAY)

    @in_thread
    def status(self, wanted=("addresses", "connectivity")) -> dict[str, bool]:
        return read_status(wanted, netns=self.name)


@pytest.fixture
def netns():
    assert shutil.which("ip"), "iproute2's ip is needed to create network namespaces"
    name = f"extvisor-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns = Netns(name)
        with ns.ipr() as ipr:
            ipr.link("add", ifname="ve0", kind="veth", peer={"ifname": "ve1"})
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


async def pending(task: asyncio.Task, delay: float = 0.2) -> bool:
    await asyncio.sleep(delay)
    return not task.done()


async def finishes_soon(task: asyncio.Task, within: float = 1.5) -> float:
    start = time.monotonic()
    await asyncio.wait_for(task, within)
    return time.monotonic() - start


def test_describe():
    cond = make_cond(["addresses", "connectivity"])
    assert cond.describe() == "network (addresses, connectivity)"
    assert cond.describe().startswith("network")


async def test_addresses_flip_both_ways(netns):
    assert netns.status() == {"addresses": False, "connectivity": False}  # fresh: only lo, down
    netns.set_up(True)
    assert netns.status()["addresses"] is False  # up links with only link-local IPv6

    cond = make_cond(["addresses"], netns=netns.name)
    task = asyncio.create_task(cond.wait())
    assert await pending(task)
    assert cond.describe() == "network (addresses)"
    netns.address(True)
    await finishes_soon(task)
    assert cond.describe() == "network"

    netns.set_up(False)  # address on a link that is down: not ready
    assert netns.status()["addresses"] is False
    netns.set_up(True)
    assert netns.status()["addresses"] is True
    netns.address(False)
    assert netns.status()["addresses"] is False


async def test_excluded_addresses_do_not_count(netns):
    netns.set_up(True)
    netns.address(True, "169.254.10.1", 16)  # link-local
    netns.link_up("lo")  # 127.0.0.1 on an up loopback
    assert netns.status()["addresses"] is False
    netns.address(True, "fd00::2", 64)  # a ULA counts (scope global)
    deadline = time.monotonic() + 3
    while not netns.status()["addresses"]:  # wait for IPv6 DAD (tentative address is listed at once, though)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    netns.address(False, "fd00::2", 64)
    assert netns.status()["addresses"] is False


async def test_connectivity_flips_both_ways(netns):
    netns.set_up(True)
    netns.address(True)
    cond = make_cond(["connectivity", "addresses"], netns=netns.name)
    task = asyncio.create_task(cond.wait())
    assert await pending(task)
    assert cond.describe() == "network (connectivity)"
    netns.default_route(True)
    await finishes_soon(task)
    assert netns.status() == {"addresses": True, "connectivity": True}
    netns.default_route(False)
    assert netns.status()["connectivity"] is False


async def test_wakes_on_netlink_before_the_recheck(netns, monkeypatch):
    netns.set_up(True)
    monkeypatch.setattr(netmonitor, "RECHECK", 30.0)  # only a netlink notification can wake it in time
    cond = make_cond(["addresses"], netns=netns.name)
    task = asyncio.create_task(cond.wait())
    assert await pending(task, 0.5)
    netns.address(True)
    assert await finishes_soon(task, 2) < 2


async def test_hint_sees_changes(netns):
    hint = await NetlinkHint.open(netns.name)
    assert hint is not None
    try:
        assert await hint.wait(0.1) is False
        netns.set_up(True)
        assert await hint.wait(2) is True
        netns.address(True)
        assert await hint.wait(2) is True
    finally:
        hint.close()


async def test_hostname_via_injected_reader(netns):
    names = ["localhost", "", "(none)", "node-1"]

    def reader():
        return names[0]

    cond = make_cond(["hostname"], hostname_reader=reader)
    cond.recheck = 0.05
    task = asyncio.create_task(cond.wait())
    for name in names[:-1]:
        names[0] = name
        assert await pending(task, 0.15), name
        assert cond.describe() == "network (hostname)"
    names[0] = "node-1"
    await finishes_soon(task)
    assert read_status(["hostname"], hostname_reader=lambda: "localhost") == {"hostname": False}


async def test_etcfiles_via_etc_root(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    cond = make_cond(["etcfiles"], etc_root=str(etc))
    cond.recheck = 0.05
    task = asyncio.create_task(cond.wait())
    assert await pending(task)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    (etc / "resolv.conf").write_text("")  # empty: not ready
    assert await pending(task)
    (etc / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    await finishes_soon(task)
    (etc / "hosts").unlink()
    assert read_status(["etcfiles"], etc_root=str(etc)) == {"etcfiles": False}


async def test_missing_netns_fails_instead_of_creating_it():
    name = f"extvisor-absent-{uuid.uuid4().hex[:6]}"
    with pytest.raises(Exception):
        await make_cond(["addresses"], netns=name).wait()
    assert not os.path.exists(f"/var/run/netns/{name}")


def test_host_read_gives_booleans():
    status = read_status(STATUSES)
    assert set(status) == set(STATUSES) and all(isinstance(v, bool) for v in status.values())


async def test_cancel_releases_sockets(netns):
    before = set(os.listdir("/proc/self/fd"))
    task = asyncio.create_task(make_cond(["addresses", "connectivity"], netns=netns.name).wait())
    assert await pending(task, 0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)  # a re-read may still be finishing in its thread
    assert set(os.listdir("/proc/self/fd")) - before == set()


async def test_waiting_conditions_share_one_reader(netns, monkeypatch):
    reads = []
    real = netmonitor.read_kernel

    def counting(ns):
        reads.append(ns)
        return real(ns)

    monkeypatch.setattr(netmonitor, "read_kernel", counting)
    netns.set_up(True)
    conds = [make_cond(["addresses", "connectivity"], netns=netns.name) for _ in range(20)]
    tasks = [asyncio.create_task(c.wait()) for c in conds]
    await asyncio.sleep(1.5)
    assert all(not t.done() for t in tasks)
    assert 1 <= len(reads) <= 4, len(reads)  # about one a second, not twenty
    assert {c.describe() for c in conds} == {"network (addresses, connectivity)"}
    netns.address(True)
    netns.default_route(True)
    done, waiting = await asyncio.wait(tasks, timeout=2)
    assert not waiting and all(t.exception() is None for t in done)
    assert netmonitor._monitors == {}  # stopped with its last user


async def test_mixed_kernel_and_local_statuses(netns):
    name = ["localhost"]
    netns.set_up(True)
    netns.address(True)
    cond = make_cond(["addresses", "hostname"], netns=netns.name, hostname_reader=lambda: name[0])
    task = asyncio.create_task(cond.wait())
    assert await pending(task, 0.3)
    assert cond.describe() == "network (hostname)"
    name[0] = "node-1"  # no netlink event for this: the 1 s re-read sees it
    await finishes_soon(task, 2)
