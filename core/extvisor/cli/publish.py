"""``extvisor publish``: a declared-state file pushed to a registry as a signed OCI artifact,
for nodes that follow the tag (``extvisor daemon --follow``); ``--pull`` shows what is there."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click


def _options(authfile: str | None, cert_dir: str | None):  # type: ignore[no-untyped-def]
    from extvisor.extensions import FetchOptions

    return FetchOptions(authfile=str(Path(authfile).absolute()) if authfile else None,
                        cert_dir=str(Path(cert_dir).absolute()) if cert_dir else None)  # fmt: skip


def validate(path: Path) -> bytes:
    """The file's bytes when it is a valid declared-state file (as ``apply`` reads it)."""
    from extvisor.documents.declared import load_declared

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    from extvisor.extensions.artifact import MAX_DOCUMENT

    if len(data) > MAX_DOCUMENT:
        raise click.ClickException(f"{path}: {len(data)} bytes; a declared-state file is at most {MAX_DOCUMENT}")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path}: not UTF-8 text ({exc})") from None
    node, findings = load_declared(text, str(path))
    for f in findings:
        click.echo(str(f), err=True)
    if node is None or any(f.severity == "error" for f in findings):
        raise click.ClickException(f"{path}: not published: the file does not validate")
    return data


@click.command("publish")
@click.argument("args", nargs=-1, metavar="FILE docker://REF")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, exists=True),
              help="cosign.key to sign with (password from EXTVISOR_SIGNING_PASSWORD; empty when unset).")
@click.option("--pull", "pull_ref", metavar="docker://REF", help="Print what is published at REF instead.")
@click.option("--generation", type=click.IntRange(min=1), default=None,
              help="The generation annotation [default: the tag's one more, or the same for the same file].")
@click.option("--authfile", default=None, type=click.Path(dir_okay=False), help="Registry credentials (containers-auth.json).")
@click.option("--cert-dir", default=None, type=click.Path(file_okay=False), help="CA and client certificates for the registry.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def publish(args: tuple[str, ...], key_path: str | None, pull_ref: str | None, generation: int | None,
            authfile: str | None, cert_dir: str | None, output: str) -> None:  # fmt: skip
    """Validate FILE (the file apply takes) and push it to REF as an OCI artifact, signed with
    --key. Nodes running `extvisor daemon --follow REF` take it at their next check.

    The signature is pushed before the tag moves, so no node sees the new document unsigned.

    `extvisor publish docker://REPO:canary docker://REPO:stable` promotes what is published at
    the first tag to the second, bytes and digest unchanged (as `skopeo copy --preserve-digests`
    does): its signature binds repository and digest, not the tag, so it still verifies.
    """
    from extvisor.extensions import RefError
    from extvisor.extensions import artifact as art

    options = _options(authfile, cert_dir)
    if pull_ref is not None:
        if args:
            raise click.UsageError("--pull takes no FILE or REF arguments")
        _show(pull_ref, options, output)
        return
    if len(args) != 2:
        raise click.UsageError("expected FILE docker://REF (or --pull docker://REF)")
    path, target = Path(args[0]), args[1]
    try:
        ref = art.docker_ref(target)
    except RefError as exc:
        raise click.ClickException(str(exc)) from None
    if "@" in ref.target:
        raise click.ClickException(f"{target}: publish to a tag (docker://HOST/REPO:TAG), not a digest")
    if args[0].startswith("docker://"):
        _promote(args[0], ref, options, output)
        return
    document = validate(path)
    key = _key(key_path) if key_path else None
    signature = ""
    try:
        with tempfile.TemporaryDirectory(prefix="extvisor-publish-") as tmp:
            number = generation or art.next_generation(document, path.name, ref, options, Path(tmp))
        digest = art.sha256(art.manifest_bytes(document, path.name, number))
        if key is not None:
            signature = art.sign_digest(ref, digest, key, options)
        pushed = art.push(document, path.name, number, ref, options)
    except (art.RegistryError, art.ArtifactError) as exc:
        raise click.ClickException(str(exc)) from None
    assert pushed == digest, (pushed, digest)
    if output == "json":
        click.echo(json.dumps({"url": target, "repository": art.repository(ref), "tag": ref.target.rsplit(":", 1)[1],
                               "digest": digest, "generation": number, "title": path.name,
                               "signature": signature or None}))  # fmt: skip
        return
    click.echo(f"published {path.name} generation {number} to {target} ({digest})")
    click.echo(f"signed: {signature}" if signature else "not signed (nodes that follow it refuse it: give --key)")


def _promote(source: str, dest, options, output: str) -> None:  # type: ignore[no-untyped-def]
    """Copy the artifact at *source* to *dest* unchanged; it must be an extvisor artifact."""
    from extvisor.extensions import RefError
    from extvisor.extensions import artifact as art

    try:
        src = art.docker_ref(source)
        with tempfile.TemporaryDirectory(prefix="extvisor-promote-") as tmp:
            digest, raw = art.resolve(src, options, Path(tmp))
        _, generation = art.describe(art.read_manifest(raw, source))
        art.copy(art.by_digest(src, digest), dest, options)
        with tempfile.TemporaryDirectory(prefix="extvisor-promote-") as tmp:
            there, _ = art.resolve(dest, options, Path(tmp))
    except (RefError, art.RegistryError, art.ArtifactError) as exc:
        raise click.ClickException(str(exc)) from None
    if there != digest:
        raise click.ClickException(f"{dest.given} now holds {there}, not {digest}: the copy changed the manifest")
    if art.repository(src) != art.repository(dest):
        click.echo(f"warning: a signature names its repository ({art.repository(src)}); nodes following {dest.given} "
                   f"refuse it until it is signed there: extvisor extensions sign {dest.given} --key cosign.key", err=True)  # fmt: skip
    if output == "json":
        click.echo(json.dumps({"url": dest.given, "from": source, "digest": digest, "generation": generation}))
        return
    click.echo(f"promoted generation {generation} ({digest}) from {source} to {dest.given}")


def _key(path: str):  # type: ignore[no-untyped-def]
    from extvisor.extensions.sign import SignError, load_private_key

    try:
        return load_private_key(Path(path).read_bytes(), os.environ.get("EXTVISOR_SIGNING_PASSWORD", "").encode())
    except (SignError, ValueError, OSError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def _show(text: str, options, output: str) -> None:  # type: ignore[no-untyped-def]
    from extvisor.extensions import RefError
    from extvisor.extensions import artifact as art

    try:
        ref = art.docker_ref(text)
        with tempfile.TemporaryDirectory(prefix="extvisor-pull-") as tmp:
            work = Path(tmp)
            digest, _ = art.resolve(ref, options, work)
            found = art.pull(ref, options, work, digest)
    except (RefError, art.RegistryError, art.ArtifactError) as exc:
        raise click.ClickException(str(exc)) from None
    if output == "json":
        click.echo(json.dumps({"url": text, "digest": found.digest, "generation": found.generation,
                               "title": found.title, "document": found.text}))  # fmt: skip
        return
    click.echo(f"# {text}\n# digest: {found.digest}\n# generation: {found.generation}\n# title: {found.title}")
    sys.stdout.write(found.text if found.text.endswith("\n") or not found.text else found.text + "\n")
