"""``extvisor dev``: a project folder's services in the terminal, restarted on edits."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from extvisor.cli.daemon import _backend_options, extension_options, extension_settings, supervisor_options

HELP = """Run the services of a project folder and restart them when you edit them.

\b
DIR (default: the current directory) holds the services side by side:
  DIR/<name>.yaml         a service file (as in /usr/local/etc/containers)
  DIR/<name>/             its rootfs directory (or DIR/rootfs/<name>/)
  DIR/service-configs/    optional ExtensionServiceConfig documents
  DIR/.extvisor/          state, logs and the API socket (made here; git-ignored)

Each service's output is shown as `ext-<name> | line`, its state changes dimmed. Saving a
service file validates it: a valid one replaces the service (and restarts it), a broken one
is reported as FILE:LINE:COL and the running version stays. A change inside a rootfs
restarts that service. Ctrl-C stops every service and removes its container.

\b
No root needed with a rootless podman (the default backend), started as yourself:
  systemctl --user start podman.socket
  podman system service --time=0 unix://$XDG_RUNTIME_DIR/podman/podman.sock &

--podman-url defaults to that socket when you are not root. On most laptops podman's own
runtime (crun) is the one to use: --podman-runtime ''.
"""


def _dev(**kw) -> None:  # type: ignore[no-untyped-def]
    from extvisor.devmode.printer import Printer, setup_dev_logging, use_colour
    from extvisor.devmode.project import dev_config
    from extvisor.devmode.run import run_dev

    known = {"project", "backend", "service_config_dir", "host_service", "strict", "restart_delay",
             "restart_max_delay", "stop_timeout", "color", "extension", "authfile", "cert_dir", "talos_version", "arch", "allow_setuid",
             "image_pull_progress_timeout", "require_signatures"}  # fmt: skip
    backend_options = {k: v for k, v in kw.items() if k not in known and v is not None}
    project: Path = kw["project"].resolve()
    config = dev_config(
        project,
        backend=kw["backend"],
        backend_options=backend_options,
        service_config_dir=Path(kw["service_config_dir"]) if kw["service_config_dir"] else None,
        host_services=kw["host_service"],
        strict=kw["strict"],
        supervisor={
            "restart_delay": kw["restart_delay"],
            "restart_max_delay": kw["restart_max_delay"],
            "stop_timeout": kw["stop_timeout"],
        },
    )
    config.extensions = extension_settings(kw)
    config.extensions.install = list(kw["extension"])  # installed into DIR/.extvisor before anything starts
    printer = Printer(sys.stdout, use_colour(sys.stdout, kw["color"]))
    setup_dev_logging(printer)
    sys.exit(asyncio.run(run_dev(project, config, printer)))


def _build() -> click.Command:
    shared = supervisor_options(dev=True)
    params = [
        click.Argument(["project"], required=False, default=".", metavar="[DIR]",
                       type=click.Path(exists=True, file_okay=False, path_type=Path)),
        shared["backend"],
        click.Option(["--service-config-dir"], default=None,
                     help="ExtensionServiceConfig documents [default: DIR/service-configs if it exists]."),
        shared["host_service"],
        shared["strict"],
        shared["restart_delay"],
        shared["restart_max_delay"],
        shared["stop_timeout"],
        click.Option(["--extension"], multiple=True, metavar="REF",
                     help="Run the services of this extension image too (docker://, oci:, oci-archive:, "
                          "docker-archive:, tarball:). Repeatable."),
        click.Option(["--color"], type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
                     help="Colour the output (auto: on a terminal, unless NO_COLOR is set)."),
    ]  # fmt: skip
    return click.Command("dev", callback=_dev, params=params + extension_options() + _backend_options(), help=HELP,
                         short_help="Run a project folder's services; restart them on edits.")  # fmt: skip


dev = _build()
