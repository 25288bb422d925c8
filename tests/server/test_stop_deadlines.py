"""Issue 17, item 2: a runtime that fails to kill must not make stop or shutdown hang.

As found: with runc failing while a service ran, ``service stop`` hung for over ten
minutes, stayed ``Stopping`` after runc came back, and SIGTERM no longer ended the daemon.
Here runc is a wrapper that fails (or hangs) while a flag file exists.
"""

from __future__ import annotations

import shutil
import signal
import stat
import textwrap
import time
from pathlib import Path

import pytest
from daemon_process import DaemonProcess

from extvisor.oci.cgroups import remove_cgroup_dirs
from extvisor.protocols import instance_name
from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc

# Ignores SIGTERM: only SIGKILL (or the fallback) ends it.
STUBBORN = "trap '' TERM; echo up; while :; do sleep 0.1; done"


def broken_runc(tmp_path: Path, how: str) -> tuple[Path, Path]:
    real = shutil.which("runc")
    assert real, "runc is needed"
    flag = tmp_path / "runc-broken"
    wrapper = tmp_path / "runc-wrapper"
    action = 'echo "runc is broken" >&2; exit 1' if how == "fails" else "exec sleep 3600"
    wrapper.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        # only kill and delete break, as when runc's state or the kernel misbehaves
        case " $* " in *" kill "*|*" delete "*) [ -e {flag} ] && {{ {action}; }} ;; esac
        exec {real} "$@"
    """))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, flag


@pytest.mark.parametrize("how", ["fails", "hangs"])
def test_stop_has_a_deadline_and_reports_failed(tmp_path: Path, how: str) -> None:
    wrapper, flag = broken_runc(tmp_path, how)
    d = DaemonProcess(tmp_path / "d", extra=["--runc-binary", str(wrapper), "--stop-timeout", "1",
                                             "--shutdown-timeout", "20"])  # fmt: skip
    make_busybox_rootfs(d.rootfs_dir / "stubborn")
    (d.config_dir / "stubborn.yaml").write_text(textwrap.dedent(f"""\
        name: stubborn
        container: {{entrypoint: /bin/sh, args: ["-c", "{STUBBORN}"]}}
        restart: always
    """))  # fmt: skip
    d.start()
    try:
        pid = d.wait_state("ext-stubborn", "Running")["pid"]
        flag.touch()
        began = time.monotonic()
        r = d.cli("service", "ext-stubborn", "stop", check=False)
        took = time.monotonic() - began
        assert took < 30, f"stop took {took:.1f}s"
        info = d.wait_state("ext-stubborn", "Failed", timeout=5)
        last = info["events"][-1]["msg"]
        assert "Failed to stop through runc" in last, info["events"][-4:]
        assert ("runc is broken" in last) if how == "fails" else ("did not answer" in last), last
        assert "killing it directly" in info["events"][-2]["msg"]
        assert not Path(f"/proc/{pid}").exists() or "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
        assert r.returncode == 0, r.stderr

        # runc comes back: the service starts again, the stale container is cleared
        flag.unlink()
        d.cli("service", "ext-stubborn", "start")
        d.wait_state("ext-stubborn", "Running", timeout=20)

        # runc breaks again: SIGTERM still ends the daemon, within its deadline
        flag.touch()
        began = time.monotonic()
        rc = d.stop(signal.SIGTERM, timeout=60)
        assert time.monotonic() - began < 30
        assert rc == 0, d.log()[-2000:]
    finally:
        if flag.exists():
            flag.unlink()
        if d.proc is not None and d.proc.poll() is None:
            d.stop(signal.SIGKILL)
        _clean(d)


def _clean(d: DaemonProcess) -> None:
    """Remove what a broken runc could not (the test broke it on purpose)."""
    import subprocess

    root = d.state_dir / "runc" / "runc"
    if root.exists():
        out = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True).stdout
        for cid in out.split():
            subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True)
    parent = f"/extvisor/{instance_name(d.state_dir)}"  # this daemon's only, never another's
    remove_cgroup_dirs(f"{parent}/ext-stubborn")
    remove_cgroup_dirs(parent)
