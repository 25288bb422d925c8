"""``extvisor extensions build``: a dev-mode project folder to a Talos system extension image."""

from __future__ import annotations

import os
import sys

from pathlib import Path

import click

HELP_DEST = "oci:DIR:TAG, oci-archive:FILE[:TAG] or docker://HOST/REPO:TAG (pushed with skopeo)."


def _manifest_from_flags(name: str | None, version: str | None, author: str | None, description: str | None,
                         talos: str | None) -> bytes | None:  # fmt: skip
    """A ``manifest.yaml`` made from the flags, or None when none was given."""
    if not any((name, version, author, description, talos)):
        return None
    if not name or not version:
        raise click.UsageError("--name and --version are both needed to make a manifest")
    import yaml

    from extvisor.extensions.manifest import TALOS_VERSION

    if not talos:
        major, minor = TALOS_VERSION.split(".")[:2]
        talos = f"v{major}.{minor}.0"
    constraint = talos if talos[:1] in "<>=!~^" else f">= {talos if talos.startswith('v') else 'v' + talos}"
    doc = {"version": "v1alpha1", "metadata": {
        "name": name, "version": version, "author": author or "", "description": description or "",
        "compatibility": {"talos": {"version": constraint}},
    }}  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


@click.command("build")
@click.argument("folder", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "dest", required=True, metavar="DEST", help=f"Where the image goes: {HELP_DEST}")
@click.option("--name", default=None, help="Without DIR/manifest.yaml: the extension's name.")
@click.option("--version", "version", default=None, help="Without DIR/manifest.yaml: its version (1.0.0, v1.2.3-r1...).")
@click.option("--author", default=None, help="Without DIR/manifest.yaml: its author.")
@click.option("--description", default=None, help="Without DIR/manifest.yaml: its description.")
@click.option("--talos-version", "talos", default=None,
              help="Without DIR/manifest.yaml: the Talos versions it is for ('>= v1.12.0'; a bare version means >=).")
@click.option("--allow-setuid", is_flag=True, help="Keep setuid and setgid bits (refused otherwise).")
@click.option("--arch", default=None, help="The image's architecture [default: the host's].")
@click.option("--authfile", default=None, type=click.Path(dir_okay=False), help="Registry credentials (containers-auth.json).")
@click.option("--cert-dir", default=None, type=click.Path(file_okay=False), help="CA and client certificates for the registry.")
@click.option("--key", default=None, type=click.Path(dir_okay=False), help="Sign the pushed image with this cosign.key.")
def build(folder: str, dest: str, name: str | None, version: str | None, author: str | None, description: str | None,
          talos: str | None, allow_setuid: bool, arch: str | None, authfile: str | None, cert_dir: str | None,
          key: str | None) -> None:  # fmt: skip
    """Build the image of a project folder, the one ``extvisor dev`` runs.

    DIR holds DIR/<name>.yaml service files, each service's rootfs in DIR/<name>/ (or
    DIR/rootfs/<name>/) and DIR/manifest.yaml (or the --name, --version... flags). The image
    has one layer: manifest.yaml, rootfs/usr/local/etc/containers/ and
    rootfs/usr/local/lib/containers/<name>/. It is checked as `extensions validate` checks,
    with findings at paths in DIR, before anything is written; the same folder gives the same
    digest anywhere (times from SOURCE_DATE_EPOCH, default 0). Prints the image's digest.
    """
    from extvisor.extensions import ExtensionError, FetchError, FetchOptions, RefError, host_arch, parse_ref
    from extvisor.extensions import build as builder
    from extvisor.extensions.check import default_kinds
    from extvisor.extensions.manifest import MANIFEST, TALOS_VERSION, talos_version
    from extvisor.extensions.project import scan

    made = _manifest_from_flags(name, version, author, description, talos)
    root = Path(folder)
    if made is not None and (root / MANIFEST).exists():
        raise click.UsageError(f"{root / MANIFEST} exists: edit it, or build without --name, --version, ...")
    signer = None
    try:
        ref = parse_ref(dest)
        if key and ref.transport != "docker":
            raise RefError("--key signs a pushed image: give docker://REF")
        epoch = builder.source_date_epoch()
        if key:  # a wrong password fails before anything is built or pushed
            from extvisor.extensions.sign import load_private_key

            signer = load_private_key(Path(key).read_bytes(), os.environ.get("EXTVISOR_SIGNING_PASSWORD", "").encode())
    except (RefError, builder.BuildError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if ref.is_local:
        ref = ref.absolute(Path.cwd())
    project = scan(root, made, talos_version(TALOS_VERSION), default_kinds(), allow_setuid, shown=folder)
    for f in project.findings:
        click.echo(str(f), err=True)
    if project.errors():
        click.echo(f"{folder}: not built: {len(project.errors())} error(s)", err=True)
        sys.exit(1)
    files = sum(1 for e in project.entries if e.kind == "file")
    click.echo(f"build: {', '.join(project.services)}: {files} files", err=True)

    def show(p) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"build: {p}", err=True)

    options = FetchOptions(arch=arch or host_arch(), authfile=authfile, cert_dir=cert_dir)
    try:
        image = builder.build(project.entries, ref, options, epoch, show)
        if signer is not None:
            from extvisor.extensions.sign import SignError, sign
            from extvisor.extensions.verify import repository

            try:  # by digest: what is signed is what was built, whatever the tag points at by now
                _, target = sign(parse_ref(f"docker://{repository(ref)}@{image.digest}"), signer, options)
            except SignError as exc:
                raise builder.BuildError(f"pushed {image.digest}, but signing failed: {exc}") from None
            click.echo(f"build: signed {image.digest}: {target}", err=True)
    except (builder.BuildError, FetchError, ExtensionError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    manifest = project.manifest
    assert manifest is not None
    click.echo(f"built {manifest.name} {manifest.ext_version}: {dest} {image.digest}")
