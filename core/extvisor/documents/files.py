"""Reading the files of a service or config directory: regular files of bounded size only."""

from __future__ import annotations

import os
import stat
from pathlib import Path


from extvisor.documents.findings import Finding


MAX_FILE_BYTES = 1024 * 1024  #: a service or config file larger than this is skipped (docs/architecture.md)
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}  # fmt: skip


def read_file(path: Path) -> tuple[bytes | None, Finding | None]:
    """The file's bytes, or why it was skipped: only regular files up to MAX_FILE_BYTES are read.

    Opened non-blocking and checked before reading: a FIFO would hang the daemon, a device
    (``/dev/zero``) never ends, a huge file costs memory for nothing.
    """
    def skipped(why: str) -> tuple[None, Finding]:
        return None, Finding(str(path), 0, 0, "error", "", f"skipped: {why}")

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        return None, Finding(str(path), 0, 0, "error", "", f"cannot read: {exc.strerror or exc}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return skipped(f"{_KINDS.get(stat.S_IFMT(st.st_mode), 'not a regular file')}, not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            return skipped(f"{st.st_size} bytes, larger than the {MAX_FILE_BYTES} byte limit")
        chunks, total = [], 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_FILE_BYTES:  # grew while we read
                return skipped(f"larger than the {MAX_FILE_BYTES} byte limit")
        return b"".join(chunks), None
    except OSError as exc:
        return None, Finding(str(path), 0, 0, "error", "", f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)


def yaml_files(directory: Path) -> list[Path]:
    """The files Talos reads in a directory: names ending exactly in ``.yaml``, in name order."""
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return []
    return [directory / n for n in entries if n.endswith(".yaml") and not (directory / n).is_dir()]
