"""The four ways to check a service: exec (through the backend), tcp, http, and sd_notify.

tcp and http run in the daemon, in the host network namespace that extension services
share: no process is forked, so a check costs well under a millisecond of CPU. exec runs in
the container through :meth:`extvisor.protocols.Backend.exec`. The notify socket is a
datagram socket per service, bind-mounted at ``/run/notify`` as runc and podman do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from extvisor.documents.health import format_duration
from extvisor.protocols import EXEC_OUTPUT_MAX, BackendError, ContainerHandle

NOTIFY_DIR = "/run/notify"  # where the socket's directory appears in the container
NOTIFY_SOCKET = f"{NOTIFY_DIR}/notify.sock"
EXEC_GRACE = 10.0  # a backend that overruns a check's timeout by this much is abandoned
MESSAGE_MAX = 300  # characters of output in a last message


@dataclass
class Outcome:
    """One check: passed or not, the exit code (exec) and what it said."""

    ok: bool
    result: str  #: ``success``, ``failure``, ``timeout`` or ``error`` (the metrics label)
    message: str
    exit_code: int | None
    output: str = ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 3] + "..."


def _timeout_text(timeout: float) -> str:
    return f"Health check exceeded timeout ({format_duration(timeout)})"


async def exec_check(backend: Any, container: ContainerHandle, argv: Sequence[str], timeout: float) -> Outcome:
    """Run *argv* in *container*; exit 0 is healthy (Docker's rule)."""
    run = getattr(backend, "exec", None)
    if run is None:
        return Outcome(False, "error", "health checks need a backend that can exec", None)
    try:
        # The backend kills the command at *timeout*; this guard is for a runtime that hangs.
        got = await asyncio.wait_for(run(container, list(argv), timeout), timeout + EXEC_GRACE)
    except TimeoutError:
        return Outcome(False, "timeout", _timeout_text(timeout) + "; the runtime did not answer", None)
    except BackendError as exc:
        return Outcome(False, "error", f"exec failed: {exc}", None)
    output = got.output[:EXEC_OUTPUT_MAX].decode(errors="replace")
    if got.timed_out:
        return Outcome(False, "timeout", _timeout_text(timeout), None, output)
    if got.exit_code == 0:
        return Outcome(True, "success", _short(output), 0, output)
    said = f": {_short(output)}" if output.strip() else ""
    return Outcome(False, "failure", f"exit code {got.exit_code}{said}", got.exit_code, output)


def _os_error(exc: BaseException) -> str:
    """Go's wording: ``connect: connection refused``."""
    errno = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and errno:
        return f"connect: {os.strerror(errno).lower()}"
    return str(exc) or type(exc).__name__


def split_host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


async def tcp_check(addr: str, timeout: float) -> Outcome:
    """Connect to *addr* and close: healthy if the connection is accepted."""
    host, port = split_host_port(addr)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Outcome(False, "timeout", f"dial tcp {addr}: i/o timeout ({_timeout_text(timeout)})", 1)
    except OSError as exc:
        return Outcome(False, "failure", f"dial tcp {addr}: {_os_error(exc)}", 1)
    writer.transport.abort()  # no FIN handshake to wait for: the check is done
    return Outcome(True, "success", f"dial tcp {addr}: connected", 0)


_INSECURE: ssl.SSLContext | None = None


def _insecure() -> ssl.SSLContext:
    global _INSECURE
    if _INSECURE is None:  # as Kubernetes' httpGet: a local check, the certificate is not verified
        _INSECURE = ssl.create_default_context()
        _INSECURE.check_hostname = False
        _INSECURE.verify_mode = ssl.CERT_NONE
    return _INSECURE


async def http_check(url: str, timeout: float) -> Outcome:
    """GET *url*: a 2xx or 3xx answer is healthy (redirects are not followed)."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or ""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=_insecure() if https else None)
            hosthdr = parts.netloc.rpartition("@")[2]
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {hosthdr}\r\nUser-Agent: extvisor-health\r\n"
                         "Connection: close\r\n\r\n".encode())  # fmt: skip
            line = await reader.readline()
    except TimeoutError:
        return Outcome(False, "timeout", f"GET {url}: {_timeout_text(timeout)}", 1)
    except (OSError, ssl.SSLError) as exc:
        return Outcome(False, "failure", f"GET {url}: {_os_error(exc)}", 1)
    finally:
        if writer is not None:
            writer.transport.abort()
    fields = line.decode("latin-1").split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        return Outcome(False, "failure", f"GET {url}: not an HTTP answer: {line[:80]!r}", 1)
    status = int(fields[1])
    text = f"GET {url}: {status} {fields[2].strip() if len(fields) > 2 else ''}".rstrip()
    if 200 <= status < 400:
        return Outcome(True, "success", text, 0)
    return Outcome(False, "failure", text, 1)


class NotifySocket:
    """The service's ``$NOTIFY_SOCKET``: one datagram socket, read on the event loop.

    It lives as long as the service (across its runs), so a ``READY=1`` sent the moment the
    container starts is queued, never lost.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / "notify.sock"
        self.sock: socket.socket | None = None
        self.messages: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        if self.sock is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # an earlier daemon's
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        if len(os.fsencode(self.path)) < 100:
            sock.bind(str(self.path))
        else:  # a socket path is at most 107 bytes: bind through a short name of the directory
            fd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                sock.bind(f"/proc/self/fd/{fd}/{self.path.name}")
            finally:
                os.close(fd)
        os.chmod(self.path, 0o777)  # the service may run as any user (systemd's is 0777 too)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            fields: dict[str, str] = {}
            for line in data.decode(errors="replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    fields[key] = value
            if fields:
                fields["_time"] = str(time.monotonic())
                self.messages.put_nowait(fields)

    def drain(self) -> None:
        """Forget what an earlier run said."""
        while not self.messages.empty():
            self.messages.get_nowait()

    def close(self) -> None:
        if self.sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def add_notify_socket(oci: dict[str, Any], directory: Path) -> None:
    """Mount *directory* at /run/notify (read-only) and set NOTIFY_SOCKET in the container."""
    mounts = oci.setdefault("mounts", [])
    mounts.append({"destination": NOTIFY_DIR, "type": "bind", "source": str(directory),
                   "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})  # fmt: skip
    env = [e for e in oci.setdefault("process", {}).setdefault("env", []) if not e.startswith("NOTIFY_SOCKET=")]
    oci["process"]["env"] = [*env, f"NOTIFY_SOCKET={NOTIFY_SOCKET}"]
