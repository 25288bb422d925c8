"""Service logs under a hostile disk and a clumsy operator (issue 17, items 1, 5, 6 and 9)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from extvisor.runtime.logread import tail_start
from extvisor.runtime.logs import ServiceLog


async def collect(log: ServiceLog, tail: int = -1) -> bytes:
    return b"".join([c async for c in log.read(tail=tail)])


# -- item 1: a deleted log file ------------------------------------------------------------


async def test_deleted_log_never_writes_into_a_reused_descriptor(tmp_path: Path) -> None:
    """As found: rm the log, rotation failed after closing the fd, the number was reused."""
    problems: list[str] = []
    x = ServiceLog(tmp_path / "ext-x.log", max_bytes=100, backups=2, on_problem=problems.append)
    x.write(b"x-before\n" * 5)
    (tmp_path / "ext-x.log").unlink()
    other_paths = []
    for i in range(20):  # fill the descriptor numbers a wrongly closed one would free
        x.write(b"x-after-%d\n" % i * 3)
        p = tmp_path / f"other-{i}.log"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
        other_paths.append((p, fd))
    for p, fd in other_paths:
        os.close(fd)
        assert b"x-" not in p.read_bytes(), p
    y = ServiceLog(tmp_path / "ext-y.log")
    x.write(b"x-last\n")
    y.write(b"y-line\n")
    assert (tmp_path / "ext-y.log").read_bytes() == b"y-line\n"
    assert (tmp_path / "ext-x.log").exists()
    assert b"x-last\n" in await collect(x)
    assert any("was deleted" in p and "recreated" in p for p in problems), problems
    x.close()
    y.close()


async def test_deleted_log_is_recreated_and_followers_switch_to_it(tmp_path: Path) -> None:
    problems: list[str] = []
    x = ServiceLog(tmp_path / "ext-x.log", on_problem=problems.append)
    x.write(b"one\n")
    got: list[bytes] = []

    async def follow() -> None:
        async for chunk in x.read(tail=-1, follow=True):
            got.append(chunk)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    (tmp_path / "ext-x.log").unlink()
    x.write(b"two\n")
    await asyncio.sleep(0.05)
    x.write(b"three\n")
    await asyncio.sleep(0.05)
    task.cancel()
    assert b"".join(got) == b"one\ntwo\nthree\n"
    assert (tmp_path / "ext-x.log").read_bytes() == b"two\nthree\n"
    assert problems == [f"Log file {tmp_path / 'ext-x.log'} was deleted; its 4 bytes are lost; recreated"]


async def test_log_that_cannot_be_created_fails_at_launch_not_at_load(tmp_path: Path) -> None:
    problems: list[str] = []
    log = ServiceLog(tmp_path / ("ext-" + "n" * 300 + ".log"), on_problem=problems.append)
    assert problems and "File name too long" in problems[0]
    with pytest.raises(OSError, match="error creating log: File name too long"):
        log.ensure_open()
    log.write(b"dropped\n")  # no crash, counted
    assert log.dropped == 8


# -- item 5: a full disk ---------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs (needs root): {r.stderr}"
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


async def test_full_disk_is_reported_and_rotation_works_when_space_returns(small_fs: Path) -> None:
    problems: list[str] = []
    log = ServiceLog(small_fs / "ext-x.log", max_bytes=40000, backups=1, on_problem=problems.append)
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # an unrelated file takes the rest of the disk
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    os.close(fd)
    for i in range(100):
        log.write(b"line %05d\n" % i)
    assert len(problems) == 1 and "No space left on device" in problems[0], problems
    assert log.dropped > 0
    filler.unlink()  # space comes back
    for i in range(100, 6000):
        log.write(b"line %05d\n" % i)
    assert any("resumed" in p and "dropped" in p for p in problems), problems
    assert (small_fs / "ext-x.log.1").exists(), "the log rotated once writes worked again"
    assert os.path.getsize(small_fs / "ext-x.log") < 40000
    data = await collect(log, tail=3)
    assert data == b"line 05997\nline 05998\nline 05999\n"
    log.close()


async def test_logs_with_nothing_kept_says_so(tmp_path: Path) -> None:
    log = ServiceLog(tmp_path / "ext-x.log")
    log.write(b"a\n")
    (tmp_path / "ext-x.log").unlink()
    assert not log.exists()
    assert await collect(log) == b""  # and no traceback: the API answers 404 before this


# -- item 6: tails from the end ----------------------------------------------------------------


def test_tail_start_reads_only_the_end(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    with open(big, "wb") as f:
        for i in range(400_000):  # ~ 30 MB
            f.write(b"%070d\n" % i)
    reads: list[int] = []
    real = os.pread

    def counting(fd: int, n: int, off: int) -> bytes:
        reads.append(n)
        return real(fd, n, off)

    with open(big, "rb") as f:
        os.pread = counting  # type: ignore[assignment]
        try:
            idx, off = tail_start([f], 10)
        finally:
            os.pread = real  # type: ignore[assignment]
        f.seek(off)
        assert f.read() == b"".join(b"%070d\n" % i for i in range(399_990, 400_000))
    assert sum(reads) <= 65536


# -- issue 24 item 14: tails of more lines than the log has ----------------------------------


def test_a_tail_longer_than_the_log_reads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tail=1e9 from twenty clients had each thread step through every line of 30 MB in
    Python, holding the GIL the event loop needed; now it reads no byte to know."""
    paths = [tmp_path / f"f{i}" for i in range(3)]
    for i, p in enumerate(paths):
        p.write_bytes(b"".join(b"%099d\n" % (i * 1000 + n) for n in range(1000)))
    reads: list[int] = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: reads.append(n) or real(fd, n, off))
    files = [open(p, "rb") for p in paths]
    try:
        assert tail_start(files, 10**9) == (0, 0)
        assert tail_start(files, 300_000) == (0, 0)  # as many as the bytes: the whole log too
        assert reads == []
        assert tail_start(files, 2999) == (0, 100)  # all lines but one: found by counting blocks
    finally:
        for f in files:
            f.close()


