"""``extvisor gen ca|server`` and ``extvisor config ...``: certificates and the client
configuration, as ``talosctl gen`` and ``talosctl config`` make them (docs/remote.md)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import click
import yaml

from extvisor.remote import roles as roles_mod
from extvisor.remote.nodes import AddressError, split_hostport, split_list
from extvisor.remote.talosconfig import Config, ConfigError, Context, config_path

config_option = click.option(
    "--config", "config_file", default=None, metavar="FILE",
    help="Client configuration [env EXTVISOR_CONFIG; default ~/.extvisor/config].",
)  # fmt: skip


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _certs():  # type: ignore[no-untyped-def]
    """``cryptography`` is loaded only by the commands that make or read certificates."""
    from extvisor.remote import certs

    return certs


# -- gen ------------------------------------------------------------------------------------


@click.group()
def gen() -> None:
    """Make a CA and server certificates for nodes' --listen (client ones: `config new`), or a signing key."""


@gen.command("signing-key")
@click.option("--output-dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Where cosign.key and cosign.pub are written.")
def gen_signing_key(output_dir: str) -> None:
    """Write cosign.key (cosign's encrypted format; password from EXTVISOR_SIGNING_PASSWORD, empty
    when unset) and cosign.pub, for `extensions sign` and ImageVerificationConfig publicKey rules."""
    import os

    from extvisor.extensions.sign import SignError, write_key_pair

    try:
        private, public = write_key_pair(Path(output_dir), os.environ.get("EXTVISOR_SIGNING_PASSWORD", "").encode())
    except (SignError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"wrote {private} and {public}")


@gen.command("ca")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--organization", default="extvisor", show_default=True, help="The CA's Subject O.")
@click.option("--hours", type=float, default=87600, show_default=True, help="Validity (ten years).")
@click.option("--force", is_flag=True, help="Overwrite DIR/ca.crt and DIR/ca.key.")
def gen_ca(directory: str, organization: str, hours: float, force: bool) -> None:
    """Write DIR/ca.crt and DIR/ca.key: an Ed25519 certificate authority."""
    certs = _certs()
    try:
        crt, key = certs.write_pair(directory, "ca", certs.new_ca(organization, hours), overwrite=force)
    except certs.CertError as exc:
        _fail(str(exc))
    click.echo(f"wrote {crt} and {key}")


@gen.command("server")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--ca", "ca_dir", required=True, metavar="CADIR", help="Directory with ca.crt and ca.key.")
@click.option("--san", "sans", multiple=True, required=True, metavar="NAME|IP[,...]",
              help="Names and addresses clients will dial (the node as they type it). Repeatable.")  # fmt: skip
@click.option("--hours", type=float, default=8760, show_default=True, help="Validity.")
@click.option("--force", is_flag=True, help="Overwrite DIR/server.crt and DIR/server.key.")
def gen_server(directory: str, ca_dir: str, sans: tuple[str, ...], hours: float, force: bool) -> None:
    """Write DIR/server.crt and DIR/server.key, signed by the CA, for `daemon --tls-cert/--tls-key`."""
    certs = _certs()
    try:
        ca = certs.load_pair(ca_dir, "ca")
        crt, key = certs.write_pair(directory, "server", certs.new_server(ca, split_list(sans), hours), overwrite=force)
    except certs.CertError as exc:
        _fail(str(exc))
    click.echo(f"wrote {crt} and {key}")


# -- config ---------------------------------------------------------------------------------


@click.group()
def config() -> None:
    """Client configurations (talosconfig's shape): contexts, endpoints, nodes."""


def _load(config_file: str | None) -> Config:
    try:
        return Config.load(config_path(config_file))
    except ConfigError as exc:
        _fail(str(exc))
        raise  # unreachable


def _check_addresses(values: list[str]) -> list[str]:
    for v in values:
        try:
            split_hostport(v)
        except AddressError as exc:
            _fail(str(exc))
    return values


