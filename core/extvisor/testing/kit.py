"""Building blocks of backend tests: a busybox rootfs dir, a quick spec, a sink, a harness."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from extvisor.documents.models import ServiceSpec
    from extvisor.protocols import Backend, ContainerHandle, ExitStatus

try:  # explicit asyncio marks, so the contract also runs under asyncio_mode=strict
    import pytest_asyncio

    _async_fixture = pytest_asyncio.fixture
    _asyncio_mark: list[Any] = [pytest.mark.asyncio]
except ImportError:  # pragma: no cover - pytest-asyncio is a dev dependency
    _async_fixture = pytest.fixture
    _asyncio_mark = []

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "ash", "sleep", "echo", "cat", "ls", "env", "touch", "test", "[", "true", "false",
    "seq", "yes", "head", "tail", "wc", "id", "hostname", "mount", "umount", "grep", "printf",
    "kill", "ps", "mkdir", "rm", "stat", "tr", "cut", "dd", "ip", "nc", "date", "readlink",
    "mkfifo", "uname", "xargs", "tee", "sed", "awk",
)  # fmt: skip
ROOTFS_DIRS = ("bin", "proc", "sys", "dev", "etc", "tmp", "data", "run", "var", "usr/local/bin")


def make_busybox_rootfs(path: Path) -> Path:
    """Build a minimal rootfs dir at *path* from the static busybox (``busybox-static``).

    Mountpoints for ``/etc/hosts`` and ``/etc/resolv.conf`` exist as empty files so a
    runtime need not create them in a read-only root.
    """
    if not BUSYBOX.is_file():
        raise FileNotFoundError(f"{BUSYBOX} not found: install busybox-static")
    path = Path(path)
    for d in ROOTFS_DIRS:
        (path / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        link = path / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (path / "etc" / "group").write_text("root:x:0:\n")
    for name in ("hosts", "resolv.conf"):
        (path / "etc" / name).touch()
    return path


def make_service(name: str, script_or_args: str | list[str], **fields: Any) -> ServiceSpec:
    """A :class:`~extvisor.ServiceSpec` for tests.

    A string runs as ``/bin/sh -c SCRIPT``; a list is ``[entrypoint, *args]``. *fields*
    are container keys (``environment``, ``mounts``, ``security``) or top-level keys
    (``restart``, ``depends``, ``logToConsole``). ``restart`` defaults to ``never``.
    """
    from extvisor.documents.models import ServiceSpec

    if isinstance(script_or_args, str):
        entrypoint, args = "/bin/sh", ["-c", script_or_args]
    else:
        entrypoint, *args = script_or_args
    top = {k: fields.pop(k) for k in ("restart", "depends", "logToConsole") if k in fields}
    top.setdefault("restart", "never")
    container = {"entrypoint": entrypoint, "args": args, **fields}
    return ServiceSpec.model_validate({"name": name, "container": container, **top})


class CollectingSink:
    """A LogSink that keeps everything written, and lets a test wait for some text."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._changed = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.data += data
        self._changed.set()

    def text(self) -> str:
        return self.data.decode(errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    async def wait_for(self, needle: bytes, timeout: float = 10.0) -> None:
        async def _wait() -> None:
            while needle not in self.data:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{needle!r} not seen in {timeout}s; output so far: {bytes(self.data)!r}") from None


class Harness:
    """Launches services through a backend for one test, and deletes them afterwards."""

    def __init__(self, backend: Backend, rootfs_dir: Path, state_dir: Path) -> None:
        self.backend = backend
        self.rootfs_dir = rootfs_dir
        self.state_dir = state_dir
        self.token = secrets.token_hex(3)  # unique names: runtimes and cgroups are host-wide
        self.handles: list[ContainerHandle] = []
        self.ids: list[str] = []

    def name(self, base: str) -> str:
        return f"ct-{base}-{self.token}"

    def spec(self, base: str, script_or_args: str | list[str], **fields: Any) -> ServiceSpec:
        return make_service(self.name(base), script_or_args, **fields)

    def rootfs(self, spec: ServiceSpec) -> Path:
        path = self.rootfs_dir / spec.name
        if not (path / "bin" / "busybox").exists():
            make_busybox_rootfs(path)
        return path

    def request(self, spec: ServiceSpec, sink: CollectingSink | None = None, **oci_kw: Any) -> Any:
        from extvisor.oci import build_oci_spec
        from extvisor.protocols import LaunchRequest

        rootfs = self.rootfs(spec)
        state = self.state_dir / spec.id
        state.mkdir(parents=True, exist_ok=True)
        if spec.id not in self.ids:
            self.ids.append(spec.id)
        return LaunchRequest(
            service_id=spec.id,
            spec=spec,
            oci=build_oci_spec(spec, rootfs, **oci_kw),
            rootfs=rootfs,
            log=sink if sink is not None else CollectingSink(),
            state_dir=state,
        )

    async def launch(self, spec: ServiceSpec, **oci_kw: Any) -> tuple[ContainerHandle, CollectingSink]:
        sink = CollectingSink()
        handle = await self.backend.launch(self.request(spec, sink, **oci_kw))
        self.handles.append(handle)
        return handle, sink

    async def run(self, spec: ServiceSpec, timeout: float = 10.0, **oci_kw: Any) -> tuple[ExitStatus, str]:
        """Launch, wait for the exit, delete; return the status and all output."""
        handle, sink = await self.launch(spec, **oci_kw)
        status = await asyncio.wait_for(handle.wait(), timeout)
        await handle.delete()
        return status, sink.text()

    async def close(self) -> None:
        for handle in self.handles:
            try:
                await handle.delete()
            except Exception:  # teardown goes on; leftovers() reports what stayed
                pass
