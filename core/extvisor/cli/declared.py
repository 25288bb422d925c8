"""``extvisor apply``, ``diff``, ``applied`` and ``rollback``: a declared node file, across nodes.

The node's daemon does the work (``server/declared``); these commands send the file, roll
it out in waves (``client/declared.py``) and print one row per node.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from extvisor.cli.common import Where, emit, node_options, run
from extvisor.client.format import printable

ROW = ["NODE", "RESULT", "GENERATION", "CHANGED", "DURATION"]
#: skopeo's lines that say nothing an operator needs (as ``extensions install`` leaves them out)
QUIET = ("Getting image source signatures", "Storing signatures", "Writing manifest to image destination")


def _shown(text: str) -> str:
    """A node's text for the terminal: its lines kept, control characters shown (``printable``)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _label(target: Any) -> str:
    return printable(target.label) if target.label else "local"


def _read(path: str) -> tuple[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None


def _timeout(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    from extvisor.client.declared import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be more than 0")
    return seconds


def _confirm(fl: Any, what: str, yes: bool) -> None:
    """More than one node: ask on a terminal; refuse without one unless --yes."""
    if yes or len(fl.targets) <= 1:
        return
    names = ", ".join(_label(t) for t in fl.targets)
    if not sys.stdin.isatty():
        raise click.ClickException(f"{what} would change {len(fl.targets)} nodes ({names}) and there is no terminal "
                                   "to confirm on: pass --yes")  # fmt: skip
    if not click.confirm(f"{what} on {len(fl.targets)} nodes ({names})?", default=False, err=True):
        raise click.ClickException("cancelled: nothing was changed")


def _rows(fl: Any, results: list[dict[str, Any]], output: str) -> None:
    from extvisor.client.declared import changed_text
    from extvisor.client.format import table

    items = [{"node": _label(t), **r} for t, r in zip(fl.targets, results)]
    if output != "table":
        emit(items, output)
        return
    rows = [ROW] + [[i["node"], printable(i["result"]), str(i["generation"]) if i["generation"] is not None else "-",
                     printable(changed_text(i["changed"])), f"{i['duration']:.1f}s"] for i in items]  # fmt: skip
    click.echo(table(rows))
    for i in items:
        if i["reason"] and i["result"] != "applied":
            click.echo(f"{i['node']}: {printable(i['result'])}: {printable(i['reason'])}", err=True)


def _waves(ctx_args: dict[str, Any], what: str, open_stream: Any, ok: tuple[str, ...]) -> None:
    from extvisor.client.declared import outcome, rollout

    fl = ctx_args["where"].fleet()
    _confirm(fl, what, ctx_args["yes"])
    lock = __import__("threading").Lock()

    def one(target: Any) -> dict[str, Any]:
        prefix = f"{_label(target)}: " if fl.remote else ""

        def show(p: dict[str, Any]) -> None:
            if p.get("message") in QUIET:
                return
            text = " ".join(str(x) for x in (p.get("ref", ""), p.get("stage", ""), p.get("message", "")) if x)
            with lock:
                click.echo(prefix + printable(text), err=True)

        result = outcome(open_stream(target.client), show)
        if fl.remote and result["result"] == "failed":
            result["reason"] = fl.explain(result["reason"])
        return result

    results = rollout(fl.targets, one, ctx_args["canary"], ctx_args["max_parallel"], ctx_args["max_failures"], ok)
    _rows(fl, results, ctx_args["output"])
    if any(r["result"] not in ok for r in results):
        sys.exit(1)


def _wave_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--timeout", default="2m", callback=_timeout, show_default=True,
                     help="How long each node waits for its changed services to be Running (and healthy)."),
        click.option("--canary", default=0, type=click.IntRange(min=0), help="Apply to this many nodes first."),
        click.option("--max-parallel", default=1, type=click.IntRange(min=1), show_default=True,
                     help="Nodes changed at a time."),
        click.option("--max-failures", default=0, type=click.IntRange(min=0), show_default=True,
                     help="Go on after this many nodes failed or rolled back."),
        click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (more than one node)."),
        click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table"),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


@click.command("apply")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False), help="The declared node file.")
@_wave_options
@node_options
def apply(path: str, timeout: float, canary: int, max_parallel: int, max_failures: int, yes: bool, output: str,
          where: Where) -> None:  # fmt: skip
    """Make each node run what FILE declares, in waves; a node that fails its health gate rolls back.

    One row per node: NODE RESULT (applied, unchanged, rolled back, failed, skipped) GENERATION
    CHANGED DURATION. Exit status 1 when a node did not end applied or unchanged.
    """
    text, filename = _read(path)

    def go() -> None:
        from extvisor.client.declared import apply as do_apply

        name = os.path.basename(filename)
        _waves({"where": where, "yes": yes, "canary": canary, "max_parallel": max_parallel,
                "max_failures": max_failures, "output": output}, f"apply {name}", lambda c: do_apply(c, text, name, timeout), ("applied", "unchanged"))  # fmt: skip

    run(go)


