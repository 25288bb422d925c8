"""Issue 24, item 7: a malformed service record counts as a missing one, with a warning.

Before: ``services/<id>/service.json`` holding valid JSON of the wrong shape (``[]``,
``{"restarts": "abc"}``, ``{"events": 5}``, ``{"restarts": 1e999}``) made the daemon exit
with a traceback at start, leaving every container an earlier daemon ran unsupervised.
"""

from __future__ import annotations

import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from daemon_process import DaemonProcess

from extvisor.runtime.adoption import record_path
from extvisor.testing import make_busybox_rootfs

pytestmark = pytest.mark.runc

MALFORMED = {
    "list": "[]",
    "text": '{"restarts": "abc"}',
    "events": '{"events": 5}',
    "huge": '{"restarts": 1e999}',
    "event": '{"events": [{"service": "ext-event", "state": "Dreaming", "msg": "x", "ts": 1}]}',
}


def _containers(d: DaemonProcess) -> list[str]:
    root = d.state_dir / "runc" / "runc"
    out = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True, check=True)
    return sorted(out.stdout.split())


def test_item7_malformed_records_are_taken_as_missing(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "d")
    names = ["good", *MALFORMED]
    for name in names:
        make_busybox_rootfs(d.rootfs_dir / name)
        (d.config_dir / f"{name}.yaml").write_text(textwrap.dedent(f"""\
            name: {name}
            container: {{entrypoint: /bin/sh, args: ["-c", "sleep 1000"]}}
            restart: always
        """))  # fmt: skip
    ids = sorted(f"ext-{n}" for n in names)
    d.start()
    try:
        for sid in ids:
            d.wait_state(sid, "Running")
        d.stop(signal.SIGKILL)  # every container outlives its daemon: the next one must take them over
        assert _containers(d) == ids
        for name, text in MALFORMED.items():
            record_path(d.state_dir, f"ext-{name}").write_text(text)
        d.socket.unlink(missing_ok=True)
        d.start()
        for sid in ids:
            info = d.wait_state(sid, "Running")
            msgs = [e["msg"] for e in info["events"]]
            if sid == "ext-good":  # a sound record is carried over (the first run's events) and its container adopted
                assert msgs.count("Starting service") == 1 and msgs[-1].startswith("Adopted task ext-good"), msgs
            else:  # as if there were no record: its history starts here, and the old container is replaced
                assert msgs.count("Starting service") == 1, msgs
                assert msgs[0] == "Replacing the container an earlier daemon left running: it was not recorded as running"
        assert _containers(d) == ids  # one container each, none left unsupervised
        log = d.log()
        assert "Traceback" not in log
        for name in MALFORMED:
            path = record_path(d.state_dir, f"ext-{name}")
            assert f"{path}: malformed record, taken as missing" in log, log[-3000:]
        assert f"{record_path(d.state_dir, 'ext-text')}: malformed record, taken as missing: restarts: " in log
        assert f"{record_path(d.state_dir, 'ext-events')}: malformed record, taken as missing: events: " in log
        assert f"{record_path(d.state_dir, 'ext-event')}: malformed record, taken as missing: events.0.state: " in log
        assert "ext-good/service.json" not in log
    finally:
        if d.proc is not None and d.proc.poll() is None:
            assert d.stop() == 0, d.log()[-3000:]
    assert _containers(d) == []
