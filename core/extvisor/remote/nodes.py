"""Node and endpoint addresses: ``HOST[:PORT]``, as typed on the command line.

A node keeps the text it was typed as: output names it that way (Talos does the same).
Without a port it takes the port of the context's first endpoint, else Talos's API port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_PORT = 50000  # Talos's apid port

NODES_NOT_SET = ("nodes are not set for the command: please use `--nodes` flag or configuration file "
                 "to set the nodes to run the command against")  # fmt: skip


class AddressError(ValueError):
    """An address that is not HOST[:PORT]."""


def split_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port or None)."""
    text = text.strip()
    if text.startswith(("https://", "http://")):
        text = text.split("://", 1)[1].rstrip("/")
    if not text:
        raise AddressError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise AddressError(f"{text!r} is not [IPv6]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        host, port_text = text, None  # a bare IPv6 address
    else:
        host, _, port_text = text.partition(":")
        port_text = port_text if ":" in text else None
    if not host:
        raise AddressError(f"{text!r} has no host")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AddressError(f"{text!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def default_port(endpoints: Iterable[str]) -> int:
    """The port of the first endpoint that has one, else 50000."""
    for ep in endpoints:
        try:
            _, port = split_hostport(ep)
        except AddressError:
            continue
        return port or DEFAULT_PORT
    return DEFAULT_PORT


@dataclass(frozen=True)
class Node:
    text: str  # as typed: what output shows
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if _is_v6(self.host) else self.host
        return f"https://{host}:{self.port}"

    def __str__(self) -> str:
        return self.text


def _is_v6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def parse_node(text: str, port: int = DEFAULT_PORT) -> Node:
    host, explicit = split_hostport(text)
    return Node(text.strip(), host, explicit or port)


def split_list(values: Iterable[str]) -> list[str]:
    """``-n a,b -n c`` -> [a, b, c]: comma lists, repeated flags, blanks dropped."""
    out: list[str] = []
    for value in values:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def resolve(nodes: Iterable[str], endpoints: Iterable[str]) -> list[Node]:
    """The nodes to talk to: the nodes given, else the endpoints; duplicates once, in order."""
    nodes, endpoints = list(nodes), list(endpoints)
    port = default_port(endpoints)
    out: list[Node] = []
    for text in nodes or endpoints:
        node = parse_node(text, port)
        if node not in out:
            out.append(node)
    if not out:
        raise AddressError(NODES_NOT_SET)
    return out


def listen_address(text: str) -> tuple[str, int]:
    """``--listen HOST[:PORT]``; the port defaults to 50000 as a node's does."""
    host, port = split_hostport(text)
    return host, port or DEFAULT_PORT
