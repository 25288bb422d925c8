"""What the daemon holds on disk while it runs: the state directory's lock and the API socket."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from pathlib import Path


class DaemonError(Exception):
    """A reason the daemon cannot start, said in one line."""


def lock_state_dir(state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.stat(state_dir)
    if st.st_uid != os.geteuid():
        raise DaemonError(f"the state directory {state_dir} belongs to uid {st.st_uid}, not to this user "
                          f"(uid {os.geteuid()}): refusing to use it")  # fmt: skip
    if stat.S_IMODE(st.st_mode) != 0o700:  # as containerd's root, whatever mode it had: no other user reaches in
        os.chmod(state_dir, 0o700)
    fd = os.open(state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DaemonError(f"another extvisor daemon is using the state directory {state_dir}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


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
