"""Talos's roles, carried in the client certificate's Subject Organization values, and
which API calls each may make.

As in Talos (``pkg/machinery/role``): values are trimmed, empty ones skipped, unknown ones
kept but granting nothing. A call is allowed when the caller's roles meet the call's set;
a call not listed here needs ``os:admin`` (Talos's fallback for unlisted methods).
"""

from __future__ import annotations

from collections.abc import Iterable

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

# (method, path pattern, roles). A pattern segment "*" is any one segment; "a|b" is one of
# those words. Listed on the concrete request path, so a route added later is admin-only
# until someone decides otherwise here.
ROUTES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("GET", "/v1/daemon", READ),
    ("GET", "/v1/services", READ),
    ("GET", "/v1/services/*", READ),
    ("GET", "/v1/services/*/logs", READ),
    ("POST", "/v1/services/*/start|stop|restart", OPERATE),
    ("GET", "/v1/events", READ),
    ("GET", "/v1/extensions", READ),
    ("GET", "/v1/extensions/*", READ),
    ("GET", "/v1/stats", READ),
    ("GET", "/v1/stats/*", READ),
    ("GET", "/metrics", READ),
    ("GET", "/openapi.json", READ),
)


def parse(values: Iterable[str]) -> frozenset[str]:
    """Roles from Organization values: trimmed, empty ones dropped."""
    return frozenset(v.strip() for v in values if v and v.strip())


def unknown(roles: Iterable[str]) -> list[str]:
    """The values that are not Talos roles (they grant nothing)."""
    return sorted(r for r in parse(roles) if r not in KNOWN)


def _match(pattern: str, path: str) -> bool:
    want, got = pattern.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(got):
        return False
    for w, g in zip(want, got):
        if not g:
            return False
        if w != "*" and g not in w.split("|"):
            return False
    return True


def required(method: str, path: str) -> frozenset[str]:
    """The roles of which a caller needs one to make this call."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    for m, pattern, roles in ROUTES:
        if m == method and _match(pattern, path):
            return roles
    return ADMIN_ONLY


def allowed(roles: Iterable[str], method: str, path: str) -> bool:
    return bool(parse(roles) & required(method, path))
