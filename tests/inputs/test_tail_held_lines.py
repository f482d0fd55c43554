"""`.kawa-held` (kawa.plugins.inputs._tail.held_lines): which lines a restart reads again when the
pos_file stays before lines concat holds; an entry applies only to the position and bytes it was
written for."""

from __future__ import annotations

import os
from pathlib import Path

from kawa.plugins.inputs._tail.held_lines import SUFFIX, HeldLines, Replay, checksum, every_line_held

DATA = b"err START 1\nout a\nerr  e1\nout b\nout c\n"
OFFSETS = [0, 12, 18, 26, 32]          # where each line of DATA begins


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY)


def test_keep_reads_only_the_held_lines_before_the_end_and_everything_after() -> None:
    replay = Replay(ino=1, start=0, end=32, crc=0, lines=(0, 18))
    data, runs = replay.keep(DATA, 0)
    assert data == b"err START 1\nerr  e1\nout c\n"
    assert runs == [(0, b"err START 1\n"), (18, b"err  e1\n"), (32, b"out c\n")]


def test_keep_on_a_read_that_starts_inside_the_replayed_range() -> None:
    replay = Replay(ino=1, start=0, end=32, crc=0, lines=(0, 18))
    data, runs = replay.keep(DATA[12:], 12)          # a second read, from "out a"
    assert data == b"err  e1\nout c\n"
    assert runs == [(18, b"err  e1\n"), (32, b"out c\n")]


def test_an_entry_is_written_and_found_again_for_its_position_and_bytes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(DATA)
    pos_file = str(tmp_path / "app.pos")
    fd = _open(log)
    try:
        ino = os.fstat(fd).st_ino
        crc = checksum(fd, 0, 32)
        assert crc is not None
        HeldLines(pos_file).note(Replay(ino, 0, 32, crc, (0, 18)), followed=[ino])
        again = HeldLines(pos_file)
        assert again.replay_for(ino, 0, fd) == Replay(ino, 0, 32, crc, (0, 18))
        assert again.replay_for(ino, 12, fd) is None          # the pos_file says another position
        assert again.replay_for(ino + 1, 0, fd) is None       # another file
    finally:
        os.close(fd)
    # the same inode holding other bytes (rewritten while kawa was down), at the start of the
    # skipped lines or only at their end: not applied
    for other in (b"out x\n" + DATA, DATA[:26] + b"out B\n" + DATA[32:]):     # (DATA is short)
        log.write_bytes(other)
        fd = _open(log)
        try:
            assert HeldLines(pos_file).replay_for(ino, 0, fd) is None
        finally:
            os.close(fd)


def test_entries_of_files_no_longer_followed_go_and_torn_lines_are_ignored(tmp_path: Path) -> None:
    pos_file = str(tmp_path / "app.pos")
    held = HeldLines(pos_file)
    held.note(Replay(7, 0, 32, 1, (0,)), followed=[7])
    held.note(Replay(8, 5, 40, 2, (5, 9)), followed=[8])      # inode 7 is no longer followed
    assert set(HeldLines(pos_file).entries) == {8}
    with open(pos_file + SUFFIX, "ab") as f:
        f.write(b"0000000000000009\t00000")                    # a write cut by a kill
    assert set(HeldLines(pos_file).entries) == {8}


def test_a_truncated_file_loses_its_entry(tmp_path: Path) -> None:
    pos_file = str(tmp_path / "app.pos")
    held = HeldLines(pos_file)
    held.note(Replay(7, 0, 32, 1, (0,)), followed=[7])
    held.forget(7)
    assert HeldLines(pos_file).entries == {}


def test_the_checksum_covers_both_ends_of_the_skipped_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    lines = b"".join(b"out line %03d......\n" % i for i in range(20))      # 20 bytes each
    log.write_bytes(lines)
    fd = _open(log)
    try:
        before = checksum(fd, 0, 400), checksum(fd, 0, 380)
    finally:
        os.close(fd)
    log.write_bytes(lines[:380] + b"out line 019 changed"[:19] + b"\n")   # only the last line differs
    fd = _open(log)
    try:
        assert checksum(fd, 0, 400) != before[0]
        assert checksum(fd, 0, 380) == before[1]          # the lines before it are the same
    finally:
        os.close(fd)


def test_an_entry_is_needed_only_when_lines_between_the_held_ones_were_stored(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(DATA)
    fd = _open(log)
    try:
        assert every_line_held(fd, 0, 38, OFFSETS)              # one stream's group: every line
        assert every_line_held(fd, 18, 38, [18, 26, 32])
        assert not every_line_held(fd, 0, 38, [0, 18])            # "out a" and "out b" were stored
        assert not every_line_held(fd, 0, 38, OFFSETS[:-1])       # the last line was stored
    finally:
        os.close(fd)


def test_a_line_torn_by_a_kill_is_ignored_and_old_whole_lines_still_read(tmp_path: Path) -> None:
    """The file is rewritten in place: a kill -9 may leave a line half new and half old (its crc32
    then differs) or an older content's last lines after a shorter new one (whole: older claims)."""
    pos_file = str(tmp_path / "app.pos")
    held = HeldLines(pos_file)
    held.note(Replay(7, 0, 32, 1, (0, 18)), followed=[7, 8])
    held.note(Replay(8, 5, 40, 2, (5, 9)), followed=[7, 8])
    held.close()
    path = Path(pos_file + SUFFIX)
    lines = path.read_bytes().split(b"\n")
    mixed = lines[0].replace(b"\t0,12\t", b"\t0,13\t")          # another held offset, the old crc32
    assert mixed != lines[0]
    path.write_bytes(mixed + b"\n" + lines[1] + b"\n")
    assert set(HeldLines(pos_file).entries) == {8}
