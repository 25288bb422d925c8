"""Read Talos's four network statuses from this host (or a named network namespace).

Meanings follow Talos's ``network.Status`` controller:
- ``addresses``: an address that is not loopback, link-local or multicast, with a scope
  below ``link`` (253), on a link whose operstate is UP or UNKNOWN;
- ``connectivity``: a default route (destination length 0, unicast) exists, which is
  Talos's check when no probes are configured;
- ``hostname``: a hostname is set and is not ``localhost``;
- ``etcfiles``: ``hosts`` and ``resolv.conf`` exist in /etc and are not empty.

pyroute2 calls block: callers run :func:`read_status` in a thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterable

from .wake import wait_and_clear

log = logging.getLogger("extvisor.conditions.network")

STATUSES = ("addresses", "connectivity", "hostname", "etcfiles")
KERNEL_STATUSES = frozenset({"addresses", "connectivity"})

RT_SCOPE_LINK = 253
RTN_UNICAST = 1
UNSET_HOSTNAMES = frozenset({"", "localhost", "localhost.localdomain", "(none)"})

# netlink multicast groups whose messages may change addresses or connectivity
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE


def _iproute(netns: str | None):
    from pyroute2 import IPRoute

    # flags=0: never create the namespace (pyroute2's default is O_CREAT)
    return IPRoute(netns=netns, flags=0) if netns else IPRoute()


def addresses_ready(links: Iterable, addrs: Iterable) -> bool:
    up = {link["index"] for link in links if link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN")}
    for addr in addrs:
        if addr["index"] not in up or addr["scope"] >= RT_SCOPE_LINK:
            continue
        text = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")
        if not text:
            continue
        ip = ipaddress.ip_address(text.split("%")[0])
        if ip.is_loopback or ip.is_link_local or ip.is_multicast:
            continue
        return True
    return False


def connectivity_ready(routes: Iterable) -> bool:
    return any(r["dst_len"] == 0 and r["type"] == RTN_UNICAST for r in routes)


def hostname_ready(name: str | None) -> bool:
    return (name or "").strip().lower() not in UNSET_HOSTNAMES


def etcfiles_ready(etc_root: str) -> bool:
    for name in ("hosts", "resolv.conf"):
        try:
            if os.stat(os.path.join(etc_root, name)).st_size == 0:
                return False
        except FileNotFoundError:
            return False
    return True


def read_kernel(netns: str | None = None) -> dict[str, bool]:
    """``addresses`` and ``connectivity``, read now (blocking: netlink dumps take a few ms)."""
    with _iproute(netns) as ipr:
        return {
            "addresses": addresses_ready(ipr.get_links(), ipr.get_addr()),
            # family 255 makes the kernel dump IPv4 and IPv6 routes of every table
            "connectivity": connectivity_ready(ipr.get_routes()),
        }


def read_local(
    wanted: Iterable[str], hostname_reader: Callable[[], str] | None = None, etc_root: str = "/etc"
) -> dict[str, bool]:
    """``hostname`` and ``etcfiles`` when in *wanted* (cheap, no netlink)."""
    result: dict[str, bool] = {}
    if "hostname" in wanted:
        result["hostname"] = hostname_ready((hostname_reader or socket.gethostname)())
    if "etcfiles" in wanted:
        result["etcfiles"] = etcfiles_ready(etc_root)
    return result


def read_status(
    wanted: Iterable[str],
    netns: str | None = None,
    hostname_reader: Callable[[], str] | None = None,
    etc_root: str = "/etc",
) -> dict[str, bool]:
    """The statuses in *wanted*, read now (blocking)."""
    wanted = set(wanted)
    result = read_kernel(netns) if wanted & KERNEL_STATUSES else {}
    result.update(read_local(wanted, hostname_reader, etc_root))
    return {k: v for k, v in result.items() if k in wanted}


class NetlinkHint:
    """A raw rtnetlink socket subscribed to link, address and route changes.

    Only a wake-up hint: messages are drained unread and the caller re-reads the state.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def open(cls, netns: str | None = None) -> NetlinkHint | None:
        """Subscribe; ``None`` (and a log line) when it cannot, the caller then re-checks on a timer."""

        def make() -> socket.socket:
            if netns:
                from pyroute2 import netns as pnetns

                # pyroute2 creates it inside the namespace from a short-lived child
                sock = pnetns.create_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, 0, flags=0)
            else:
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # 0 = NETLINK_ROUTE
            try:
                sock.bind((0, GROUPS))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            return sock

        try:
            return cls(await asyncio.to_thread(make))
        except Exception as exc:
            log.warning("no netlink notifications (%s); re-checking network every second", exc)
            return None

    def _readable(self) -> None:
        try:
            while self.sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass  # ENOBUFS: messages were lost, which is still a reason to re-check
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        return await wait_and_clear(self._event, timeout)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
