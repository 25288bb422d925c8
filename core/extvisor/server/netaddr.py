"""The host's global addresses, read from netlink with the standard library.

One RTM_GETADDR dump, as ``ip -o addr show scope global`` makes. pyroute2 gave the same list
but costs ~100 ms to import, paid by the first ``/v1/daemon`` a new daemon answers.
"""

from __future__ import annotations

import os
import socket
import struct

RTM_NEWADDR, RTM_GETADDR = 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS = 1
RT_SCOPE_UNIVERSE = 0

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
RTATTR = struct.Struct("=HH")  # length, type


def global_addresses() -> list[str]:
    """``ADDRESS/PREFIX`` of every address of scope global, in the kernel's order; [] if unreadable."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
            s.settimeout(2)
            request = IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
            s.send(NLMSGHDR.pack(NLMSGHDR.size + len(request), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + request)
            return _read_dump(s)
    except OSError:
        return []


def _read_dump(s: socket.socket) -> list[str]:
    out: list[str] = []
    while True:
        data = s.recv(65536)
        offset = 0
        while offset + NLMSGHDR.size <= len(data):
            length, kind, _, _, _ = NLMSGHDR.unpack_from(data, offset)
            if length < NLMSGHDR.size:
                return out  # malformed: keep what was read
            if kind == NLMSG_DONE:
                return out
            if kind == NLMSG_ERROR:
                (errno,) = struct.unpack_from("=i", data, offset + NLMSGHDR.size)
                raise OSError(-errno, os.strerror(-errno))
            if kind == RTM_NEWADDR:
                address = _address(data[offset + NLMSGHDR.size : offset + length])
                if address:
                    out.append(address)
            offset += (length + 3) & ~3


def _address(body: bytes) -> str | None:
    family, prefix, _, scope, _ = IFADDRMSG.unpack_from(body)
    if scope != RT_SCOPE_UNIVERSE or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    offset = IFADDRMSG.size
    while offset + RTATTR.size <= len(body):
        length, kind = RTATTR.unpack_from(body, offset)
        if length < RTATTR.size:
            return None
        if kind == IFA_ADDRESS:
            return f"{socket.inet_ntop(family, body[offset + RTATTR.size : offset + length])}/{prefix}"
        offset += (length + 3) & ~3
    return None
