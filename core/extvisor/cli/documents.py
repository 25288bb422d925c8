"""``extvisor validate``, ``extvisor schema`` and ``extvisor plugins``: no daemon needed."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import click


def _plugin_manager() -> Any:
    from extvisor.plugins import get_plugin_manager

    return get_plugin_manager()


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--strict", is_flag=True, help="Treat every warning as an error.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(paths: tuple[str, ...], strict: bool, output: str) -> None:
    """Check service specs, ExtensionServiceConfig files and declared node files (or directories of *.yaml).

    Each file's kind is told by its content. Prints FILE:LINE:COL: error|warning: field: message,
    one per line. Exit status 0 when nothing is an error, 1 otherwise.
    """
    from extvisor.documents.validate import validate_files

    results = validate_files(paths, _plugin_manager().condition_kinds(), strict)
    findings = [f for r in results for f in r.findings]
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if output == "json":
        doc = {
            "ok": errors == 0,
            "files": [r.as_dict() for r in results],
            "findings": [f.as_dict() for f in findings],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for finding in findings:
            click.echo(str(finding))
    bad = sum(not r.ok for r in results)
    summary = f"{len(results)} file(s): {len(results) - bad} ok, {bad} with errors"
    click.echo(f"{summary}; {errors} error(s), {warnings} warning(s)", err=True)
    sys.exit(1 if errors else 0)


@click.command()
@click.option(
    "--kind",
    type=click.Choice(["service", "config", "image-verification", "all"]),
    default="all",
    show_default=True,
    help="service spec, ExtensionServiceConfig, ImageVerificationConfig, or one schema accepting any.",
)
def schema(kind: str) -> None:
    """Print the JSON Schema of the documents (depends keys from the installed plugins)."""
    from extvisor.documents.schema import schema_for

    click.echo(json.dumps(schema_for(kind, _plugin_manager().condition_kinds()), indent=2))


def plugins_report(pm: Any) -> dict[str, Any]:
    """What ``extvisor plugins -o json`` prints."""
    backends = pm.backends()
    kinds = pm.condition_kinds()  # both calls record duplicates and failures in pm.problems
    return {
        "plugins": [asdict(info) for info in pm.plugin_infos()],
        "backends": [
            {
                "name": name,
                "plugin": pm.provider_of("extvisor_register_backends", "name", name),
                "description": b.description,
                "options": [o.flag for o in b.options],
            }
            for name, b in backends.items()
        ],
        "conditions": [
            {
                "key": key,
                "plugin": pm.provider_of("extvisor_register_conditions", "key", key),
                "aliases": list(k.aliases),
                "description": k.description,
            }
            for key, k in kinds.items()
        ],
        "problems": [{"plugin": p.plugin, "message": p.message} for p in pm.problems],
    }


def _short(hook: str) -> str:
    return hook.removeprefix("extvisor_")


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def plugins(output: str) -> None:
    """List plugins (name, distribution, version, hooks, status), backends and condition kinds."""
    report = plugins_report(_plugin_manager())
    if output == "json":
        click.echo(json.dumps(report, indent=2))
        return
    rows = [
        [p["name"], p["distribution"], p["version"], p["status"], ", ".join(_short(h) for h in p["hooks"])]
        for p in report["plugins"]
    ]
    lines = _table(rows, ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS"])
    lines += ["", "backends:"]
    lines += [f"  {b['name']:<12} {b['plugin']:<16} {b['description']}" for b in report["backends"]]
    lines += ["", "condition kinds:"]
    for c in report["conditions"]:
        alias = f" (also {', '.join(c['aliases'])}, deprecated)" if c["aliases"] else ""
        lines.append(f"  {c['key']:<14} {c['plugin']:<16} {c['description']}{alias}")
    if report["problems"]:
        lines += ["", "problems:"] + [f"  {p['plugin']}: {p['message']}" for p in report["problems"]]
    click.echo("\n".join(lines))
