"""What the client commands share: the answer check, the control-character filter, the node
options and the defaults, each declared once."""

from __future__ import annotations

import math

import click
import pytest

from extvisor.client.format import printable, table
from extvisor.shared import defaults
from extvisor.shared.shapes import Map, Maybe, OneOf, ShapeError, check

EVENT = {"service": str, "ts": float}


@pytest.mark.parametrize("shape, value", [
    (str, "x"), (int, 3), (float, 3), (float, 2.5), (bool, False), (object, None), (dict, {}), (list, []),
    ([EVENT], []), ([EVENT], [{"service": "a", "ts": 1, "extra": "a newer daemon's"}]),
    (Maybe(int), None), (Maybe(int), 4), (Map(int), {"Running": 2}), (Map([[float]]), {"a": [[1.0, 2, 3]]}),
    (OneOf({"progress": dict}, {"error": str}), {"error": "x"}),
    ({"id": str, "verified?": str}, {"id": "0"}), ({"id": str, "verified?": str}, {"id": "0", "verified": "none"}),
])  # fmt: skip
def test_values_of_the_shape_pass(shape, value):
    check(shape, value)


@pytest.mark.parametrize("shape, value, message", [
    ([EVENT], {"unexpected": True}, "answer: expected an array, got an object"),
    ([EVENT], [{"service": "a"}], "answer[0]: no 'ts'"),
    ([EVENT], [{"service": "a", "ts": "now"}], "answer[0].ts: expected a number, got a string"),
    ({"n": int}, {"n": True}, "answer.n: expected an integer, got a boolean"),
    ({"n": int}, {"n": 1.5}, "answer.n: expected an integer, got a number"),
    ({"n": float}, {"n": math.inf}, "answer.n: expected a number, got a number out of range"),
    ({"n": float}, {"n": math.nan}, "answer.n: expected a number, got a number out of range"),
    ({"s": str}, {"s": None}, "answer.s: expected a string, got null"),
    ({"v?": str}, {"v": 1}, "answer.v: expected a string, got a number"),
    (Maybe(int), "1", "answer: expected an integer, got a string"),
    (Map(int), {"a\x1b": "x"}, "answer[…]: expected an integer, got a string"),
    (OneOf({"progress": dict}, {"error": str}), {"x": 1}, "answer: none of 'progress' or 'error'"),
    (OneOf({"progress": dict}, {"error": str}), [], "answer: expected an object, got an array"),
])  # fmt: skip
def test_other_values_are_named_without_their_content(shape, value, message):
    with pytest.raises(ShapeError) as caught:
        check(shape, value)
    assert str(caught.value) == message


def test_control_characters_are_shown_as_cat_v_shows_them():
    assert printable("ok \u00e9\u2603") == "ok \u00e9\u2603"
    assert printable("\x1b]0;title\x07") == "^[]0;title^G"
    assert printable("a\nb\tc\rd\x7f\x9b\x00") == "a^Jb^Ic^Md^?M-^[^@"
    assert table([["ID", "MSG"], ["ext-\x1b[2J", "x"]]) == "ID          MSG\next-^[[2J   x"


def client_commands() -> dict[str, click.Command]:
    from extvisor.cli import dashboard, declared, extensions, service, stats

    cmds = {c.name: c for c in (service.services, service.service, service.logs, service.events, stats.stats,
                                 stats.processes, dashboard.dashboard, extensions.extensions, declared.apply,
                                 declared.diff, declared.applied, declared.rollback)}  # fmt: skip
    cmds.update({f"extensions {n}": extensions.extensions.commands[n] for n in ("install", "remove")})
    return cmds  # type: ignore[return-value]


def _node_options(cmd: click.Command) -> dict:
    return {p.name: (tuple(p.opts), p.help, p.multiple, p.envvar) for p in cmd.params
            if p.name in ("socket_path", "nodes", "endpoints", "context", "config_file")}  # fmt: skip


def test_every_client_command_takes_the_same_node_options():
    from extvisor.cli.extensions import extensions

    for name, cmd in extensions.commands.items():  # the local ones (validate, build, sign) take none
        assert len(_node_options(cmd)) in (0, 5), name
    seen = {}
    for name, cmd in client_commands().items():
        options = _node_options(cmd)
        assert len(options) == 5, name
        seen[name] = options
    assert len({repr(sorted(o.items())) for o in seen.values()}) == 1
    assert seen["services"]["socket_path"][3] == defaults.SOCKET_ENV


def test_daemon_and_dev_state_their_defaults_once():
    from extvisor.cli.daemon import daemon
    from extvisor.cli.dev import dev
    from extvisor.runtime.host import Options
    from extvisor.server.daemon import DaemonConfig

    d = {p.name: p.default for p in daemon.params}
    v = {p.name: p.default for p in dev.params}
    assert (d["socket"], d["state_dir"], d["backend"], d["restart_delay"], d["stop_timeout"]) == \
        (defaults.SOCKET, defaults.STATE_DIR, defaults.BACKEND, defaults.RESTART_DELAY, defaults.STOP_TIMEOUT)  # fmt: skip
    assert (v["backend"], v["restart_delay"], v["restart_max_delay"], v["stop_timeout"]) == \
        (defaults.DEV_BACKEND, defaults.DEV_RESTART_DELAY, defaults.DEV_RESTART_MAX_DELAY, defaults.DEV_STOP_TIMEOUT)  # fmt: skip
    assert str(DaemonConfig().socket) == defaults.SOCKET and DaemonConfig().backend == defaults.BACKEND
    options = Options(rootfs_dir=None, state_dir=None, log_dir=None)  # type: ignore[arg-type]
    assert (options.restart_delay, options.shutdown_timeout) == (defaults.RESTART_DELAY, defaults.SHUTDOWN_TIMEOUT)
    for p in daemon.params:  # the options both commands take are the same declaration, defaults aside
        twin = next((q for q in dev.params if q.name == p.name), None)
        if twin is not None and p.name not in ("service_config_dir",):
            assert (twin.opts, twin.help, twin.type.name) == (p.opts, p.help, p.type.name), p.name


def test_dev_config_keeps_dev_modes_defaults(tmp_path):
    from extvisor.devmode.project import dev_config

    config = dev_config(tmp_path)
    assert config.backend == defaults.DEV_BACKEND
    timing = {k: config.supervisor[k] for k in ("restart_delay", "restart_max_delay", "stop_timeout")}
    assert timing == {"restart_delay": defaults.DEV_RESTART_DELAY, "restart_max_delay": defaults.DEV_RESTART_MAX_DELAY,
                      "stop_timeout": defaults.DEV_STOP_TIMEOUT}  # fmt: skip


def test_the_client_sends_only_what_a_route_takes(tmp_path):
    # Checked before connecting: no daemon is needed to see it refused.
    from extvisor.client.http import Client
    from extvisor.shared import routes

    client = Client(str(tmp_path / "none.sock"))
    with pytest.raises(ShapeError, match=r"^request.strict: expected a boolean, got a string$"):
        next(client.lines(routes.INSTALL, body={"refs": ["x"], "cwd": "/", "strict": "yes"}))
    with pytest.raises(ValueError, match="takes no body"):
        client.call(routes.SERVICES, body={"x": 1})
    with pytest.raises(ValueError, match="action must be one of start, stop, restart"):
        client.call(routes.ACTION, service_id="ext-a", action="exec")
