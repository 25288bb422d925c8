"""What the daemon holds on disk while it runs: the state directory's and the instance's locks, the API socket;
and :func:`private_dir`, a directory no other user can write or swap (dev mode's socket
directory; for any directory extvisor makes where others could have been first)."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from pathlib import Path

from extvisor.shared import dirs


class DaemonError(Exception):
    """A reason the daemon cannot start, said in one line."""


class UnsafeDirectory(DaemonError):
    """A directory another user owns, can write or could swap: refused, never used."""


def private_dir(path: Path, purpose: str = "", parents: bool = False) -> Path:
    """*path* as a directory only this user can change (:func:`extvisor.shared.dirs.private_dir`),
    refused with an :class:`UnsafeDirectory` the daemon reports as its own error."""
    try:
        return dirs.private_dir(path, purpose, parents=parents)
    except dirs.UnsafeDirectory as exc:
        raise UnsafeDirectory(str(exc)) from None


def lock_state_dir(state_dir: Path) -> int:
    try:  # as containerd's root, 0700 whatever mode it had: no other user reaches in
        dirs.private_dir(state_dir, "the state directory", parents=True, tighten=True)
    except dirs.UnsafeDirectory as exc:
        raise DaemonError(str(exc)) from None
    fd = os.open(state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DaemonError(f"another extvisor daemon is using the state directory {state_dir}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


#: Where root's daemons lock their instance names. The name keys objects that are the host's, not
#: a state directory's (the cgroup parent /extvisor/<instance>, containerd's namespace, podman's
#: container names), and that last until reboot, as /run does; the kernel drops a lock with its
#: holder, so a killed daemon leaves none.
INSTANCE_LOCKS = Path("/run/extvisor/instances")


def instance_lock_dir() -> Path | None:
    """Root's ``/run/extvisor/instances``; another user's under ``$XDG_RUNTIME_DIR``; None without one."""
    if os.geteuid() == 0:
        return INSTANCE_LOCKS
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return Path(runtime) / "extvisor" / "instances" if os.path.isabs(runtime) else None


def lock_instance(instance: str, explicit: bool, state_dir: Path) -> InstanceLock | None:
    """Hold the instance name while the daemon runs; a DaemonError if another daemon holds it."""
    where = instance_lock_dir()
    if where is None:
        if explicit:
            raise DaemonError(f"--instance {instance}: no runtime directory to lock it in; set XDG_RUNTIME_DIR")
        return None  # a name derived from the state directory is kept by the state directory's lock
    try:
        return InstanceLock.take(where, instance, state_dir, "--instance" if explicit else "derived from --state-dir")
    except NoLockDir:
        if explicit:
            raise
        return None  # as above: a derived name needs no lock to start (another user's $XDG_RUNTIME_DIR, say)


class InstanceLock:
    """The instance name held by this daemon, as containerd holds a container id: a second daemon
    with the same ``--instance`` would share the first one's cgroups and containers."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd = fd

    @classmethod
    def take(cls, where: Path, instance: str, state_dir: Path, how: str) -> InstanceLock:
        """Lock *instance* in *where*, or raise a DaemonError naming the daemon that holds it."""
        _private_dir(where)
        path = where / f"{instance}.lock"
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
            except OSError as exc:
                raise DaemonError(f"cannot open the instance lock {path}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode(errors="replace").splitlines() + ["?", "?"]
                os.close(fd)
                pid, state = holder[0] or "?", holder[1] or "?"
                raise DaemonError(f"instance {instance} ({how}) is in use by another extvisor daemon (pid {pid}, "
                                  f"state directory {state}); it would share that daemon's cgroups and containers: "
                                  "give this one another --instance") from None
            try:  # the last holder removes the file as it exits: the lock must be on the file that is there
                here = os.stat(path, follow_symlinks=False)
                mine = os.fstat(fd)
                if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{state_dir}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)  # while still held: no one locks a file that is going away
        os.close(self._fd)


class NoLockDir(DaemonError):
    """The lock directory cannot be made, or is not this user's alone."""


def _private_dir(path: Path) -> None:
    """Make *path* (0700, with its parents); refuse one another user could change."""
    try:
        dirs.private_dir(path, "the instance lock", parents=True)
    except dirs.UnsafeDirectory as exc:
        raise NoLockDir(str(exc)) from None


def bind_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISSOCK(mode):  # only a stale socket is ever replaced
        what = "a symlink" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode) else \
            "a regular file" if stat.S_ISREG(mode) else "not a socket"
        raise DaemonError(f"--socket {path} exists and is {what}, not a socket: refusing to replace it")
    if mode is not None:
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
            raise DaemonError(f"a daemon already answers on {path}")
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink()
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600: only root may drive the daemon
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock
