"""Reading conmon's k8s-file log on from a recorded position (the podman backend's adoption).

No podman needed: the records are written here as conmon writes them. A reader stopped at
any point of the file and a second one resumed from its position file hand out exactly what
one reader reading the whole file would: no line missed, none repeated, a line of one stream
never cut by the other.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from extvisor.testing import CollectingSink
from extvisor_podman.logfile import MAX_PARTIAL, POS_FILE, Decoder, FileTail, load_position

CID = "c" * 64


def records(seed: int, count: int = 400) -> list[bytes]:
    """Records of both streams; lines split into P pieces, one longer than MAX_PARTIAL."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        stream = rnd.choice([b"stdout", b"stderr"])
        pieces = rnd.choice([1, 1, 1, 2, 3])
        text = b"%s line %d with spaces" % (stream, i)
        if i == count // 2:
            text = b"x" * (MAX_PARTIAL + 100)
            pieces = 5
        cut = sorted(rnd.sample(range(1, len(text)), pieces - 1))
        for n, (a, b) in enumerate(zip([0, *cut], [*cut, len(text)])):
            tag = b"F" if n == pieces - 1 else b"P"
            out.append(b"2026-12-02T18:07:19.952508667+00:00 %s %s %s\n" % (stream, tag, text[a:b]))
    return out


def whole(data: bytes) -> bytes:
    decoder = Decoder()
    out, used = decoder.decode(data, 0)
    assert used == len(data)
    return out + decoder.flush()


async def settle(sink: CollectingSink) -> None:
    """Let the tail read what is in its file now (it reads in the event loop)."""
    size = -1
    while size != len(sink.data):
        size = len(sink.data)
        await asyncio.sleep(0.02)


async def test_every_stop_point_resumes_exactly(tmp_path: Path) -> None:
    recs = records(1)
    data = b"".join(recs)
    expected = whole(data)
    assert expected.count(b"\n") == 400 and b"x" * (MAX_PARTIAL + 100) + b"\n" in expected
    rnd = random.Random(7)
    # record boundaries, and points inside a record (conmon half way through a write)
    cuts = sorted({0, len(data), *rnd.sample(range(len(data)), 40), *(sum(map(len, recs[:k])) for k in range(0, 400, 13))})
    for cut in cuts:
        state = tmp_path / f"state-{cut}"
        log = tmp_path / f"ctr-{cut}" / "ctr.log"
        log.parent.mkdir()
        log.write_bytes(data[:cut])
        first = CollectingSink()
        tail = FileTail(first, "t", log, state, CID)
        await settle(first)
        tail.detach()  # the daemon leaves (SIGUSR1, SIGUSR2) or is killed after its last write
        with open(log, "ab") as f:
            f.write(data[cut:])
        second = CollectingSink()
        again = FileTail(second, "t", log, state, CID, resume=load_position(state))
        await again.drained()
        assert bytes(first.data) + bytes(second.data) == expected, f"stopped at {cut}"


async def test_follows_a_growing_file_and_a_replaced_one(tmp_path: Path) -> None:
    """Written while read (inotify wakes the reader); conmon replacing the file at log_size_max."""
    log = tmp_path / "ctr" / "ctr.log"
    log.parent.mkdir()
    log.write_bytes(b"")
    sink = CollectingSink()
    tail = FileTail(sink, "t", log, tmp_path / "state", CID)
    with open(log, "ab", buffering=0) as f:
        f.write(b"2026-12-02T18:07:19.952508667+00:00 stdout F one\n2026-12-02T18:07:19.9+00:00 stdout P tw")
        await sink.wait_for(b"one\n", timeout=2)
        f.write(b"o\n")  # the rest of a record conmon was writing
        f.write(b"2026-12-02T18:07:19.9+00:00 stdout F  and a half\n")
        await sink.wait_for(b"two and a half\n", timeout=2)
    fresh = log.with_name("ctr.log.tmp")
    fresh.write_bytes(b"2026-12-02T18:07:19.9+00:00 stderr F three\n")
    fresh.replace(log)
    await sink.wait_for(b"three\n", timeout=2)
    await tail.drained()
    assert sink.text() == "one\ntwo and a half\nthree\n"
    assert load_position(tmp_path / "state").ino == log.stat().st_ino


async def test_replaced_while_nobody_read_says_what_was_lost(tmp_path: Path) -> None:
    log = tmp_path / "ctr" / "ctr.log"
    log.parent.mkdir()
    log.write_bytes(b"2026-12-02T18:07:19.9+00:00 stdout F one\n")
    first = CollectingSink()
    FileTail(first, "t", log, tmp_path / "state", CID).detach()
    position = load_position(tmp_path / "state")
    fresh = log.with_name("ctr.log.tmp")  # as conmon replaces it: a new file renamed over the old
    fresh.write_bytes(b"2026-12-02T18:07:19.9+00:00 stdout F two\n")
    fresh.replace(log)
    second = CollectingSink()
    await FileTail(second, "t", log, tmp_path / "state", CID, resume=position).drained()
    assert second.text() == "[extvisor: output lost while no daemon read it: conmon replaced its log file]\ntwo\n"
    assert (tmp_path / "state" / POS_FILE).stat().st_size > 0
