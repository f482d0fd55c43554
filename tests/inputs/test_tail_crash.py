"""kill -9 of a real kawa tail process while a renamed (rotated) file still has unread lines: the
next start finishes it from `<pos_file>.kawa-rotated`, every line comes out exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

# The child: a tail source whose accepted batches are appended to OUT; after ACCEPT lines it
# refuses every batch (a full buffer), so the rotated file keeps unread lines until it is killed.
CHILD = r"""
import asyncio, os, sys
from kawa.errors import BufferOverflowError
from kawa.testing.drivers import InputDriver

conf, out, accept = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = InputDriver("tail", conf)
fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
accepted = 0

async def emit(tag, events):
    global accepted
    if accepted + len(events) > accept:
        raise BufferOverflowError("buffer space has too many data")
    os.write(fd, "".join(r["message"] + "\n" for _t, r in events).encode())
    accepted += len(events)

d.emitter.emit = emit

async def main():
    async with d.run():
        await asyncio.Event().wait()

asyncio.run(main())
"""


def start(conf: str, out: Path, accept: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CHILD, conf, str(out), str(accept)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until(cond: Callable[[], bool], child: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if child.poll() is not None:
            raise AssertionError(child.stderr.read().decode() if child.stderr else "child died")
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def lines(out: Path) -> list[int]:
    return [int(x) for x in out.read_text().split()] if out.exists() else []


def side_offset(side: Path) -> int | None:
    """The offset recorded for the one rotated file being drained, if any."""
    text = side.read_text() if side.exists() else ""
    return int(text.split("\t")[2], 16) if text.strip() else None


def write(path: Path, numbers: range) -> None:
    with open(path, "a") as fh:
        fh.write("".join(f"{n:08d}\n" for n in numbers))


def test_kill_9_while_a_rotated_file_is_drained_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    log, pos, out = tmp_path / "app.log", tmp_path / "app.pos", tmp_path / "out.txt"
    side = Path(f"{pos}.kawa-rotated")
    conf = (f"path {log}\ntag t.app\npos_file {pos}\nread_from_head true\nread_lines_limit 10\n"
            "rotate_wait {wait}\n<parse>\n@type none\n</parse>")
    write(log, range(0, 100))
    child = start(conf.format(wait=30), out, accept=105)
    try:
        wait_until(lambda: len(lines(out)) == 100, child)
        os.rename(log, tmp_path / "app.log.1")
        write(tmp_path / "app.log.1", range(100, 300))        # late writes to the rotated file
        write(log, range(300, 310))
        wait_until(lambda: side_offset(side) is not None, child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(lines(out)) < 310
    assert side_offset(side) < (tmp_path / "app.log.1").stat().st_size    # unread lines were left
    assert side.read_text().split("\t")[3:] == [str(log), str(tmp_path / "app.log.1") + "\n"]

    child = start(conf.format(wait=0.2), out, accept=10**9)
    try:
        wait_until(lambda: len(lines(out)) >= 310 and side.read_text().strip() == "", child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    got = lines(out)
    assert sorted(got) == list(range(310))
    assert len(got) == len(set(got))


def test_kill_9_soon_after_a_file_is_read_still_leaves_its_mark(tmp_path: Path) -> None:
    """The file's first offset mark comes within a second of reading it (not at the 30 s save): a
    kill -9 soon after, then a copytruncate and more written than was read, and the next start
    still sees the rewrite and reads the new lines from the start, none lost."""
    log, pos, out = tmp_path / "app.log", tmp_path / "app.pos", tmp_path / "out.txt"
    marks = Path(f"{pos}.kawa-marks")
    conf = f"path {log}\ntag t.app\npos_file {pos}\nread_from_head true\n<parse>\n@type none\n</parse>"
    write(log, range(0, 10))
    child = start(conf, out, accept=10**9)
    try:
        wait_until(lambda: len(lines(out)) == 10, child)
        started = time.monotonic()
        wait_until(lambda: marks.exists() and str(log) in marks.read_text(), child, timeout=10)
        assert time.monotonic() - started < 10                     # well before the 30 s save
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with open(log, "r+") as fh:                                     # copytruncate while kawa is down
        fh.truncate(0)
    write(log, range(1000, 1030))                                   # 270 bytes: past the old 90
    child = start(conf, out, accept=10**9)
    try:
        wait_until(lambda: len(lines(out)) >= 40, child)
        time.sleep(0.3)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert lines(out) == list(range(10)) + list(range(1000, 1030))
