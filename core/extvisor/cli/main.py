"""The ``extvisor`` command. Each area's commands live in their own module, loaded lazily.

``extvisor --help`` lists the commands from :data:`SUMMARIES` without importing them: a
command's module may pull in the whole server (``daemon``) or Textual (``dashboard``).
"""

from __future__ import annotations

import importlib

import click

from extvisor._version import __version__

# command name -> "module:attribute"
COMMANDS = {
    "validate": "extvisor.cli.documents:validate",
    "schema": "extvisor.cli.documents:schema",
    "plugins": "extvisor.cli.documents:plugins",
    "daemon": "extvisor.cli.daemon:daemon",
    "services": "extvisor.cli.service:services",
    "service": "extvisor.cli.service:service",
    "logs": "extvisor.cli.service:logs",
    "events": "extvisor.cli.service:events",
    "dashboard": "extvisor.cli.dashboard:dashboard",
    "dev": "extvisor.cli.dev:dev",
    "stats": "extvisor.cli.stats:stats",
    "processes": "extvisor.cli.stats:processes",
    "gen": "extvisor.cli.remote:gen",
    "config": "extvisor.cli.remote:config",
    "extensions": "extvisor.cli.extensions:extensions",
    "apply": "extvisor.cli.declared:apply",
    "diff": "extvisor.cli.declared:diff",
    "applied": "extvisor.cli.declared:applied",
    "rollback": "extvisor.cli.declared:rollback",
    "publish": "extvisor.cli.publish:publish",
}


# command name -> its line in ``extvisor --help`` (a command missing here is imported for it)
SUMMARIES = {
    "validate": "Check service files and ExtensionServiceConfig documents.",
    "schema": "Print a JSON Schema of both document kinds, for editors.",
    "plugins": "List the plugins found and what they provide.",
    "daemon": "Run the supervisor: load the service files, start the services, serve the API.",
    "services": "List the services and their state.",
    "service": "Show one service, or start, stop or restart it.",
    "logs": "Print a service's log; -f follows it.",
    "events": "Print state changes as they happen.",
    "dashboard": "The terminal dashboard.",
    "dev": "Run a project folder's services in the terminal, reloading on edits.",
    "extensions": "List, install, remove, validate and build Talos system extension images.",
    "stats": "CPU, memory and processes of every service, like talosctl stats.",
    "processes": "The processes of one service or all of them, like talosctl processes.",
    "gen": "Make a CA and server certificates for remote access (as talosctl gen does), or a signing key.",
    "config": "Client configurations and their contexts, as talosctl config does.",
    "apply": "Make nodes run what a declared file says, in waves, rolling back on failure.",
    "diff": "Show what apply would change on each node, and drift since the last apply.",
    "applied": "Show the declared state each node runs under: generation, when, by whom.",
    "rollback": "Return nodes to the generation before their current one.",
    "publish": "Push a declared-state file to a registry, signed, for nodes that follow it.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            summary = SUMMARIES.get(name)
            if summary is None:
                cmd = self.get_command(ctx, name)
                summary = cmd.get_short_help_str(formatter.width) if cmd else ""
            rows.append((name, summary))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

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
@click.version_option(version=__version__, prog_name="extvisor")
def main() -> None:
    """Supervise Talos-style extension services: containers from YAML, in dependency order."""
