"""``extvisor daemon``: its options, including those each backend plugin declares."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from extvisor.server.daemon import DaemonConfig, main_async, setup_logging
from extvisor.server.extensions import ExtensionSettings
from extvisor.shared import defaults

EXTENSION_OPTIONS = {"authfile", "cert_dir", "talos_version", "arch", "allow_setuid", "image_pull_progress_timeout",
                     "require_signatures"}


def _backend_options() -> list[click.Option]:
    """``--containerd-address`` and the like, from the registered backends."""
    from extvisor.plugins import get_plugin_manager

    opts: dict[str, click.Option] = {}
    for btype in get_plugin_manager().backends().values():
        for o in btype.options:
            if o.flag not in opts:
                help_text = f"[{btype.name}] {o.help}" + (f" (default {o.default})" if o.default not in (None, "") else "")
                opts[o.flag] = click.Option([f"--{o.flag}", o.key], default=None, envvar=o.envvar, help=help_text)
    return list(opts.values())


def _daemon(**kw) -> None:  # type: ignore[no-untyped-def]
    known = {
        "config_dir", "rootfs_dir", "state_dir", "log_dir", "socket", "service_config_dir", "backend",
        "host_service", "strict", "log_format", "restart_delay", "restart_max_delay", "stop_timeout",
        "log_max_bytes", "log_backups", "assume_time_synced", "instance", "shutdown_timeout",
        "max_connections", "handshake_timeout", "follow", "follow_interval",
    }  # fmt: skip
    listen, tls = list(kw.pop("listen") or ()), {k: kw.pop(k) for k in ("tls_cert", "tls_key", "client_ca")}
    if listen and not all(tls.values()):
        raise click.UsageError("--listen needs --tls-cert, --tls-key and --client-ca: the API is served over TCP "
                               "only with mutual TLS (docs/remote.md)")  # fmt: skip
    backend_options = {k: v for k, v in kw.items() if k not in known | EXTENSION_OPTIONS and v is not None}
    # Absolute paths: they end up in OCI specs and bundles, which runtimes read from elsewhere.
    config = DaemonConfig(
        config_dir=Path(kw["config_dir"]).absolute(),
        rootfs_dir=Path(kw["rootfs_dir"]).absolute(),
        state_dir=Path(kw["state_dir"]).absolute(),
        log_dir=Path(kw["log_dir"]).absolute(),
        socket=Path(kw["socket"]).absolute(),
        service_config_dir=Path(kw["service_config_dir"]).absolute() if kw["service_config_dir"] else None,
        backend=kw["backend"],
        backend_options=backend_options,
        host_services=list(kw["host_service"]),
        strict=kw["strict"],
        log_format=kw["log_format"],
        extensions=extension_settings(kw),
        listen=listen,
        **{k: Path(v).absolute() if v else None for k, v in tls.items()},
        instance=kw["instance"],
        max_connections=kw["max_connections"],
        handshake_timeout=kw["handshake_timeout"],
        **_follow(kw["follow"], kw["follow_interval"]),
        supervisor={
            "restart_delay": kw["restart_delay"],
            "restart_max_delay": kw["restart_max_delay"],
            "stop_timeout": kw["stop_timeout"],
            "shutdown_timeout": kw["shutdown_timeout"],
            "log_max_bytes": kw["log_max_bytes"],
            "log_backups": kw["log_backups"],
            "condition_options": {"assume_time_synced": kw["assume_time_synced"]},
        },
    )
    setup_logging(config.log_format)
    sys.exit(asyncio.run(main_async(config)))


def _follow(ref: str | None, interval: str) -> dict:  # type: ignore[type-arg]
    """``--follow`` and ``--follow-interval`` checked before anything starts."""
    from extvisor.server.follow import parse_interval

    try:
        seconds = parse_interval(interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--follow-interval") from None
    if not ref:
        return {"follow": None, "follow_interval": seconds}
    from extvisor.extensions import RefError
    from extvisor.extensions.artifact import docker_ref

    try:
        docker_ref(ref)
    except RefError as exc:
        raise click.BadParameter(str(exc), param_hint="--follow") from None
    return {"follow": ref, "follow_interval": seconds}


def extension_settings(kw: dict) -> ExtensionSettings:  # type: ignore[type-arg]
    absolute = {k: str(Path(kw[k]).absolute()) if kw.get(k) else None for k in ("authfile", "cert_dir")}
    return ExtensionSettings(**absolute, talos_version=kw["talos_version"], arch=kw["arch"] or "",
                             allow_setuid=kw["allow_setuid"], stall_timeout=kw["image_pull_progress_timeout"],
                             require_signatures=bool(kw.get("require_signatures")))  # fmt: skip


def extension_options() -> list[click.Option]:
    """Registry access for ``extensions install``, with skopeo's meanings (also ``extvisor dev``)."""
    from extvisor.extensions.fetch import STALL_TIMEOUT
    from extvisor.extensions.manifest import TALOS_VERSION

    return [
        click.Option(["--authfile"], default=None, metavar="FILE", type=click.Path(dir_okay=False),
                     help="Registry credentials for extension images (containers-auth.json, as skopeo)."),
        click.Option(["--cert-dir"], default=None, metavar="DIR", type=click.Path(file_okay=False),
                     help="CA (*.crt) and client certificates (*.cert, *.key) for registries, as skopeo."),
        click.Option(["--talos-version"], default=TALOS_VERSION, show_default=True,
                     help="Talos version extension compatibility constraints are checked against."),
        click.Option(["--arch"], default=None, help="Architecture of extension images to pull [default: the host's]."),
        click.Option(["--image-pull-progress-timeout"], type=click.FloatRange(min=0), default=STALL_TIMEOUT, show_default=True,
                     metavar="SECONDS", help="Stop fetching an extension image when nothing arrived for this long "
                                             "(containerd's image_pull_progress_timeout); 0: never."),
        click.Option(["--allow-setuid"], is_flag=True,
                     help="Install setuid and setgid files of extension images (refused otherwise)."),
        click.Option(["--require-signatures"], is_flag=True,
                     help="Refuse an extension image no rule of the ImageVerificationConfig matches."),
    ]  # fmt: skip


