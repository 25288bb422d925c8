"""Talos's roles, carried in the client certificate's Subject Organization values, and
which API calls each may make.

As in Talos (``pkg/machinery/role``): values are trimmed, empty ones skipped, unknown ones
kept but granting nothing. A call is allowed when the caller's roles meet the call's set;
the route table (``extvisor.shared.routes``) says which a route needs; a call of no route
there needs ``os:admin`` (Talos's fallback for unlisted methods).
"""

from __future__ import annotations

from collections.abc import Iterable

from extvisor.shared import routes

ADMIN = "os:admin"
OPERATOR = "os:operator"
READER = "os:reader"
ETCD_BACKUP = "os:etcd:backup"
IMPERSONATOR = "os:impersonator"
KNOWN = (ADMIN, OPERATOR, READER, ETCD_BACKUP, IMPERSONATOR)

NOT_AUTHORIZED = "not authorized"  # Talos's denial text (authz/authorizer.go)

READ = frozenset({ADMIN, OPERATOR, READER})
OPERATE = frozenset({ADMIN, OPERATOR})
ADMIN_ONLY = frozenset({ADMIN})

#: Whoever can open the root-only Unix socket.
UNIX_SOCKET_ROLES = ADMIN_ONLY

#: What each access level of the route table (``extvisor.shared.routes``) needs.
ACCESS = {routes.READ: READ, routes.OPERATE: OPERATE, routes.ADMIN: ADMIN_ONLY}


def parse(values: Iterable[str]) -> frozenset[str]:
    """Roles from Organization values: trimmed, empty ones dropped."""
    return frozenset(v.strip() for v in values if v and v.strip())


def unknown(roles: Iterable[str]) -> list[str]:
    """The values that are not Talos roles (they grant nothing)."""
    return sorted(r for r in parse(roles) if r not in KNOWN)


def required(method: str, path: str) -> frozenset[str]:
    """The roles of which a caller needs one to make this call."""
    route = routes.find(method, path)
    return ADMIN_ONLY if route is None else ACCESS[route.access]


def allowed(roles: Iterable[str], method: str, path: str) -> bool:
    return bool(parse(roles) & required(method, path))
