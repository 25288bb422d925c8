"""The ``extvisor`` command. Each area's commands live in their own module, loaded lazily."""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute"
COMMANDS = {
    "validate": "extvisor.cli.spec:validate",
    "schema": "extvisor.cli.spec:schema",
    "plugins": "extvisor.cli.spec:plugins",
    "daemon": "extvisor.cli.daemon:daemon",
    "services": "extvisor.cli.service:services",
    "service": "extvisor.cli.service:service",
    "logs": "extvisor.cli.service:logs",
    "events": "extvisor.cli.service:events",
    "dashboard": "extvisor.cli.dashboard:dashboard",
    "dev": "extvisor.cli.dev:dev",
    "gen": "extvisor.cli.remote:gen",
    "config": "extvisor.cli.remote:config",
}


class LazyGroup(click.Group):
    "stats": "extvisor.cli.stats:stats",
    "processes": "extvisor.cli.stats:processes",
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            # e.g. the dashboard extra is not installed: say so instead of a traceback.
            return _unavailable(name, exc)


def _unavailable(name: str, exc: ImportError) -> click.Command:
    @click.command(name, help=f"(unavailable: {exc})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'{name}' is not available: {exc}. Install the matching extra, e.g. extvisor[all].")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="extvisor")
def main() -> None:
    """Supervise Talos-style extension services: containers from YAML, in dependency order."""
