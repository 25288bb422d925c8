"""API sockets that outlive the daemon process: inherited ones, and handing them on.

Both directions speak systemd's socket-activation protocol (sd_listen_fds(3)): the sockets
are fds 3, 4, ... of the new process, ``LISTEN_FDS`` says how many, ``LISTEN_PID`` whose
they are, ``LISTEN_FDNAMES`` their names. So the daemon has one way in, whether its
sockets come from ``extvisor.socket`` (systemd holds them across restarts and crashes) or
from the daemon it replaces: SIGUSR2 detaches from every service and ``execve``s the
(possibly upgraded) extvisor in place, same PID, the listening sockets kept open meanwhile.
A connection that arrives in between waits in the socket's queue and is answered by the
new daemon: no call is refused.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
from dataclasses import dataclass, field

log = logging.getLogger("extvisor.daemon")

FIRST_FD = 3


@dataclass
class Inherited:
    """The listening sockets a service manager or the previous daemon gave us."""

    api: socket.socket | None = None  #: the Unix socket (AF_UNIX)
    tcp: list[socket.socket] = field(default_factory=list)  #: TLS listeners (AF_INET, AF_INET6)


def inherited_sockets(environ: dict[str, str] | None = None) -> Inherited:
    """Take the sockets passed as systemd does; the variables are removed (children must not see them)."""
    env = os.environ if environ is None else environ
    pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    env.pop("LISTEN_FDNAMES", None)
    found = Inherited()
    if not count.isdigit() or pid != str(os.getpid()):
        return found
    for fd in range(FIRST_FD, FIRST_FD + int(count)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            log.warning("inherited fd %d is not a socket (%s); ignored", fd, exc)
            continue
        os.set_inheritable(fd, False)
        if sock.type != socket.SOCK_STREAM:
            log.warning("inherited socket fd %d is not a stream socket; ignored", fd)
            sock.detach()
        elif sock.family == socket.AF_UNIX and found.api is None:
            found.api = sock
        elif sock.family in (socket.AF_INET, socket.AF_INET6):
            found.tcp.append(sock)
        else:
            log.warning("inherited socket fd %d (%s) is not used", fd, sock.family.name)
            sock.detach()
    return found


def for_server(sock: socket.socket) -> socket.socket:
    """A duplicate for uvicorn, whose shutdown closes its sockets: the original stays listening."""
    return socket.socket(fileno=os.dup(sock.fileno()))


def exec_new_daemon(sockets: list[tuple[str, socket.socket]], notify: dict[str, str]) -> None:
    """Replace this process by a new ``extvisor daemon`` with the same arguments, passing *sockets*.

    *notify* restores ``NOTIFY_SOCKET`` and the watchdog variables, which the daemon took out of
    its environment at start. Returns only if the exec fails (said in the log).
    """
    # First far above 3..n, so that no dup2 below overwrites a socket still to be moved.
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 1024) for _, s in sockets]
    for i, fd in enumerate(high):
        os.dup2(fd, FIRST_FD + i, inheritable=True)
    for fd in high:
        os.close(fd)
    env = dict(os.environ, **notify)
    env.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(sockets)),
               LISTEN_FDNAMES=":".join(name for name, _ in sockets))  # fmt: skip
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    for handler in logging.getLogger().handlers:
        handler.flush()
    log.warning("upgrading in place: exec %s", " ".join(argv))
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError as exc:
        log.error("cannot exec the new daemon (%s): the services keep running; start a daemon to adopt them", exc)