def supervisor_options(dev: bool = False) -> dict[str, click.Option]:
    """The options ``daemon`` and ``dev`` share, by name; dev mode's defaults are ``defaults.DEV_*``."""
    d = defaults
    value = {"backend": d.DEV_BACKEND if dev else d.BACKEND,
             "restart_delay": d.DEV_RESTART_DELAY if dev else d.RESTART_DELAY,
             "restart_max_delay": d.DEV_RESTART_MAX_DELAY if dev else d.RESTART_MAX_DELAY,
             "stop_timeout": d.DEV_STOP_TIMEOUT if dev else d.STOP_TIMEOUT}  # fmt: skip
    return {
        "backend": click.Option(["--backend"], default=value["backend"], show_default=True,
                                help="Container backend plugin."),
        "host_service": click.Option(["--host-service"], multiple=True, metavar="NAME[=PATH]",
                                     help="A host service specs may depend on (e.g. cri): assumed up, or up once "
                                          "PATH exists. Repeatable."),
        "strict": click.Option(["--strict"], is_flag=True, help="Treat warnings in service files as errors."),
        "restart_delay": click.Option(["--restart-delay"], type=float, default=value["restart_delay"],
                                      show_default=True,
                                      help="First delay before a restart, seconds (doubles after each quick crash)."),
        "restart_max_delay": click.Option(["--restart-max-delay"], type=float, default=value["restart_max_delay"],
                                          show_default=True,
                                          help="Longest restart delay; a run this long resets the delay."),
        "stop_timeout": click.Option(["--stop-timeout"], type=float, default=value["stop_timeout"], show_default=True,
                                     help="Grace period between SIGTERM and SIGKILL, seconds."),
    }  # fmt: skip


