"""Finding where the last N lines of a log start, reading backwards from the end.

The cost depends on N (the bytes those lines hold), not on the size of the files: a
``--tail 10`` of a 30 MB log reads one block, and a tail of more lines than the log has
bytes reads nothing. Lines are counted a block at a time in C; Python steps line by line
only in the block where the tail starts, so a thread running this seldom holds the GIL
that the event loop needs. Callers run it in a thread.
"""

from __future__ import annotations

import os
from typing import BinaryIO

BLOCK = 65536


def tail_start(files: list[BinaryIO], lines: int) -> tuple[int, int]:
    """(index into *files*, byte offset) where the last *lines* lines of their concatenation start.

    *files* are open, oldest first. A final line without a newline counts as a line; a
    negative *lines* means from the beginning.
    """
    if lines < 0 or not files:
        return 0, 0
    sizes = [os.fstat(f.fileno()).st_size for f in files]
    if lines == 0:
        return len(files) - 1, sizes[-1]
    if lines >= sum(sizes):  # a line takes a byte at least: the whole log
        return 0, 0
    need = lines
    skip_final = True  # a newline that ends the log closes the last line, it does not start one
    for idx in range(len(files) - 1, -1, -1):
        fd = files[idx].fileno()
        pos = sizes[idx]
        while pos > 0:
            start = max(0, pos - BLOCK)
            block = os.pread(fd, pos - start, start)
            if skip_final:
                if block.endswith(b"\n"):
                    block = block[:-1]
                skip_final = False
            end = len(block)
            count = block.count(b"\n")
            if count < need:  # the tail starts further back
                need -= count
                pos = start
                continue
            while True:
                nl = block.rfind(b"\n", 0, end)
                if nl < 0:
                    break
                need -= 1
                if need == 0:
                    return idx, start + nl + 1
                end = nl
            pos = start
    return 0, 0