@pytest.mark.parametrize("block", [5, 64, 65536])
def test_every_tail_is_exact_across_files_and_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    import random

    from extvisor.runtime import logread

    monkeypatch.setattr(logread, "BLOCK", block)
    rng = random.Random(block)
    text = b"".join(b"%d%s\n" % (i, b"z" * rng.choice([0, 0, 1, 7, 40, 200])) if i % 9 else b"\n" for i in range(400))
    text += b"no newline at the end"
    cuts = sorted(rng.sample(range(1, len(text)), 3))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    paths = []
    for i, part in enumerate(parts):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(part)
    lines = text.splitlines(keepends=True)
    files = [open(p, "rb") for p in paths]
    try:
        for n in [*range(1, len(lines) + 3), len(text) - 1, len(text), 10**9]:
            idx, off = tail_start(files, n)
            got = parts[idx][off:] + b"".join(parts[idx + 1 :])
            assert got == b"".join(lines[-n:]), n
    finally:
        for f in files:
            f.close()


async def test_a_huge_tail_of_a_rotated_log_is_complete_and_in_order(tmp_path: Path) -> None:
    log = ServiceLog(tmp_path / "ext-x.log", max_bytes=100_000, backups=3)
    for i in range(40000):
        log.write(b"line %06d\n" % i)
    kept = b"".join(p.read_bytes() for p in log.files())
    assert len(log.files()) == 4
    got = await asyncio.gather(*(collect(log, tail=10**9) for _ in range(5)))
    assert got == [kept] * 5
    assert kept.endswith(b"line 039999\n")
    numbers = [int(x.split()[1]) for x in kept.splitlines()]
    assert numbers == list(range(numbers[0], 40000)) and len(numbers) > 25000
    log.close()


