"""Every route of the daemon's API, declared once.

Each :class:`Route` says its method and path, who may call it (``access``: read, operate or
admin; ``extvisor.remote.roles`` maps these onto Talos's roles), what it takes (``request``,
a JSON body) and what it answers (``answer``, a :mod:`~extvisor.shared.shapes` shape; for a
stream, the shape of each NDJSON line). From this table:

- the server registers each handler with ``@ROUTE.serve(app)`` (``server/api.py``,
  ``server/metrics.py``, ``server/routes_extensions.py``);
- the role check finds the route of a request (:func:`find`); a request no route matches
  needs admin, as an unlisted method does in Talos;
- the client and the dashboard call a route (``Client.call``, ``Feed.call``) and check its
  answer against the shape.

Adding a route is one entry here plus its handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from extvisor.shared.shapes import Map, Maybe, OneOf

READ, OPERATE, ADMIN = "read", "operate", "admin"
ACCESS = (READ, OPERATE, ADMIN)


class Route:
    """One API route. ``choices`` limits a path parameter to some words (``{action}``)."""

    def __init__(self, method: str, path: str, access: str, answer: Any = object, *, request: Any = None,
                 stream: str | None = None, choices: dict[str, tuple[str, ...]] | None = None,
                 waits: bool = False):  # fmt: skip
        assert access in ACCESS and stream in (None, "text", "ndjson")
        self.method = method
        self.path = path
        self.access = access
        self.answer = answer  #: the JSON answer's shape; for an NDJSON stream, each line's
        self.request = request  #: the JSON body's shape, None when the route takes none
        self.stream = stream  #: "text" or "ndjson": the answer is read as it comes
        self.choices = choices or {}
        self.waits = waits  #: answers when the work is done (a stop): no answer timeout
        self._segments = path.strip("/").split("/")

    def __repr__(self) -> str:
        return f"Route({self.method} {self.path})"

    def path_for(self, **values: str) -> str:
        """The concrete path: ``SERVICE.path_for(service_id="ext-a")``."""
        for name, words in self.choices.items():
            if values.get(name) not in words:
                raise ValueError(f"{name} must be one of {', '.join(words)}")
        return self.path.format(**values)

    def matches(self, method: str, path: str) -> bool:
        """Whether a request (HEAD counts as GET) is a call of this route."""
        method = method.upper()
        if (method if method != "HEAD" else "GET") != self.method:
            return False
        got = path.strip("/").split("/")
        if len(got) != len(self._segments):
            return False
        for want, seg in zip(self._segments, got):
            if not seg:
                return False
            if want.startswith("{"):
                words = self.choices.get(want[1:-1])
                if words is not None and seg not in words:
                    return False
            elif seg != want:
                return False
        return True

    def serve(self, app: Any, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the decorated function as this route's handler on a FastAPI *app*."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            app.add_api_route(self.path, handler, methods=[self.method], **options)
            return handler

        return register


# -- what the API answers (the server's models: state.py, server/api.py; kept equal by a test) --

CHECK_RESULT = {"time": float, "duration": float, "exit_code": Maybe(int), "output": str}
HEALTH = {  # the keys with "?" came with health checks: an older daemon has none of them
    "unknown": bool, "healthy": bool, "last_message": str, "last_change?": Maybe(float), "check?": str,
    "failing_streak?": int, "checks?": [CHECK_RESULT],
}  # fmt: skip
EVENT = {"service": str, "state": str, "msg": str, "ts": float}
SERVICE = {
    "id": str, "state": str, "health": HEALTH, "events": [EVENT], "restarts": int, "pid": Maybe(int),
    "started_at": Maybe(float), "changed_at": Maybe(float), "source": str, "depends_on": [str],
    "log_to_console": bool,
}  # fmt: skip
DAEMON_INFO = {
    "version": str, "backend": str, "pid": int, "started_at": float, "uptime": float, "hostname": str,
    "addresses": [str], "config_dir": str, "log_dir": str, "services": int, "states": Map(int),
}  # fmt: skip
ACTION_RESULT = {"id": str, "action": str, "message": str}
EXTENSION = {
    "id": str, "name": str, "version": str, "author": str, "description": str, "digest": str, "ref": str,
    "services": [str], "arch": str, "media_type": str, "compatibility": str, "installed_at": float,
    "warnings": [str], "verified?": str, "verified_rule?": str,
}  # fmt: skip
INSTALL_REQUEST = {"refs": [str], "cwd": str, "strict": bool, "allow_setuid": bool}
INSTALL_LINE = OneOf(
    {"progress": {"stage": str, "message": str, "done": int, "total": int, "ref": str}},
    {"installed": EXTENSION},
    {"error": str, "ref": str, "problems": [{"text": str}]},
)
REMOVED = {"removed": EXTENSION, "message": str}
STATS = {
    "id": str, "state": str, "pid": Maybe(int), "cpu_percent": float, "cpu_seconds": float, "memory_bytes": int,
    "rss_bytes": int, "processes": int, "restarts": int, "uptime_seconds": float, "source": str,
}  # fmt: skip
HISTORY = {"interval": float, "services": Map([[float]])}  #: samples: [time, cpu %, working set bytes]
PROCESS = {
    "service": str, "pid": int, "ppid": int, "command": str, "state": str, "threads": int, "cpu_percent": float,
    "cpu_seconds": float, "rss_bytes": int, "vms_bytes": int,
}  # fmt: skip
HOST = {
    "cpu_percent": float, "cpus": int, "memory_total_bytes": int, "memory_used_bytes": int, "load": [float],
    "uptime_seconds": float, "processes": int, "time": float,
}  # fmt: skip

FOLLOW_STATUS = {
    "source": Maybe(str), "interval?": float, "digest?": Maybe(str), "generation?": Maybe(int),
    "applied_at?": Maybe(float), "checked_at?": Maybe(float), "checked_digest?": Maybe(str),
    "last_error?": Maybe(str), "last_error_at?": Maybe(float), "refused?": [{"digest": str, "reason": str, "at": float}],
}  #: ``source`` null: the node follows nothing (server/follow.py)
# A declared node (server/declared/routes.py, docs/declared.md).
CHANGED = {"installed": [str], "upgraded": [str], "removed": [str], "restarted": [str]}
APPLY_RESULT = {"result": str, "generation": Maybe(int), "changed": CHANGED, "reason": str, "duration": float}
APPLY_LINE = OneOf({"progress": dict}, {"result": APPLY_RESULT}, {"error": str})
DECLARED_STATE = {
    "generation": Maybe(int), "document": Maybe(str), "applied_at": Maybe(float), "applied_by": Maybe(str),
    "previous": Maybe(int), "extensions": [dict], "last": Maybe(dict), "follow?": Maybe(FOLLOW_STATUS),
}  # fmt: skip
PLAN = {
    "changed": bool, "generation": Maybe(int), "extensions": [dict],
    "configs": [{"action": str, "kind": str, "name": str, "diff": str}], "restart": [str], "stop": [str], "drift": [str],
}  # fmt: skip
DIFF_REQUEST = {"document": str, "filename": str}
APPLY_REQUEST = {"document": str, "filename": str, "timeout": float}
ROLLBACK_REQUEST = {"timeout": float}

# -- the routes --------------------------------------------------------------------------------

DAEMON = Route("GET", "/v1/daemon", READ, DAEMON_INFO)
SERVICES = Route("GET", "/v1/services", READ, [SERVICE])
SERVICE_ONE = Route("GET", "/v1/services/{service_id}", READ, SERVICE)
ACTION = Route("POST", "/v1/services/{service_id}/{action}", OPERATE, ACTION_RESULT,
               choices={"action": ("start", "stop", "restart")}, waits=True)  # fmt: skip
LOGS = Route("GET", "/v1/services/{service_id}/logs", READ, stream="text")
EVENTS = Route("GET", "/v1/events", READ, EVENT, stream="ndjson")
EXTENSIONS = Route("GET", "/v1/extensions", READ, [EXTENSION])
EXTENSION_ONE = Route("GET", "/v1/extensions/{name}", READ, EXTENSION)
INSTALL = Route("POST", "/v1/extensions", ADMIN, INSTALL_LINE, request=INSTALL_REQUEST, stream="ndjson")
REMOVE = Route("DELETE", "/v1/extensions/{name}", ADMIN, REMOVED, waits=True)
DECLARED = Route("GET", "/v1/declared", READ, DECLARED_STATE)  #: secrets masked unless admin
DECLARED_DIFF = Route("POST", "/v1/declared/diff", READ, PLAN, request=DIFF_REQUEST, waits=True)  #: computes only
DECLARED_APPLY = Route("POST", "/v1/declared/apply", ADMIN, APPLY_LINE, request=APPLY_REQUEST, stream="ndjson")
DECLARED_ROLLBACK = Route("POST", "/v1/declared/rollback", ADMIN, APPLY_LINE, request=ROLLBACK_REQUEST, stream="ndjson")
STATS_ALL = Route("GET", "/v1/stats", READ, [STATS])
STATS_HISTORY = Route("GET", "/v1/stats/history", READ, HISTORY)
PROCESSES = Route("GET", "/v1/stats/processes", READ, [PROCESS])
STATS_HOST = Route("GET", "/v1/stats/host", READ, HOST)
METRICS = Route("GET", "/metrics", READ, stream="text")  #: Prometheus's text format
OPENAPI = Route("GET", "/openapi.json", READ, dict)  #: served by FastAPI itself
FOLLOW = Route("GET", "/v1/follow", READ, FOLLOW_STATUS)  #: what a following node follows (server/routes_follow.py)

ROUTES = (DAEMON, SERVICES, SERVICE_ONE, ACTION, LOGS, EVENTS, EXTENSIONS, EXTENSION_ONE, INSTALL, REMOVE,
          DECLARED, DECLARED_DIFF, DECLARED_APPLY, DECLARED_ROLLBACK, STATS_ALL, STATS_HISTORY, PROCESSES, STATS_HOST, METRICS, OPENAPI, FOLLOW)  # fmt: skip


def find(method: str, path: str) -> Route | None:
    """The route a request calls, None when it calls none."""
    for route in ROUTES:
        if route.matches(method, path):
            return route
    return None
