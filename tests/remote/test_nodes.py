"""Node and endpoint addresses as typed: HOST[:PORT], default ports, lists."""

from __future__ import annotations

import pytest

from extvisor.remote.nodes import (DEFAULT_PORT, NODES_NOT_SET, AddressError, Node, default_port, listen_address,
                                   parse_node, resolve, split_hostport, split_list)  # fmt: skip


@pytest.mark.parametrize("text,expected", [
    ("10.5.0.2", ("10.5.0.2", None)),
    ("10.5.0.2:50001", ("10.5.0.2", 50001)),
    ("node-a.example", ("node-a.example", None)),
    ("node-a:443", ("node-a", 443)),
    ("[::1]:50000", ("::1", 50000)),
    ("[fd00::2]", ("fd00::2", None)),
    ("fd00::2", ("fd00::2", None)),
    ("https://10.5.0.2:50000/", ("10.5.0.2", 50000)),
    (" 127.0.0.2 ", ("127.0.0.2", None)),
])  # fmt: skip
def test_split_hostport(text: str, expected: tuple) -> None:
    assert split_hostport(text) == expected


@pytest.mark.parametrize("text", ["", ":50000", "host:", "host:port", "host:0", "host:70000", "[::1", "[::1]x"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        split_hostport(text)


def test_default_port_is_the_first_endpoints_else_talos() -> None:
    assert default_port([]) == DEFAULT_PORT == 50000
    assert default_port(["10.0.0.1:6443", "10.0.0.2:7000"]) == 6443
    assert default_port(["10.0.0.1", "10.0.0.2:7000"]) == 50000


def test_node_keeps_its_text_and_builds_a_url() -> None:
    n = parse_node("127.0.0.2", 50123)
    assert (n.text, n.host, n.port, n.url, str(n)) == ("127.0.0.2", "127.0.0.2", 50123, "https://127.0.0.2:50123", "127.0.0.2")
    assert parse_node("127.0.0.3:6000", 50123).port == 6000
    assert parse_node("::1", 1).url == "https://[::1]:1"


def test_resolve_nodes_else_endpoints() -> None:
    assert resolve(["a", "b:7"], ["e:9000"]) == [Node("a", "a", 9000), Node("b:7", "b", 7)]
    assert resolve([], ["e1:9000", "e2"]) == [Node("e1:9000", "e1", 9000), Node("e2", "e2", 9000)]
    assert resolve(["a", "a"], []) == [Node("a", "a", 50000)]
    with pytest.raises(AddressError, match="nodes are not set") as err:
        resolve([], [])
    assert str(err.value) == NODES_NOT_SET


def test_split_list_and_listen() -> None:
    assert split_list(["a,b", " c ,", ""]) == ["a", "b", "c"]
    assert listen_address("127.0.0.2") == ("127.0.0.2", 50000)
    assert listen_address("0.0.0.0:50001") == ("0.0.0.0", 50001)
    assert listen_address("[::]:7") == ("::", 7)
