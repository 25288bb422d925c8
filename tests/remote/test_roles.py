"""Which roles may make which API call (Talos's table, mapped onto extvisor's routes)."""

from __future__ import annotations

import pytest

from extvisor.remote import roles

READS = [("GET", "/v1/services"), ("GET", "/v1/services/ext-a"), ("GET", "/v1/services/ext-a/logs"),
         ("GET", "/v1/events"), ("GET", "/v1/daemon"), ("GET", "/v1/extensions"), ("HEAD", "/v1/services")]  # fmt: skip
ACTIONS = [("POST", f"/v1/services/ext-a/{a}") for a in ("start", "stop", "restart")]
ADMIN_CALLS = [("POST", "/v1/extensions"), ("DELETE", "/v1/extensions/nut"), ("POST", "/v1/services/ext-a/exec"),
               ("GET", "/v1/secret-new-route"), ("PUT", "/v1/services/ext-a"), ("POST", "/v1/services/ext-a/logs")]  # fmt: skip


@pytest.mark.parametrize("method,path", READS)
def test_every_role_reads(method: str, path: str) -> None:
    for role in (roles.READER, roles.OPERATOR, roles.ADMIN):
        assert roles.allowed([role], method, path)
    assert not roles.allowed([roles.ETCD_BACKUP], method, path)
    assert not roles.allowed(["os:nobody"], method, path)
    assert not roles.allowed([], method, path)


@pytest.mark.parametrize("method,path", ACTIONS)
def test_operator_and_admin_drive_services(method: str, path: str) -> None:
    assert roles.allowed([roles.OPERATOR], method, path)
    assert roles.allowed([roles.ADMIN], method, path)
    assert not roles.allowed([roles.READER], method, path)
    assert not roles.allowed([roles.IMPERSONATOR], method, path)


@pytest.mark.parametrize("method,path", ADMIN_CALLS)
def test_unlisted_calls_are_admin_only(method: str, path: str) -> None:
    assert roles.required(method, path) == roles.ADMIN_ONLY
    assert roles.allowed([roles.ADMIN], method, path)
    assert not roles.allowed([roles.OPERATOR, roles.READER], method, path)


def test_roles_are_trimmed_and_unknown_ones_grant_nothing() -> None:
    assert roles.parse([" os:reader ", "", "  ", "os:operator"]) == {"os:reader", "os:operator"}
    assert roles.allowed([" os:reader"], "GET", "/v1/services")
    assert roles.unknown(["os:reader", "os:root", "admin"]) == ["admin", "os:root"]
    assert not roles.allowed(["admin", "os:root", "OS:ADMIN"], "GET", "/v1/services")


def test_odd_paths_do_not_match_a_listed_route() -> None:
    assert roles.required("GET", "/v1/services//logs") == roles.ADMIN_ONLY  # empty id segment
    assert roles.required("POST", "/v1/services/ext-a/stop/now") == roles.ADMIN_ONLY
    assert roles.required("POST", "/v1/services/ext-a/stopx") == roles.ADMIN_ONLY
    assert roles.required("post", "/v1/services/ext-a/stop") == roles.OPERATE


def test_unix_socket_is_admin() -> None:
    assert roles.UNIX_SOCKET_ROLES == {roles.ADMIN}