@config.command("new")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--ca", "ca_dir", required=True, metavar="CADIR", help="Directory with ca.crt and ca.key.")
@click.option("--roles", "roles", default="os:admin", show_default=True, metavar="os:reader[,...]",
              help="Roles of the client certificate: os:reader, os:operator, os:admin.")  # fmt: skip
@click.option("-e", "--endpoints", "endpoints", multiple=True, required=True, metavar="HOST:PORT[,...]",
              help="Where the nodes listen (--listen). Repeatable.")  # fmt: skip
@click.option("-n", "--nodes", "nodes", multiple=True, metavar="HOST[:PORT][,...]",
              help="Nodes commands go to (default: the endpoints).")  # fmt: skip
@click.option("--context", "context_name", default=None, help="Context name (default: the role, e.g. reader).")
@click.option("--hours", type=float, default=8760, show_default=True, help="Validity of the client certificate.")
def config_new(file: str, ca_dir: str, roles: str, endpoints: tuple[str, ...], nodes: tuple[str, ...],
               context_name: str | None, hours: float) -> None:  # fmt: skip
    """Write FILE: one context with a new client certificate holding ROLES."""
    path = Path(file)
    if path.exists():
        _fail(f'{path} already exists; write a new file and add it with "extvisor config merge FILE"')
    role_list = split_list([roles])
    if not role_list:
        _fail("--roles is empty: give os:reader, os:operator or os:admin")
    for r in roles_mod.unknown(role_list):
        click.echo(f"warning: {r!r} is not a role (os:reader, os:operator, os:admin); it grants nothing", err=True)
    certs = _certs()
    try:
        ca = certs.load_pair(ca_dir, "ca")
        client = certs.new_client(ca, role_list, hours)
    except certs.CertError as exc:
        _fail(str(exc))
    if context_name is None:
        short = [r.removeprefix("os:") for r in sorted(roles_mod.parse(role_list))]
        context_name = "+".join(short)
    ctx = Context.from_pems(ca.crt, client.crt, client.key, _check_addresses(split_list(endpoints)),
                            _check_addresses(split_list(nodes)))  # fmt: skip
    try:  # the file holds a key: the same rule as gen's directories
        os.close(certs.open_private_dir(path.absolute().parent))
    except certs.CertError as exc:
        _fail(str(exc))
    Config(context=context_name, contexts={context_name: ctx}).save(path)
    click.echo(f"wrote {path} (context {context_name!r}, roles {', '.join(sorted(roles_mod.parse(role_list)))})")


@config.command("contexts")
@config_option
def config_contexts(config_file: str | None) -> None:
    """List contexts: CURRENT NAME ENDPOINTS NODES."""
    from extvisor.client.format import table

    cfg = _load(config_file)
    rows = [["CURRENT", "NAME", "ENDPOINTS", "NODES"]]
    for name in sorted(cfg.contexts):
        c = cfg.contexts[name]
        nodes = ",".join(c.nodes[:3]) + (",..." if len(c.nodes) > 3 else "")
        rows.append(["*" if name == cfg.context else "", name, ",".join(c.endpoints), nodes])
    click.echo(table(rows))


@config.command("context")
@click.argument("name")
@config_option
def config_context(name: str, config_file: str | None) -> None:
    """Make NAME the current context."""
    cfg = _load(config_file)
    try:
        cfg.use(name)
    except ConfigError as exc:
        _fail(str(exc))
    cfg.save()


def _edit(config_file: str | None, context_name: str | None) -> tuple[Config, Context]:
    cfg = _load(config_file)
    try:
        _, ctx = cfg.current(context_name)
    except ConfigError as exc:
        _fail(str(exc))
    return cfg, ctx


