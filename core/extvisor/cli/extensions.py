"""``extvisor extensions``: list, install, remove (through the daemon) and validate (locally).

List, install and remove take ``-n/--nodes`` like every client command, on the group or the
subcommand: with nodes, a NODE column (a ``node`` key in json/yaml), ``<node>: `` before
progress lines, and one stderr line per node that failed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from extvisor.cli.common import (
    Where, all_items, answers, emit, finish, labelled, node_column, node_error, node_options, output_option, prefix,
    run,
)
from extvisor.client.format import printable
from extvisor.shared import routes

REFS = "REF is skopeo's syntax: docker://HOST[:PORT]/REPO:TAG (or @sha256:...), oci:DIR[:TAG], " \
       "oci-archive:FILE, docker-archive:FILE; a bare HOST/REPO:TAG is docker://; tarball:FILE " \
       "is a plain tar of manifest.yaml and rootfs/."  # fmt: skip


def _fleet(ctx: click.Context, where: Where):  # type: ignore[no-untyped-def]
    """The daemons to talk to: the subcommand's flags, else the group's."""
    return where.over(ctx.obj).fleet()


def _short(digest: str) -> str:
    return digest[:19] if digest.startswith("sha256:") else digest


def _table(fl, items: list[dict[str, Any]]) -> str:  # type: ignore[no-untyped-def]
    from extvisor.client.format import table

    rows = [(i.get("node", ""), [i["id"], i["name"], i["version"], i["author"], _short(i["digest"]),
                                 i.get("verified", "none"), ",".join(i["services"]) or "-"]) for i in items]  # fmt: skip
    return table(node_column(fl, ["ID", "NAME", "VERSION", "AUTHOR", "DIGEST", "VERIFIED", "SERVICES"], rows))


@click.group("extensions", invoke_without_command=True, help=f"Talos system extension images.\n\n{REFS}")
@node_options
@output_option
@click.pass_context
def extensions(ctx: click.Context, where: Where, output: str) -> None:
    """With no subcommand: list the installed extensions (ID NAME VERSION AUTHOR DIGEST VERIFIED SERVICES)."""
    ctx.obj = where  # the subcommands' defaults
    if ctx.invoked_subcommand is not None:
        return

    def go() -> None:
        fl = where.fleet()
        outcomes = fl.each(lambda c: c.call(routes.EXTENSIONS))
        items = all_items(fl, answers(fl, outcomes))
        if output == "table":
            if items or not fl.remote:
                click.echo(_table(fl, items) if items else "no extension installed")
        else:
            emit(items, output)
        finish(outcomes)

    run(go)


@extensions.command("install")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("--strict", is_flag=True, help="Refuse on warnings too (a file another extension provides...).")
@click.option("--allow-setuid", is_flag=True, help="Install setuid and setgid files (refused otherwise).")
@node_options
@output_option
@click.pass_context
def install(ctx: click.Context, refs: tuple[str, ...], strict: bool, allow_setuid: bool, where: Where,
            output: str) -> None:  # fmt: skip
    """Install images, or upgrade the extensions of the same name; their services start.

    Progress goes to stderr; each refused image is listed with every problem and the exit
    code is 1. Ctrl-C cancels the install on the node (unless it was already switched in).
    """

    def go() -> None:
        fl = _fleet(ctx, where)
        installed: list[dict[str, Any]] = []
        failed = [0]
        last: dict[str, str] = {}

        def show(target, line: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
            node = prefix(fl, target)
            if "progress" in line:
                text = printable(_progress(line["progress"]))
                if text and text != last.get(node):
                    click.echo(node + text, err=True)
                    last[node] = text
            elif "installed" in line:
                item = line["installed"]
                installed.append(labelled(fl, target, item))
                for w in item["warnings"]:
                    click.echo(f"{node}{printable(item['name'])}: {printable(w)}", err=True)
                if output == "table":
                    text = (f"installed {item['name']} {item['version']} ({item['digest']}): "
                            f"services {', '.join(item['services']) or 'none'}")  # fmt: skip
                    click.echo(node + printable(text))
            elif "error" in line:
                failed[0] += 1
                click.echo(f"error: {node}{printable(line['error'])}", err=True)
                for p in line["problems"]:
                    click.echo(f"  {printable(p['text'])}", err=True)

        def broke(target, message: str) -> None:  # type: ignore[no-untyped-def]
            failed[0] += 1
            if fl.remote:
                node_error(target.label, message)
            else:
                click.echo(f"error: {printable(message)}", err=True)

        body = {"refs": list(refs), "cwd": os.getcwd(), "strict": strict, "allow_setuid": allow_setuid}
        try:
            fl.stream(lambda c: c.lines(routes.INSTALL, body=body), show, broke)
        except KeyboardInterrupt:
            click.echo("cancelled: the install stops on the node", err=True)
            raise
        if output != "table":
            emit(installed, output)
        if failed[0]:
            sys.exit(1)

    run(go)


def _progress(p: dict[str, Any]) -> str:
    ref, stage, message = p.get("ref", ""), p["stage"], p.get("message", "")
    if stage == "fetch" and p.get("done") and not message:
        return f"{ref}: fetched {p['done'] / 1e6:.1f} MB"
    if stage == "fetch" and message in ("Getting image source signatures", "Storing signatures", "Writing manifest to image destination"):
        return ""
    amount = f" {p['done']}/{p['total']}" if p.get("total") else ""
    return f"{ref}: {stage}{amount}{': ' + message if message else ''}"


@extensions.command("remove")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@node_options
@click.pass_context
def remove(ctx: click.Context, names: tuple[str, ...], where: Where) -> None:
    """Stop an extension's services and remove every file it brought."""

    def go() -> None:
        fl = _fleet(ctx, where)
        outcomes = []
        for name in names:
            results = fl.each(lambda c: c.call(routes.REMOVE, name=name))  # noqa: B023
            outcomes += results
            for o in answers(fl, results):
                click.echo(prefix(fl, o.target) + printable(o.value["message"]))
        finish(outcomes)

    run(go)


