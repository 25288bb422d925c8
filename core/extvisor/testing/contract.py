"""The behaviour every extvisor backend must show, as tests (:class:`BackendContract`)."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from extvisor.protocols import Backend

from extvisor.testing.kit import CollectingSink, Harness, _async_fixture, _asyncio_mark


def _bits(hexmask: str) -> int:
    return int(hexmask, 16)


class BackendContract:
    """The behaviour every extvisor backend must show, as tests.

    Subclass it in a test module and provide either a ``backend_factory`` fixture (a
    callable returning a new, unopened backend over the same state dir each time; the
    restart-cleanup test needs it) or a ``backend`` fixture (an opened backend).
    Override :meth:`leftovers` to list what the backend left behind for a service.
    """

    pytestmark = _asyncio_mark
    wait_timeout = 10.0

    def leftovers(self, service_id: str) -> list[str]:
        """Describe anything left of *service_id* (containers, processes, cgroups, mounts)."""
        return []

    async def _leftovers(self, service_id: str) -> list[str]:
        result = self.leftovers(service_id)
        if inspect.isawaitable(result):
            result = await result
        return list(result)

    # -- fixtures ------------------------------------------------------------------

    @pytest.fixture
    def backend_factory(self) -> Callable[[], Backend]:
        # A contract that does not run is not a contract that passed.
        pytest.fail(f"{type(self).__name__} defines no backend_factory fixture: the contract has no backend to test")

    @_async_fixture
    async def backend(self, backend_factory: Callable[[], Backend]) -> Any:
        backend = backend_factory()
        await backend.open()
        await backend.cleanup()
        yield backend
        await backend.close()

    @pytest.fixture
    def rootfs_dir(self, tmp_path: Path) -> Path:
        path = tmp_path / "rootfs"
        path.mkdir()
        return path

    @_async_fixture
    async def harness(self, backend: Backend, rootfs_dir: Path, tmp_path: Path) -> Any:
        h = Harness(backend, rootfs_dir, tmp_path / "service-state")
        yield h
        await h.close()
        left = {sid: await self._leftovers(sid) for sid in h.ids}
        left = {k: v for k, v in left.items() if v}
        assert not left, f"left behind after delete: {left}"

    # -- the contract --------------------------------------------------------------

    async def test_exit_codes(self, harness: Harness) -> None:
        from extvisor.protocols import ExitStatus

        ok, failed = await asyncio.gather(
            harness.run(harness.spec("exit0", "exit 0")), harness.run(harness.spec("exit3", "exit 3"))
        )
        assert ok[0] == ExitStatus(code=0) and ok[0].success
        assert failed[0] == ExitStatus(code=3) and not failed[0].success

    async def test_launch_returns_a_running_handle(self, harness: Harness) -> None:
        spec = harness.spec("handle", "echo up; sleep 1000")
        handle, sink = await harness.launch(spec)
        assert handle.id == spec.id
        assert handle.pid > 0
        await sink.wait_for(b"up\n")
        await handle.signal(signal.SIGKILL)
        await asyncio.wait_for(handle.wait(), self.wait_timeout)

    async def test_stdout_and_stderr_in_order(self, harness: Harness) -> None:
        status, out = await harness.run(harness.spec("order", "echo a; echo b >&2; echo c; echo d >&2"))
        assert status.success
        assert out == "a\nb\nc\nd\n"

    async def test_args_are_passed(self, harness: Harness) -> None:
        status, out = await harness.run(harness.spec("args", ["/bin/echo", "one", "two words", "$HOME"]))
        assert status.success
        assert out == "one two words $HOME\n"

    async def test_environment_is_exact(self, harness: Harness) -> None:
        status, out = await harness.run(harness.spec("env", ["/bin/env"], environment=["FOO=bar", "X=1=2"]))
        assert status.success
        lines = out.splitlines()
        assert "FOO=bar" in lines and "X=1=2" in lines
        assert not [line for line in lines if line.startswith("PATH=")], "PATH set though not given"
        status, out = await harness.run(harness.spec("envpath", ["/bin/env"], environment=["PATH=/bin"]))
        assert "PATH=/bin" in out.splitlines()

    async def test_hostname_is_the_nodes(self, harness: Harness) -> None:
        import socket

        spec = harness.spec("host", "hostname")
        status, out = await harness.run(spec)
        assert status.success and out.strip() == socket.gethostname(), out

    async def test_capabilities(self, harness: Harness) -> None:
        status, out = await harness.run(harness.spec("caps", "grep CapEff /proc/self/status"))
        assert status.success, out
        eff = _bits(out.split()[-1])
        assert eff != 0
        assert eff & (1 << 21), "CAP_SYS_ADMIN missing"
        assert not eff & (1 << 16), "CAP_SYS_MODULE must be dropped"
        assert not eff & (1 << 22), "CAP_SYS_BOOT must be dropped"

    async def test_seccomp_default_profile(self, harness: Harness) -> None:
        # swapoff is in no rule of containerd's profile, for any capability; the service
        # has CAP_SYS_ADMIN, so without the profile the kernel would look the path up and
        # say ENOENT. With it, seccomp answers EPERM before the kernel sees the call.
        script = (
            "grep '^Seccomp:' /proc/self/status; busybox swapoff /nonexistent-swap 2>&1; "
            "mount -t tmpfs none /tmp && touch /tmp/ok && umount /tmp && echo mount-ok; "
            "unshare -u hostname inner && echo unshare-ok"
        )
        status, out = await harness.run(harness.spec("seccomp", script))
        assert "Seccomp:\t2" in out, out  # 2 = filter mode
        assert "Operation not permitted" in out and "No such file" not in out, out
        assert "mount-ok" in out and "unshare-ok" in out, out  # what CAP_SYS_ADMIN's rules allow

    async def test_root_is_read_only(self, harness: Harness) -> None:
        spec = harness.spec("ro", "touch /x")
        status, out = await harness.run(spec)
        assert not status.success
        assert "Read-only file system" in out
        assert not (harness.rootfs_dir / spec.name / "x").exists()

    async def test_writeable_rootfs(self, harness: Harness) -> None:
        spec = harness.spec("rw", "touch /x && echo done", security={"writeableRootfs": True})
        status, out = await harness.run(spec)
        assert status.success, out
        assert (harness.rootfs_dir / spec.name / "x").exists()

    async def test_bind_mount(self, harness: Harness, tmp_path: Path) -> None:
        host = tmp_path / "host-data"
        host.mkdir()
        (host / "in").write_text("from host\n")
        mount = {"destination": "/data", "type": "bind", "source": str(host), "options": ["rbind", "rw"]}
        spec = harness.spec("bind", "cat /data/in; echo from container > /data/out", mounts=[mount])
        status, out = await harness.run(spec)
        assert status.success, out
        assert out == "from host\n"
        assert (host / "out").read_text() == "from container\n"

    async def test_masked_paths(self, harness: Harness) -> None:
        # /proc/kcore is not in every kernel: use the first default masked file this host has.
        candidates = ["/proc/kcore", "/proc/timer_list", "/proc/keys", "/proc/sched_debug"]
        path = next((p for p in candidates if os.path.exists(p)), None)
        assert path, f"none of {candidates} exists on this host"
        script = f"head -c 16 {path} | wc -c"
        status, out = await harness.run(harness.spec("masked", script))
        assert status.success and out.split() == ["0"], f"{path} not masked: {out!r}"
        cleared = harness.spec("unmasked", script, security={"maskedPaths": []})
        status, out = await harness.run(cleared)
        assert status.success and int(out.split()[0]) > 0, f"{path} still masked with maskedPaths: []"

    async def test_sigterm_reaches_a_trap(self, harness: Harness) -> None:
        from extvisor.protocols import ExitStatus

        spec = harness.spec("trap", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done")
        handle, sink = await harness.launch(spec)
        await sink.wait_for(b"ready\n")
        await handle.signal(signal.SIGTERM)
        assert await asyncio.wait_for(handle.wait(), self.wait_timeout) == ExitStatus(code=42)

    async def test_sigkill_after_ignored_sigterm(self, harness: Harness) -> None:
        from extvisor.protocols import ExitStatus

        handle, _ = await harness.launch(harness.spec("ignore", ["/bin/sleep", "1000"]))
        await handle.signal(signal.SIGTERM)  # pid 1 without a handler ignores it
        wait = asyncio.ensure_future(handle.wait())
        done, _ = await asyncio.wait([wait], timeout=0.3)
        assert not done, "pid 1 died of SIGTERM it has no handler for"
        await handle.signal(signal.SIGKILL)
        assert await asyncio.wait_for(wait, self.wait_timeout) == ExitStatus(signal=9)

    async def test_signal_after_exit_is_harmless(self, harness: Harness) -> None:
        handle, _ = await harness.launch(harness.spec("late", "exit 0"))
        await asyncio.wait_for(handle.wait(), self.wait_timeout)
        await handle.signal(signal.SIGTERM)
        assert (await handle.wait()).success  # wait() may be called again

    async def test_missing_entrypoint(self, harness: Harness) -> None:
        from extvisor.protocols import BackendError

        spec = harness.spec("noexec", ["/bin/does-not-exist"])
        with pytest.raises(BackendError, match=re.escape("/bin/does-not-exist")):
            await harness.launch(spec)
        assert await self._leftovers(spec.id) == []

    async def test_fast_writer_loses_nothing(self, harness: Harness) -> None:
        n = 200_000
        status, out = await harness.run(harness.spec("seq", ["/bin/seq", "1", str(n)]), timeout=30)
        assert status.success
        lines = out.splitlines()
        assert len(lines) == n and lines[0] == "1" and lines[-1] == str(n)
        assert lines == [str(i) for i in range(1, n + 1)]

    async def test_delete_leaves_nothing(self, harness: Harness) -> None:
        spec = harness.spec("del", "sleep 1000 & sleep 1000")
        handle, _ = await harness.launch(spec)
        await handle.delete()
        await handle.delete()  # idempotent
        assert await self._leftovers(spec.id) == []
        exited, _ = await harness.launch(harness.spec("del2", "exit 0"))
        await asyncio.wait_for(exited.wait(), self.wait_timeout)
        await exited.delete()
        assert await self._leftovers(exited.id) == []

    async def test_concurrent_launches(self, harness: Harness) -> None:
        specs = [harness.spec(f"con{i}", f"echo hello {i}") for i in range(2)]
        results = await asyncio.gather(*(harness.run(s) for s in specs))
        assert [r[1] for r in results] == ["hello 0\n", "hello 1\n"]
        assert all(r[0].success for r in results)

    async def test_cleanup_by_a_new_instance(self, harness: Harness, backend_factory: Callable[[], Backend]) -> None:
        spec = harness.spec("orphan", ["/bin/sleep", "1000"])
        kept_spec = harness.spec("kept", ["/bin/sleep", "1000"])
        handle, _ = await harness.launch(spec)
        kept, _ = await harness.launch(kept_spec)
        other = backend_factory()  # as a restarted daemon would, over the same state dir
        await other.open()
        try:
            removed = await other.cleanup(keep=frozenset({kept_spec.id}))
        finally:
            await other.close()
        assert removed == [spec.id]
        await asyncio.wait_for(handle.wait(), self.wait_timeout)
        await handle.delete()
        assert await self._leftovers(spec.id) == []
        wait = asyncio.ensure_future(kept.wait())
        done, _ = await asyncio.wait([wait], timeout=0.1)
        assert not done, "cleanup() removed a container it was told to keep"
        await kept.delete()
        await asyncio.wait_for(wait, self.wait_timeout)

    async def test_exec_runs_inside_the_container(self, harness: Harness) -> None:
        """``Backend.exec`` (health checks): the service's environment, PID namespace and
        cgroup, the exit code, stdout and stderr merged, output capped at 4 KiB."""
        run = getattr(harness.backend, "exec", None)
        if run is None:  # optional: the daemon refuses exec checks for this backend at load
            assert not hasattr(harness.backend, "exec")
            return
        spec = harness.spec("exec", "echo up; sleep 1000", environment=["FOO=bar"])
        handle, sink = await harness.launch(spec)
        await sink.wait_for(b"up\n")
        script = 'echo "foo=$FOO"; echo err >&2; cmp -s /proc/1/cgroup /proc/$$/cgroup && echo same-cgroup; exit 3'
        got = await asyncio.wait_for(run(handle, ["/bin/sh", "-c", script], 10.0), self.wait_timeout)
        assert got.exit_code == 3 and not got.timed_out, got
        text = got.output.decode()
        assert "foo=bar" in text and "err" in text and "same-cgroup" in text, text
        if handle.pid > 0:  # a local runtime: the command's PID namespace is the service's
            inner = await run(handle, ["/bin/sh", "-c", "readlink /proc/$$/ns/pid"], 10.0)
            assert inner.output.decode().strip() == os.readlink(f"/proc/{handle.pid}/ns/pid"), inner
        big = await run(handle, ["/bin/sh", "-c", "yes | head -c 100000"], 10.0)
        assert big.exit_code == 0 and len(big.output) == 4096, (big.exit_code, len(big.output))
        missing = await run(handle, ["/no/such/check"], 10.0)  # said, not raised: the check fails
        assert missing.exit_code not in (0, None) and missing.output, missing
        assert "up\n" == sink.text(), "exec output must not reach the service's log"

    async def test_exec_timeout_kills_the_command(self, harness: Harness) -> None:
        run = getattr(harness.backend, "exec", None)
        if run is None:
            assert not hasattr(harness.backend, "exec")
            return
        spec = harness.spec("exectimeout", "echo up; sleep 1000")
        handle, sink = await harness.launch(spec)
        await sink.wait_for(b"up\n")
        began = asyncio.get_running_loop().time()
        # sh stays the parent of sleep: what the command started goes with it
        got = await asyncio.wait_for(run(handle, ["/bin/sh", "-c", "echo started; sleep 737; echo late"], 0.5),
                                     self.wait_timeout)  # fmt: skip
        assert got.timed_out and got.exit_code is None, got
        assert asyncio.get_running_loop().time() - began < 5.0
        check = await run(handle, ["/bin/sh", "-c", "ps -o args 2>/dev/null || ps"], 10.0)
        assert check.exit_code == 0, check
        assert b"sleep 737" not in check.output, f"the timed-out command still runs: {check.output!r}"

    async def test_adopt_by_a_new_instance(self, harness: Harness, backend_factory: Callable[[], Backend]) -> None:
        """A backend with ``adopt`` hands a new instance the running container, same PID, with
        the output written while nobody read; without it, cleanup() removes the container."""
        spec = harness.spec("adopt", "echo one; read x < /dev/null; sleep 0.5; echo two; sleep 1000")
        request = harness.request(spec)
        first = await harness.backend.launch(request)
        harness.handles.append(first)
        await request.log.wait_for(b"one\n")
        detach = getattr(first, "detach", None)
        if detach is not None:
            detach()  # as a daemon leaving with SIGUSR1 or SIGUSR2
        other = backend_factory()
        await other.open()
        try:
            adopt = getattr(other, "adopt", None)
            sink = CollectingSink()
            again = harness.request(spec, sink)
            handle = await adopt(again) if adopt is not None else None
            if handle is None:
                assert await other.cleanup() == [spec.id]
                return
            assert handle.pid == first.pid
            await sink.wait_for(b"two\n")  # written after the first instance stopped reading
            assert "one" not in sink.text()
            assert await other.cleanup(keep=frozenset({spec.id})) == []
            await handle.signal(signal.SIGKILL)
            assert (await asyncio.wait_for(handle.wait(), self.wait_timeout)).signal == signal.SIGKILL
            await handle.delete()
        finally:
            await other.close()