@config.command("endpoint")
@click.argument("endpoints", nargs=-1, required=True)
@click.option("--context", "context_name", default=None, help="Change this context, not the current one.")
@config_option
def config_endpoint(endpoints: tuple[str, ...], context_name: str | None, config_file: str | None) -> None:
    """Set the endpoints of the current context (they replace the old ones)."""
    cfg, ctx = _edit(config_file, context_name)
    ctx.endpoints = _check_addresses(split_list(endpoints))
    cfg.save()


@config.command("node")
@click.argument("nodes", nargs=-1)
@click.option("--context", "context_name", default=None, help="Change this context, not the current one.")
@config_option
def config_node(nodes: tuple[str, ...], context_name: str | None, config_file: str | None) -> None:
    """Set the nodes of the current context; none clears them (the endpoints are used)."""
    cfg, ctx = _edit(config_file, context_name)
    ctx.nodes = _check_addresses(split_list(nodes))
    cfg.save()


def _relative(when: dt.datetime, now: dt.datetime) -> str:
    """go-humanize's Time, which talosctl prints: "11 months from now", "1 year from now", "3 days ago"."""
    delta = (when - now).total_seconds()
    suffix = "from now" if delta >= 0 else "ago"
    s = abs(delta)
    day, week, month = 86400, 7 * 86400, 30 * 86400
    year = 12 * month  # go-humanize's year: twelve 30-day months
    for limit, unit, size in ((60, "second", 1), (3600, "minute", 60), (day, "hour", 3600), (week, "day", day),
                              (month, "week", week), (year, "month", month), (18 * month, "year", year * 10),
                              (float("inf"), "year", year)):  # fmt: skip
        if s < limit:
            n = max(int(s // size), 1)
            return f"{n} {unit}{'s' if n != 1 else ''} {suffix}"
    raise AssertionError("unreachable: the last limit is infinite")


@config.command("info")
@click.option("--context", "context_name", default=None, help="Show this context, not the current one.")
@config_option
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text")
def config_info(context_name: str | None, config_file: str | None, output: str) -> None:
    """Show the current context: nodes, endpoints, roles and when the certificate expires."""
    cfg = _load(config_file)
    try:
        name, ctx = cfg.current(context_name)
    except ConfigError as exc:
        _fail(str(exc))
    roles: list[str] = []
    expires: dt.datetime | None = None
    if ctx.crt:
        certs = _certs()
        try:
            cert = certs.load_cert(ctx.crt_pem)
        except (certs.CertError, ConfigError) as exc:
            _fail(f"context {name!r}: crt: {exc}")
        roles, expires = sorted(certs.cert_roles(cert)), certs.not_after(cert)
    if output != "text":
        data = {"context": name, "nodes": ctx.nodes, "endpoints": ctx.endpoints, "roles": roles,
                "certificate_expires": expires.isoformat() if expires else None}  # fmt: skip
        click.echo(json.dumps(data, indent=2) if output == "json" else yaml.safe_dump(data, sort_keys=False), nl=output == "json")
        return
    now = dt.datetime.now(dt.timezone.utc)
    expiry = f"{_relative(expires, now)} ({expires:%Y-%m-%d})" if expires else "no certificate"
    click.echo(
        f"Current context:     {name}\n"
        f"Nodes:               {', '.join(ctx.nodes) or 'not defined'}\n"
        f"Endpoints:           {', '.join(ctx.endpoints) or 'not defined'}\n"
        f"Roles:               {', '.join(roles) or 'none'}\n"
        f"Certificate expires: {expiry}"
    )


@config.command("merge")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@config_option
def config_merge(file: str, config_file: str | None) -> None:
    """Add FILE's contexts to the configuration (a clashing name gets -1, -2...); FILE's
    current context becomes the current one."""
    cfg = _load(config_file)
    try:
        other = Config.load(file)
    except ConfigError as exc:
        _fail(str(exc))
    for note in cfg.merge(other):
        click.echo(note, err=True)
    cfg.save(config_path(config_file))
