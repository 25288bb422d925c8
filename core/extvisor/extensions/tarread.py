"""Reading tar streams with Go's ``archive/tar`` bounds.

Python's ``tarfile`` reads a PAX header, a GNU long name and an old GNU sparse map whole, however
large the header says it is: a 1.8 MB gzip layer holding one 400 MB PAX header took 1.3 GB.
Go's reader (containerd, umoci, skopeo) refuses special headers over 1 MiB; so does this one,
before a byte of them is read. Headers in a row before one entry count together (tarfile keeps
each on the stack while it reads the next), and global headers, kept for the whole stream,
count together too. Sparse files, whose maps tarfile also reads unbounded, are refused.
"""

from __future__ import annotations

import tarfile
from typing import IO

MAX_SPECIAL = 1 << 20  #: Go's archive/tar maxSpecialFileSize
SPECIAL_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class HeaderTooLarge(tarfile.TarError):
    """A special header (PAX, GNU long name) larger than Go's archive/tar reads; not a HeaderError,
    which tarfile would take for the end of the archive."""


class _BoundedInfo(tarfile.TarInfo):
    """tarfile's TarInfo, refusing special headers before reading them (tarfile reads them whole)."""

    def _proc_member(self, tar):  # type: ignore[no-untyped-def]
        if self.type == tarfile.GNUTYPE_SPARSE:  # its map blocks are read with no bound either
            raise HeaderTooLarge(f"an old GNU sparse entry at offset {self.offset}: not supported (write PAX sparse files)")
        if self.type not in SPECIAL_TYPES:
            tar._extvisor_special = 0  # type: ignore[attr-defined]
            return super()._proc_member(tar)
        what = {tarfile.XGLTYPE: "a PAX global header", tarfile.GNUTYPE_LONGNAME: "a GNU long name",
                tarfile.GNUTYPE_LONGLINK: "a GNU long link name"}.get(self.type, "a PAX header")  # fmt: skip
        if self.size > MAX_SPECIAL:
            raise HeaderTooLarge(f"{what} of {self.size} bytes at offset {self.offset}: "
                                 f"special headers over {MAX_SPECIAL} bytes are refused (as Go's archive/tar does)")  # fmt: skip
        chain = getattr(tar, "_extvisor_special", 0) + self.size
        if chain > MAX_SPECIAL:
            raise HeaderTooLarge(f"special headers of {chain} bytes in a row before one entry (at offset {self.offset}): "
                                 f"more than {MAX_SPECIAL} bytes are refused")  # fmt: skip
        tar._extvisor_special = chain  # type: ignore[attr-defined]
        if self.type == tarfile.XGLTYPE:  # global headers are kept for the whole stream: bound them all
            total = getattr(tar, "_extvisor_global", 0) + self.size
            if total > MAX_SPECIAL:
                raise HeaderTooLarge(f"PAX global headers of {total} bytes in all (at offset {self.offset}): "
                                     f"more than {MAX_SPECIAL} bytes are refused")  # fmt: skip
            tar._extvisor_global = total  # type: ignore[attr-defined]
        return super()._proc_member(tar)

    def _proc_gnusparse_10(self, next, pax_headers, tar):  # type: ignore[no-untyped-def]
        # the map of a GNU 1.0 sparse file is read from the entry's data with no bound
        raise HeaderTooLarge(f"entry {next.name!r}: GNU 1.0 sparse files are not supported")


def open_bounded(stream: IO[bytes]) -> tarfile.TarFile:
    """A tar stream (``r|``) whose special headers are bounded."""
    return tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedInfo)
