"""What the runc backend reads and removes on the host: exit statuses, runc's own log, pipes,
cgroup directories."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from extvisor import ExitStatus

log = logging.getLogger("extvisor.runc")

READ_SIZE = 1 << 18


def _decode(info: os.waitid_result) -> ExitStatus:
    if info.si_code == os.CLD_EXITED:
        return ExitStatus(code=info.si_status)
    return ExitStatus(signal=info.si_status)  # CLD_KILLED or CLD_DUMPED


def _runc_error(log_file: Path) -> str:
    """The last error runc wrote to its ``--log-format json`` log."""
    message = ""
    try:
        for line in log_file.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ("error", "fatal") and entry.get("msg"):
                message = entry["msg"]
    except OSError:
        pass
    return message


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _cgroups_path(oci: dict[str, Any]) -> str:
    return str((oci.get("linux") or {}).get("cgroupsPath") or "")
