"""The addresses /v1/daemon shows, read from netlink, match what iproute2 lists."""

from __future__ import annotations

import subprocess
import sys

from extvisor.server.netaddr import global_addresses


def ip_global() -> list[str]:
    out = subprocess.run(["ip", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, check=True)
    return [line.split()[3] for line in out.stdout.splitlines()]


def test_this_hosts_addresses_are_those_ip_shows():
    assert global_addresses() == ip_global()


def test_many_addresses_of_both_families_in_a_namespace_of_our_own():
    # 300 addresses take several reads of the dump; loopback and link-local ones are left out.
    script = (
        "ip link set lo up\n"
        "for i in $(seq 1 300); do ip addr add 10.9.$((i/250)).$((i%250+1))/16 dev lo; done\n"
        "ip -6 addr add fd12::5/64 dev lo\n"
        f"{sys.executable} -c 'from extvisor.server.netaddr import global_addresses as g; print(*g())'\n"
    )
    out = subprocess.run(["unshare", "-n", "sh", "-ec", script], capture_output=True, text=True, check=True, timeout=60)
    got = out.stdout.split()
    assert len(got) == 301
    assert got[0] == "10.9.0.2/16" and got[-1] == "fd12::5/64"
    assert "127.0.0.1/8" not in got and not any(a.startswith("::1") for a in got)


def test_an_empty_namespace_has_none():
    script = f"{sys.executable} -c 'from extvisor.server.netaddr import global_addresses as g; print(repr(g()))'"
    out = subprocess.run(["unshare", "-n", "sh", "-ec", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