@click.command("rollback")
@_wave_options
@node_options
def rollback(timeout: float, canary: int, max_parallel: int, max_failures: int, yes: bool, output: str,
             where: Where) -> None:  # fmt: skip
    """Return each node to the generation before its current one, in waves.

    A node that got there ends `rolled back`; exit status 1 when one did not.
    """

    def go() -> None:
        from extvisor.client.declared import rollback as do_rollback

        _waves({"where": where, "yes": yes, "canary": canary, "max_parallel": max_parallel,
                "max_failures": max_failures, "output": output}, "rollback", lambda c: do_rollback(c, timeout), ("rolled back",))  # fmt: skip

    run(go)


@click.command("diff")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False), help="The declared node file.")
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text")
@node_options
def diff(path: str, output: str, where: Where) -> None:
    """Show per node what apply would do, and what changed by hand since the last apply.

    Environment values and config file contents are masked. Exit status 0 when nothing would
    change, 1 when something would, 2 when a node could not answer.
    """
    text, filename = _read(path)

    def go() -> None:
        from extvisor.client.declared import diff as do_diff

        fl = where.fleet()
        outcomes = fl.each(lambda c: do_diff(c, text, os.path.basename(filename)))
        items = []
        for o in outcomes:
            if o.error is not None:
                click.echo(f"error: {_label(o.target) + ': ' if fl.remote else ''}{printable(o.error)}", err=True)
                continue
            items.append({"node": _label(o.target), **o.value})
            if output == "text":
                click.echo(_shown(_diff_text(o.value, _label(o.target) if fl.remote else "")))
        if output != "text":
            emit(items, output)
        sys.exit(2 if any(o.error for o in outcomes) else 1 if any(i["changed"] for i in items) else 0)

    run(go)


def _digest(d: str) -> str:
    return d[:19]


def _diff_text(plan: dict[str, Any], node: str) -> str:
    gen = f"generation {plan['generation']}" if plan["generation"] is not None else "no generation yet"
    out = [f"{node} ({gen})" if node else f"# {gen}"]
    for item in plan["extensions"]:
        old, new = item["from"], item["to"]
        if item["action"] == "install":
            out.append(f"  install {item['name'] or '(name known once pulled)'} {new['version']} {new['image']} ({_digest(new['digest'])})")
        elif item["action"] == "upgrade":
            out.append(f"  upgrade {item['name']} {old['version']} ({_digest(old['digest'])}) -> "
                       f"{new['version'] or new['image']} ({_digest(new['digest'])})")  # fmt: skip
        elif item["action"] == "remove":
            out.append(f"  remove  {item['name']} {old['version']} ({_digest(old['digest'])})")
    for change in plan["configs"]:
        out.append(change["diff"])
    if plan["restart"]:
        out.append(f"  restart {', '.join(plan['restart'])}")
    if plan["stop"]:
        out.append(f"  stop    {', '.join(plan['stop'])}")
    for line in plan["drift"]:
        out.append(f"  drift: {line}")
    if not plan["changed"]:
        out.append("  No changes.")
    return "\n".join(out)


@click.command("applied")
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text")
@node_options
def applied(output: str, where: Where) -> None:
    """The document each node runs under (tags pinned to digests), its generation, when and by
    whom it was applied, and how the last attempt ended."""

    def go() -> None:
        from extvisor.cli.common import answers, finish
        from extvisor.client.declared import applied as get

        fl = where.fleet()
        outcomes = fl.each(get)
        items = [{"node": _label(o.target), **o.value} for o in answers(fl, outcomes)]
        if output == "yaml":
            _yaml(items if fl.remote else items[0])
        elif output != "text":
            emit(items if fl.remote else items[0], output)
        else:
            for i in items:
                click.echo(_shown(_applied_text(i, fl.remote)))
        finish(outcomes)

    run(go)


def _yaml(data: Any) -> None:
    """YAML with the document as a block, readable as the file it was."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    click.echo(yaml.dump(data, Dumper=Dumper, sort_keys=False), nl=False)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"


def _applied_text(i: dict[str, Any], remote: bool) -> str:
    head = f"{i['node']}: " if remote else ""
    lines = []
    if i["generation"] is None:
        lines.append(f"{head}no declared state applied")
    else:
        prev = f", previous {i['previous']}" if i["previous"] is not None else ""
        lines.append(f"{head}generation {i['generation']}, applied {_when(i['applied_at'])} by {i['applied_by']}{prev}")
    last = i.get("last")
    if last:
        why = f": {last['reason']}" if last.get("reason") else ""
        lines.append(f"{head}last attempt: {last['result']} {_when(last['at'])} by {last['by']}{why}")
    follow = i.get("follow")
    if follow:
        gen = f" (published generation {follow['generation']})" if follow.get("generation") is not None else ""
        lines.append(f"{head}following {follow['source']} every {follow['interval']:g}s: runs {follow['digest'] or 'nothing from it yet'}{gen}")
        lines.append(f"{head}last check: {_when(follow['checked_at'])}, tag at {follow['checked_digest'] or '-'}")
        if follow.get("last_error"):
            lines.append(f"{head}last error ({_when(follow['last_error_at'])}): {follow['last_error']}")
    if i["document"]:
        lines.append(i["document"].rstrip("\n"))
    return "\n".join(lines)
