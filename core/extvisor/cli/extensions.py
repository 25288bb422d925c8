"""``extvisor extensions``: list, install, remove (through the daemon) and validate (locally)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from extvisor.cli.common import emit, output_option, run, socket_option

REFS = "REF is skopeo's syntax: docker://HOST[:PORT]/REPO:TAG (or @sha256:...), oci:DIR[:TAG], " \
       "oci-archive:FILE, docker-archive:FILE; a bare HOST/REPO:TAG is docker://; tarball:FILE " \
       "is a plain tar of manifest.yaml and rootfs/."  # fmt: skip


def _client(socket_path: str | None):  # type: ignore[no-untyped-def]
    from extvisor.client.http import Client

    return Client(socket_path)


def _short(digest: str) -> str:
    return digest[:19] if digest.startswith("sha256:") else digest


def _table(items: list[dict[str, Any]]) -> str:
    from extvisor.client.format import table

    rows = [["ID", "NAME", "VERSION", "AUTHOR", "DIGEST", "SERVICES"]]
    rows += [[i["id"], i["name"], i["version"], i["author"], _short(i["digest"]), ",".join(i["services"]) or "-"] for i in items]
    return table(rows)


@click.group("extensions", invoke_without_command=True, help=f"Talos system extension images.\n\n{REFS}")
@socket_option
@output_option
@click.pass_context
def extensions(ctx: click.Context, socket_path: str | None, output: str) -> None:
    """With no subcommand: list the installed extensions (ID NAME VERSION AUTHOR DIGEST SERVICES)."""
    ctx.ensure_object(dict)["socket"] = socket_path
    if ctx.invoked_subcommand is not None:
        return

    def go() -> None:
        from extvisor.client.extensions import list_extensions

        items = list_extensions(_client(socket_path))
        if output == "table":
            click.echo(_table(items) if items else "no extension installed")
        else:
            emit(items, output)

    run(go)


@extensions.command("install")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("--strict", is_flag=True, help="Refuse on warnings too (a file another extension provides...).")
@socket_option
@output_option
@click.pass_context
def install(ctx: click.Context, refs: tuple[str, ...], strict: bool, socket_path: str | None, output: str) -> None:
    """Install images, or upgrade the extensions of the same name; their services start.

    Progress goes to stderr; each refused image is listed with every problem and the exit
    code is 1.
    """
    socket_path = socket_path or ctx.obj.get("socket")

    def go() -> None:
        from extvisor.client.extensions import install as do_install

        installed, failed = [], 0
        last = ""
        for line in do_install(_client(socket_path), list(refs), os.getcwd(), strict):
            if "progress" in line:
                p = line["progress"]
                text = _progress(p)
                if text and text != last:
                    click.echo(text, err=True)
                    last = text
            elif "installed" in line:
                item = line["installed"]
                installed.append(item)
                for w in item.get("warnings", []):
                    click.echo(f"{item['name']}: {w}", err=True)
                if output == "table":
                    click.echo(f"installed {item['name']} {item['version']} ({item['digest']}): "
                               f"services {', '.join(item['services']) or 'none'}")  # fmt: skip
            elif "error" in line:
                failed += 1
                click.echo(f"error: {line['error']}", err=True)
                for p in line.get("problems", []):
                    click.echo(f"  {p['text']}", err=True)
        if output != "table":
            emit(installed, output)
        if failed:
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
@socket_option
@click.pass_context
def remove(ctx: click.Context, names: tuple[str, ...], socket_path: str | None) -> None:
    """Stop an extension's services and remove every file it brought."""
    socket_path = socket_path or ctx.obj.get("socket")

    def go() -> None:
        from extvisor.client.extensions import remove as do_remove

        client = _client(socket_path)
        for name in names:
            click.echo(do_remove(client, name)["message"])

    run(go)


@extensions.command("validate")
@click.argument("ref", metavar="REF|DIR")
@click.option("--talos-version", default=None, help="Check the constraint against this Talos version [default: 1.12.x].")
@click.option("--authfile", default=None, type=click.Path(dir_okay=False), help="Registry credentials (containers-auth.json).")
@click.option("--cert-dir", default=None, type=click.Path(file_okay=False), help="CA and client certificates for the registry.")
@click.option("--arch", default=None, help="Platform to check in an index [default: the host's].")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def validate(ref: str, talos_version: str | None, authfile: str | None, cert_dir: str | None, arch: str | None,
             strict: bool, output: str) -> None:  # fmt: skip
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
    options = FetchOptions(arch=arch or host_arch(), authfile=authfile, cert_dir=cert_dir)
    result = image.validate(parsed, options, talos, default_kinds(), strict)
    ok = result.unpacked and result.check.manifest is not None and result.check.ok(strict)
    manifest = result.check.manifest
    if output == "json":
        click.echo(json.dumps({
            "ref": ref, "ok": ok, "digest": result.digest, "talos_version": str(talos),
            "manifest": manifest.metadata() if manifest else None,
            "services": [s.id for s in result.check.services],
            "problems": [p.as_dict() for p in result.problems],
        }, indent=2))  # fmt: skip
    else:
        for p in result.problems:
            click.echo(str(p))
        if ok and manifest is not None:
            services = ", ".join(s.id for s in result.check.services) or "no service"
            click.echo(f"{ref}: {manifest.name} {manifest.ext_version} is valid for Talos {talos} ({services})")
        else:
            click.echo(f"{ref}: refused", err=True)
    sys.exit(0 if ok else 1)