def test_tail_start_across_files_and_edge_cases(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1\n2\n3")
    b.write_bytes(b"x\n4\n")
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert tail_start([fa, fb], 1) == (1, 2)
        assert tail_start([fa, fb], 2) == (0, 4)  # "3x" spans the files
        assert tail_start([fa, fb], 3) == (0, 2)
        assert tail_start([fa, fb], 100) == (0, 0)
        assert tail_start([fa, fb], -1) == (0, 0)
        assert tail_start([fa, fb], 0) == (1, 4)


async def test_huge_tails_do_not_block_the_loop(tmp_path: Path) -> None:
    log = ServiceLog(tmp_path / "ext-x.log", max_bytes=1 << 30)
    line = b"y" * 99 + b"\n"
    for _ in range(300):
        log.write(line * 1000)  # 30 MB
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            worst = max(worst, time.monotonic() - t - 0.01)

    tick = asyncio.create_task(ticker())
    sizes = await asyncio.gather(*(_count(log, 10**9) for _ in range(20)))
    stop = True
    await tick
    assert sizes == [30_000_000] * 20
    assert worst < 2.0, f"the event loop stalled {worst:.2f}s"  # the old whole-file scan: over 10 s
    log.close()


async def _count(log: ServiceLog, tail: int) -> int:
    n = 0
    async for chunk in log.read(tail=tail):
        n += len(chunk)
    return n


# -- item 9: a follower behind rotation ----------------------------------------------------------


async def test_follower_behind_rotation_gets_a_marker(tmp_path: Path) -> None:
    log = ServiceLog(tmp_path / "ext-x.log", max_bytes=1000, backups=1)
    log.write(b"first\n")
    reader = log.read(tail=-1, follow=True)
    assert await reader.__anext__() == b"first\n"
    for i in range(500):  # many rotations while the reader is not reading
        log.write(b"%09d\n" % i)
    rest = b""
    while b"000000499\n" not in rest:
        rest += await asyncio.wait_for(reader.__anext__(), 5)
    await reader.aclose()
    assert b"skipped: this reader fell behind log rotation" in rest
    head, marker, tail = rest.partition(b"[extvisor: ")
    skipped_lines = int(tail.split(b" ", 1)[0])
    got = [int(x) for x in (head + tail.split(b"]\n", 1)[1]).split() if x.isdigit()]
    # what was not delivered is exactly what the marker counts
    assert got == sorted(got) and got[-1] == 499
    assert len(set(got)) + skipped_lines == 500, (len(got), skipped_lines)


async def test_follower_reads_every_line_across_rotations_when_kept(tmp_path: Path) -> None:
    log = ServiceLog(tmp_path / "ext-x.log", max_bytes=1000, backups=3)
    got: list[bytes] = []

    async def follow() -> None:
        async for chunk in log.read(tail=-1, follow=True):
            got.append(chunk)

    task = asyncio.create_task(follow())
    for i in range(2000):
        log.write(b"%09d\n" % i)
        if i % 50 == 0:
            await asyncio.sleep(0.001)  # the reader lags, but never more than the kept files
    deadline = time.monotonic() + 5
    while not b"".join(got).endswith(b"000001999\n") and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    task.cancel()
    assert b"".join(got) == b"".join(b"%09d\n" % i for i in range(2000))


async def test_a_reader_resumes_where_it_stopped_across_rotations(tmp_path: Path) -> None:
    """What a follower resuming after a daemon restart relies on: locate() says where a read
    starts; that position plus the bytes read, given to a new ServiceLog on the same files (a
    new daemon), goes on exactly there, even when files were rotated meanwhile."""
    from extvisor.runtime.logs import ServiceLog as Log

    path = tmp_path / "ext-r.log"
    first = Log(path, max_bytes=200, backups=20)
    first.write(b"".join(b"line %03d\n" % i for i in range(10)))
    start = await first.locate(tail=3)
    assert start is not None
    got = b""
    async for chunk in first.read(since=start):
        got += chunk
    assert got == b"line 007\nline 008\nline 009\n"
    first.write(b"".join(b"line %03d\n" % i for i in range(10, 80)))  # rotates several times
    first.close()
    second = Log(path, max_bytes=200, backups=20)  # the next daemon
    rest = b""
    async for chunk in second.read(since=(start[0], start[1] + len(got))):
        rest += chunk
    assert rest == b"".join(b"line %03d\n" % i for i in range(10, 80))
    gone = b""
    async for chunk in second.read(since=(1, 0)):  # a file no longer kept: said, then the oldest kept
        gone += chunk
        break
    assert gone.startswith(b"[extvisor: the log was rotated past where this reader stopped")
    second.close()