def _build() -> click.Command:
    shared = supervisor_options()
    params = [
        click.Option(["--config-dir"], default=defaults.CONFIG_DIR, show_default=True,
                     help="Directory of service YAML files."),
        click.Option(["--rootfs-dir"], default=defaults.ROOTFS_DIR, show_default=True,
                     help="Directory holding each service's rootfs as <rootfs-dir>/<name>."),
        click.Option(["--state-dir"], default=defaults.STATE_DIR, show_default=True,
                     help="Where the daemon records what it runs."),
        click.Option(["--log-dir"], default=defaults.LOG_DIR, show_default=True, help="One log file per service."),
        click.Option(["--socket"], default=defaults.SOCKET, show_default=True, envvar=defaults.SOCKET_ENV,
                     help="The API's Unix socket (created 0600)."),
        click.Option(["--listen"], multiple=True, metavar="HOST[:PORT]",
                     help="Also serve the API over TCP with mutual TLS (port 50000 when left out). Repeatable."),
        click.Option(["--tls-cert"], type=click.Path(dir_okay=False), help="For --listen: the daemon's certificate."),
        click.Option(["--tls-key"], type=click.Path(dir_okay=False), help="For --listen: its key."),
        click.Option(["--client-ca"], type=click.Path(dir_okay=False),
                     help="For --listen: the CA of accepted client certificates (their O values are roles)."),
        click.Option(["--max-connections"], type=click.IntRange(1), default=defaults.MAX_CONNECTIONS, show_default=True,
                     help="For --listen: TCP connections open at once; at the limit the oldest without a completed "
                          "TLS handshake is closed for a new one. Lowered to what the open-file limit allows."),
        click.Option(["--handshake-timeout"], type=click.FloatRange(0.1), default=defaults.HANDSHAKE_TIMEOUT,
                     show_default=True, help="For --listen: seconds a new TCP connection has to complete its TLS handshake."),
        click.Option(["--service-config-dir"], default=defaults.SERVICE_CONFIG_DIR, show_default=True,
                     help="ExtensionServiceConfig documents (*.yaml)."),
        shared["backend"],
        shared["host_service"],
        shared["strict"],
        click.Option(["--log-format"], type=click.Choice(["logfmt", "json"]), default="logfmt", show_default=True),
        shared["restart_delay"],
        shared["restart_max_delay"],
        shared["stop_timeout"],
        click.Option(["--shutdown-timeout"], type=float, default=defaults.SHUTDOWN_TIMEOUT, show_default=True,
                     help="Longest the daemon's shutdown may take, seconds; then it exits and names what is left."),
        click.Option(["--log-max-bytes"], type=int, default=defaults.LOG_MAX_BYTES, show_default=True,
                     help="Rotate a service's log file at this size."),
        click.Option(["--log-backups"], type=int, default=defaults.LOG_BACKUPS, show_default=True,
                     help="Rotated log files kept."),
        click.Option(["--instance"], default=None, metavar="NAME",
                     help="This daemon's name on the host: its cgroup parent /extvisor/NAME, containerd namespace "
                          "extvisor-NAME, podman names. Default: derived from --state-dir."),
        click.Option(["--assume-time-synced"], is_flag=True,
                     help="Treat the clock as synchronised (machines with no time sync)."),
        click.Option(["--follow"], default=None, metavar="docker://REF", envvar="EXTVISOR_FOLLOW",
                     help="Follow the declared state published at REF (extvisor publish): check it every "
                          "--follow-interval, verify its signature, apply it; hand changes are then refused."),
        click.Option(["--follow-interval"], default="60s", show_default=True, metavar="DURATION",
                     envvar="EXTVISOR_FOLLOW_INTERVAL", help="How often --follow checks the tag (±20 % jitter): 60s, 5m..."),
    ]  # fmt: skip
    return click.Command(
        "daemon", callback=_daemon, params=params + extension_options() + _backend_options(),
        help="Run every service of the config directory, in dependency order, and serve the API.",
        epilog="Signals: SIGTERM/SIGINT stop every service, dependents first; SIGUSR1 exits leaving them "
               "running for the next daemon; SIGUSR2 upgrades in place (execs the installed extvisor, same "
               "PID, API sockets kept). Sockets passed by systemd (LISTEN_FDS) replace --socket and --listen.",
    )  # fmt: skip


daemon = _build()
