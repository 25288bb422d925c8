"""The route table (``extvisor.shared.routes``) is what the server serves and what the role
check reads, and its answer shapes are the server's models."""

from __future__ import annotations

import enum
import types
import typing
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from extvisor.remote import roles
from extvisor.server.api import ActionResult, DaemonInfo, create_app
from extvisor.server.declared.routes import ApplyRequest, DiffRequest, RollbackRequest, add_declared_routes
from extvisor.server.routes_extensions import InstallRequest, add_extension_routes
from extvisor.server.routes_follow import add_follow_routes
from extvisor.shared import routes
from extvisor.shared.shapes import Map, Maybe
from extvisor.state import ServiceEvent, ServiceInfo

FASTAPI_OWN = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}


def served() -> set[tuple[str, str]]:
    """(method, path) of every route the daemon's app serves; the handlers only register here."""
    app = create_app(object(), dict)  # type: ignore[arg-type]
    add_extension_routes(app, object())  # type: ignore[arg-type]
    add_declared_routes(app, object())  # type: ignore[arg-type]
    add_follow_routes(app, None)
    out = set()
    for r in app.routes:
        out |= {(m, r.path) for m in getattr(r, "methods", None) or {"GET"} if m != "HEAD"}
    return out


def test_the_server_serves_exactly_the_table():
    table = {(r.method, r.path) for r in routes.ROUTES}
    assert served() == table | FASTAPI_OWN
    assert len(table) == len(routes.ROUTES)  # no route declared twice


class _Anything(dict):
    def __missing__(self, key: str) -> str:
        return "ext-a"


@pytest.mark.parametrize("route", routes.ROUTES, ids=repr)
def test_the_role_check_reads_each_route_from_the_table(route: routes.Route):
    words = {name: words[0] for name, words in route.choices.items()}
    path = route.path.format_map(typing.cast(Any, _Anything(words)))
    assert routes.find(route.method, path) is route
    assert roles.required(route.method, path) == roles.ACCESS[route.access]


def test_access_levels_are_talos_roles():
    assert roles.ACCESS == {"read": roles.READ, "operate": roles.OPERATE, "admin": roles.ADMIN_ONLY}
    assert routes.find("GET", "/v1/services/ext-a/stop") is None  # an action is a POST
    assert routes.find("POST", "/v1/services/ext-a/stopx") is None  # only the declared words
    assert routes.find("HEAD", "/v1/services") is routes.SERVICES


def shape_of(annotation: Any) -> Any:
    """The plain shape a pydantic field's type is (what the client checks)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {name: shape_of(f.annotation) for name, f in annotation.model_fields.items()}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return str
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        assert len(inner) == 1 and len(args) == 2, annotation
        return Maybe(shape_of(inner[0]))
    if origin is list:
        return [shape_of(args[0])]
    if origin is dict:
        assert args[0] is str
        return Map(shape_of(args[1]))
    assert annotation in (str, int, float, bool), annotation
    return annotation


@pytest.mark.parametrize("model, shape", [
    (ServiceInfo, routes.SERVICE), (ServiceEvent, routes.EVENT), (DaemonInfo, routes.DAEMON_INFO),
    (ActionResult, routes.ACTION_RESULT), (InstallRequest, routes.INSTALL_REQUEST),
    (DiffRequest, routes.DIFF_REQUEST), (ApplyRequest, routes.APPLY_REQUEST), (RollbackRequest, routes.ROLLBACK_REQUEST),
], ids=lambda v: getattr(v, "__name__", ""))  # fmt: skip
def test_declared_shapes_are_the_server_models(model: type[BaseModel], shape: dict):
    assert shape_of(model) == _required(shape)


def _required(shape: Any) -> Any:
    """The declared shape with its "key?" (missing from an older daemon) written "key"."""
    if isinstance(shape, dict):
        return {k.removesuffix("?"): _required(v) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_required(v) for v in shape]
    return shape


def test_routes_answering_a_model_declare_that_model():
    assert routes.SERVICES.answer == [routes.SERVICE] and routes.SERVICE_ONE.answer == routes.SERVICE
    assert routes.EVENTS.answer == routes.EVENT and routes.EVENTS.stream == "ndjson"
    assert routes.DAEMON.answer == routes.DAEMON_INFO and routes.ACTION.answer == routes.ACTION_RESULT
    assert routes.INSTALL.request == routes.INSTALL_REQUEST
