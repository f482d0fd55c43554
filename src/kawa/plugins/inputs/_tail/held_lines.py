"""kawa's side file `<pos_file>.kawa-held`: which lines a restart reads again when the pos_file
stays before lines a filter holds.

concat holds the lines of an unfinished group (a stack trace waiting for its next line) and keeps
the pos_file at the group's first line, so a kill -9 cannot lose them. With several streams in one
file (`stream_identity_key`: Docker's stdout and stderr, say) the other streams' lines after that
first line are written out meanwhile; a restart from the pos_file alone would send them again.

So when the outputs stored everything of a run of emits but what concat holds, and tail moves the
pos_file up to the first held line, it also records here which lines were still held then and where
the run ended. A restart that resumes the file at that very offset reads again only those lines up
to that end, and everything after it. Every entry is written after the outputs stored what it
claims, so an entry is never ahead of the data. One that does not match the position the file
resumes at (a later pos_file), or whose checksum of the bytes at both ends of the lines it skips
differs (a rewritten file, an inode reused by another), is ignored: the file is then read again from the pos_file as
before, and lines may come twice, never fewer.

One line per file: `%016x inode \\t %016x first held line \\t %016x end \\t %08x crc32 of up to
CHECKED_BYTES after the first held line and before the end \\t held offsets (hex, comma separated)
\\t %08x crc32 of the line before this field \\n`. The file is rewritten in place at each such move
(one pwrite and a truncate: ~5 µs, where a temp file and a rename cost ~130 µs, and this happens
once per emit while streams interleave). A kill -9 can tear a write that spans pages, or leave old
bytes after a shorter new content: the crc32 that ends each line rejects any line that is not
whole as written, and a whole old line is an older claim, true when written.
"""

from __future__ import annotations

import os
import re
import zlib
from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterable

from kawa.plugins.inputs._tail import side_file
from kawa.plugins.inputs._tail.reader import line_starts

SUFFIX = ".kawa-held"
CHECKED_BYTES = 64
# A run of held lines up to this long is read back to see whether it is every line of the range
# (one stream's open group: the common case, where an entry would change nothing)
CONTIGUOUS_CHECK_BYTES = 64 * 1024
_LINE = re.compile(rb"^(([0-9a-f]{16})\t([0-9a-f]{16})\t([0-9a-f]{16})\t([0-9a-f]{8})\t([0-9a-f,]*))\t([0-9a-f]{8})$")


def checksum(fd: int, start: int, end: int) -> int | None:
    """crc32 of the first and the last bytes from `start` to `end` (at most CHECKED_BYTES each): the
    content the entry was written for at both ends of the lines it skips. None: unreadable."""
    head = min(CHECKED_BYTES, end - start)
    tail_start = max(start + head, end - CHECKED_BYTES)
    try:
        data = os.pread(fd, head, start) + os.pread(fd, end - tail_start, tail_start)
    except OSError:
        return None
    return zlib.crc32(data) if len(data) == head + end - tail_start else None


def every_line_held(fd: int, start: int, end: int, lines: "tuple[int, ...] | list[int]") -> bool:
    """Whether `lines` are all the lines from `start` to `end`: then reading again from `start`
    reads only them anyway (no entry needed). False when it cannot tell cheaply."""
    if end - start > CONTIGUOUS_CHECK_BYTES or not lines or lines[0] != start:
        return False
    try:
        data = os.pread(fd, end - start, start)
    except OSError:
        return False
    if len(data) != end - start or not data.endswith(b"\n"):
        return False
    return line_starts(data, start) == list(lines)


@dataclass(frozen=True)
class Replay:
    """What a restart at `start` reads again of inode `ino`: the `lines` (offsets, sorted) before
    `end`, and every line from `end` on."""
    ino: int
    start: int
    end: int
    crc: int
    lines: tuple[int, ...]

    def keep(self, data: bytes, pos: int) -> tuple[bytes, list[tuple[int, bytes]]]:
        """The part of `data` (complete lines read from offset `pos`) to read again, and its runs of
        lines as (offset, bytes)."""
        runs: list[tuple[int, bytes]] = []
        lines, end = self.lines, self.end
        starts = line_starts(data, pos) + [pos + len(data)]
        for offset, after in zip(starts, starts[1:]):
            if offset >= end:           # from the end on: every line, as one run
                runs.append((offset, data[offset - pos:]))
                break
            i = bisect_left(lines, offset)
            if i < len(lines) and lines[i] == offset:
                runs.append((offset, data[offset - pos:after - pos]))
        return b"".join(run for _offset, run in runs), runs


class HeldLines:
    def __init__(self, pos_file: str) -> None:
        self.path = pos_file + SUFFIX
        self.entries: dict[int, Replay] = {}
        self._fd: int | None = None
        for m in side_file.read_records(self.path, _LINE):     # a file without one: read from its pos_file
            if zlib.crc32(m.group(1)) != int(m.group(7), 16):
                continue                # torn by a kill -9 mid-write
            lines = tuple(int(x, 16) for x in m.group(6).split(b",") if x)
            replay = Replay(int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16),
                            int(m.group(5), 16), lines)
            if list(replay.lines) == sorted(replay.lines) and replay.start < replay.end:
                self.entries[replay.ino] = replay

    def replay_for(self, ino: int, pos: int, fd: int) -> Replay | None:
        """The entry of a file (open as `fd`) resumed at `pos`, when it was written for that
        position of that file."""
        replay = self.entries.get(ino)
        if replay is None or replay.start != pos or checksum(fd, replay.start, replay.end) != replay.crc:
            return None
        return replay

    def forget(self, ino: int) -> None:
        """The file was truncated while read: its entry names old content."""
        if self.entries.pop(ino, None) is not None:
            self._write()

    def note(self, replay: Replay, followed: Iterable[int]) -> None:
        """Record `replay` for its file; entries of files no longer `followed` (inodes) go."""
        if self.entries.get(replay.ino) == replay:
            return
        keep = set(followed)
        self.entries = {ino: r for ino, r in self.entries.items() if ino in keep}
        self.entries[replay.ino] = replay
        self._write()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self) -> None:
        lines = [b"%016x\t%016x\t%016x\t%08x\t" % (r.ino, r.start, r.end, r.crc)
                 + b",".join(b"%x" % offset for offset in r.lines) for r in self.entries.values()]
        data = b"".join(line + b"\t%08x\n" % zlib.crc32(line) for line in lines)
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except OSError:
            # not written: the next start reads those lines again (twice, never fewer)
            self.close()