@extensions.command("validate")
@click.argument("ref", metavar="REF|DIR")
@click.option("--talos-version", default=None, help="Check the constraint against this Talos version [default: 1.12.x].")
@click.option("--authfile", default=None, type=click.Path(dir_okay=False), help="Registry credentials (containers-auth.json).")
@click.option("--cert-dir", default=None, type=click.Path(file_okay=False), help="CA and client certificates for the registry.")
@click.option("--arch", default=None, help="Platform to check in an index [default: the host's].")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--allow-setuid", is_flag=True, help="Accept setuid and setgid files (as install --allow-setuid).")
@click.option("--image-pull-progress-timeout", "stall", type=click.FloatRange(min=0), default=300.0, show_default=True,
              metavar="SECONDS", help="Stop fetching when nothing arrived for this long; 0: never.")
@click.option("--image-verification", "verification", default=None, type=click.Path(dir_okay=False, exists=True),
              metavar="FILE", help="Verify the image against the ImageVerificationConfig in FILE, as a daemon would.")
@click.option("--require-signatures", is_flag=True, help="As the daemon's flag: refuse an image no rule matches.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def validate(ref: str, talos_version: str | None, authfile: str | None, cert_dir: str | None, arch: str | None,
             strict: bool, allow_setuid: bool, stall: float, verification: str | None, require_signatures: bool,
             output: str) -> None:  # fmt: skip
    """Check an image, or an unpacked DIR (manifest.yaml + rootfs/), as install would; no daemon.

    Each problem is one line with its path in the image (FILE:LINE:COL in a service file);
    the exit code is 1 when install would refuse the image.
    """
    import json

    from extvisor.extensions import ExtensionError, FetchOptions, RefError, host_arch, image, parse_ref
    from extvisor.extensions.check import default_kinds
    from extvisor.extensions.manifest import TALOS_VERSION, talos_version as parse_talos

    try:
        parsed = parse_ref(ref, allow_dir=True)
        talos = parse_talos(talos_version or TALOS_VERSION)
    except (RefError, ExtensionError) as exc:
        raise click.ClickException(str(exc)) from None
    options = FetchOptions(arch=arch or host_arch(), authfile=authfile, cert_dir=cert_dir, stall_timeout=stall)
    policy = _policy(verification, require_signatures)
    result = image.validate(parsed, options, talos, default_kinds(), strict, allow_setuid=allow_setuid, policy=policy)
    ok = result.unpacked and result.check.manifest is not None and result.check.ok(strict)
    manifest = result.check.manifest
    if output == "json":
        click.echo(json.dumps({
            "ref": ref, "ok": ok, "digest": result.digest, "talos_version": str(talos),
            "manifest": manifest.metadata() if manifest else None,
            "services": [s.id for s in result.check.services],
            "problems": [p.as_dict() | {"path": p.file} for p in result.problems],  # "path": 0.2's key
            **({"verified": result.verdict.verified, "verified_rule": result.verdict.rule} if result.verdict else {}),
        }, indent=2))  # fmt: skip
    else:
        for p in result.problems:
            click.echo(str(p))
        if result.verdict is not None:
            click.echo(f"{ref}: image verification: {result.verdict.rule}: {result.verdict.verified}")
        if ok and manifest is not None:
            services = ", ".join(s.id for s in result.check.services) or "no service"
            click.echo(f"{ref}: {manifest.name} {manifest.ext_version} is valid for Talos {talos} ({services})")
        else:
            click.echo(f"{ref}: refused", err=True)
    sys.exit(0 if ok else 1)


def _policy(path: str | None, require: bool):  # type: ignore[no-untyped-def]
    """The Policy of ``--image-verification FILE`` (None without it nor ``--require-signatures``)."""
    from extvisor.documents.imageverify import load_image_verification
    from extvisor.extensions.verify import Policy

    if path is None:
        return Policy(None, True) if require else None
    document, findings = load_image_verification(path)
    if document is None:
        for f in findings:
            click.echo(str(f), err=True)
        raise click.ClickException(f"{path}: no usable ImageVerificationConfig")
    return Policy(document, require)


@extensions.command("sign")
@click.argument("ref", metavar="docker://REF")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="cosign.key (password from EXTVISOR_SIGNING_PASSWORD; empty when unset).")
@click.option("--authfile", default=None, type=click.Path(dir_okay=False), help="Registry credentials (containers-auth.json).")
@click.option("--cert-dir", default=None, type=click.Path(file_okay=False), help="CA and client certificates for the registry.")
def sign(ref: str, key_path: str, authfile: str | None, cert_dir: str | None) -> None:
    """Push a cosign signature of the image's digest (tag sha256-<hex>.sig in its repository).

    The digest is the one REF resolves to now (an index for a multi-platform image); signatures
    already there are kept.
    """
    from pathlib import Path

    from extvisor.extensions import FetchOptions, RefError, parse_ref
    from extvisor.extensions.sign import SignError, load_private_key, sign as do_sign

    try:
        parsed = parse_ref(ref)
        key = load_private_key(Path(key_path).read_bytes(), os.environ.get("EXTVISOR_SIGNING_PASSWORD", "").encode())
        digest, target = do_sign(parsed, key, FetchOptions(authfile=authfile, cert_dir=cert_dir))
    except (RefError, SignError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"signed {ref} ({digest}): {target}")


def _add_build() -> None:
    from extvisor.cli.build import build

    extensions.add_command(build)


_add_build()
