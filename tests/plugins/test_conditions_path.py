"""``path:``: waits for a path, woken by inotify, never polling; errors other than ENOENT fail."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from extvisor_conditions import path as pathmod
from extvisor_conditions.path import PathCondition


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def pending(task: asyncio.Task, delay: float = 0.1) -> bool:
    await asyncio.sleep(delay)
    return not task.done()


@pytest.fixture(autouse=True)
def no_safety_recheck(monkeypatch):
    # Prove inotify does the work: the rare safety re-check must not be what wakes us.
    monkeypatch.setattr(pathmod, "SAFETY_RECHECK", 3600.0)


def test_describe():
    assert PathCondition("/run/x").describe() == 'file "/run/x" to exist'


async def test_existing_path_returns_at_once(tmp_path):
    await asyncio.wait_for(PathCondition(str(tmp_path)).wait(), 0.5)


async def test_file_created_later(tmp_path):
    target = tmp_path / "ready"
    task = asyncio.create_task(PathCondition(str(target)).wait())
    assert await pending(task)
    target.write_text("x")
    await asyncio.wait_for(task, 1)


async def test_nested_directories_appear_later(tmp_path):
    target = tmp_path / "a" / "b" / "c" / "ready"
    task = asyncio.create_task(PathCondition(str(target)).wait())
    assert await pending(task)
    (tmp_path / "a").mkdir()
    assert await pending(task, 0.05)
    (tmp_path / "a" / "b").mkdir()
    assert await pending(task, 0.05)
    (tmp_path / "a" / "b" / "c").mkdir()
    assert await pending(task, 0.05)
    target.mkdir()  # a directory counts, as in Talos (os.Stat)
    await asyncio.wait_for(task, 1)


async def test_whole_tree_created_at_once(tmp_path):
    # makedirs races the watch moving down; the re-check after arming must catch it
    target = tmp_path / "x" / "y" / "z"
    task = asyncio.create_task(PathCondition(str(target)).wait())
    assert await pending(task, 0.05)
    os.makedirs(target)
    await asyncio.wait_for(task, 1)


async def test_socket_created_later(tmp_path):
    target = tmp_path / "run" / "api.sock"
    (tmp_path / "run").mkdir()
    task = asyncio.create_task(PathCondition(str(target)).wait())
    assert await pending(task)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(target))
        await asyncio.wait_for(task, 1)


async def test_renamed_into_place(tmp_path):
    target = tmp_path / "ready"
    task = asyncio.create_task(PathCondition(str(target)).wait())
    assert await pending(task)
    (tmp_path / "tmp").write_text("x")
    os.rename(tmp_path / "tmp", target)
    await asyncio.wait_for(task, 1)


async def test_watched_ancestor_removed_and_recreated(tmp_path):
    (tmp_path / "a").mkdir()
    target = tmp_path / "a" / "ready"
    task = asyncio.create_task(PathCondition(str(target)).wait())
    assert await pending(task)
    (tmp_path / "a").rmdir()  # the watched dir goes away: the watch moves up
    assert await pending(task, 0.05)
    (tmp_path / "a").mkdir()
    target.write_text("x")
    await asyncio.wait_for(task, 1)


async def test_does_not_poll(tmp_path, monkeypatch):
    calls = []
    real = pathmod.exists

    def counting(p):
        calls.append(p)
        return real(p)

    monkeypatch.setattr(pathmod, "exists", counting)
    task = asyncio.create_task(PathCondition(str(tmp_path / "never")).wait())
    await asyncio.sleep(0.5)
    assert len(calls) <= 2, calls  # the first check and the one after arming, nothing more
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancel_closes_the_inotify_fd(tmp_path):
    before = open_fds()
    tasks = [asyncio.create_task(PathCondition(str(tmp_path / f"n{i}")).wait()) for i in range(5)]
    await asyncio.sleep(0.05)
    assert len(open_fds() - before) >= 5
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert open_fds() - before == set()


async def test_fd_closed_after_success(tmp_path):
    before = open_fds()
    task = asyncio.create_task(PathCondition(str(tmp_path / "f")).wait())
    await asyncio.sleep(0.05)
    (tmp_path / "f").touch()
    await asyncio.wait_for(task, 1)
    assert open_fds() - before == set()


async def test_stat_error_other_than_enoent_raises():
    # /etc/hostname is a file, so anything under it is ENOTDIR, not "does not exist"
    assert os.path.isfile("/etc/hostname")
    with pytest.raises(NotADirectoryError):
        await asyncio.wait_for(PathCondition("/etc/hostname/x").wait(), 1)
    with pytest.raises(NotADirectoryError):
        await asyncio.wait_for(PathCondition("/etc/hostname/x/y/z").wait(), 1)


async def test_parent_turning_into_a_file_raises(tmp_path):
    target = tmp_path / "a" / "ready"
    task = asyncio.create_task(PathCondition(str(target)).wait())
    assert await pending(task)
    (tmp_path / "a").write_text("not a dir")
    with pytest.raises(NotADirectoryError):
        await asyncio.wait_for(task, 1)


def _unprivileged(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop root's file-permission override"
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]


EACCES_CHILD = """
import asyncio, sys
from extvisor_conditions.path import PathCondition
try:
    asyncio.run(asyncio.wait_for(PathCondition(sys.argv[1]).wait(), 2))
except Exception as exc:
    print(type(exc).__name__, exc.errno)
"""


def test_eacces_raises(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    # root ignores directory modes: the child runs without the capabilities that let it
    cmd = _unprivileged([sys.executable, "-c", EACCES_CHILD, str(locked / "x")])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert out.stdout.split() == ["PermissionError", str(errno.EACCES)], out.stderr


SEARCH_ONLY_CHILD = """
import asyncio, sys
from extvisor_conditions.path import PathCondition
asyncio.run(asyncio.wait_for(PathCondition(sys.argv[1]).wait(), 10))
print("ok", flush=True)
"""


def test_search_only_directory_falls_back_to_polling(tmp_path):
    # inotify needs read permission on the directory; stat only needs search (x)
    box = tmp_path / "box"
    box.mkdir(mode=0o311)
    os.chmod(box, 0o311)
    child = subprocess.Popen(_unprivileged([sys.executable, "-c", SEARCH_ONLY_CHILD, str(box / "x")]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)
        assert child.poll() is None, child.communicate()
        (box / "x").touch()
        out, err = child.communicate(timeout=5)
        assert out.strip() == "ok", err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
