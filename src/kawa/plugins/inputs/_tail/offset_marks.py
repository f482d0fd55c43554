"""kawa's side file `<pos_file>.kawa-marks`: a checksum of the bytes just before each file's saved
position, so a start can tell that a file was truncated and written again while kawa was stopped.

The pos_file (Fluentd's format) holds an inode and an offset only. A file truncated in place
(copytruncate) while kawa is down, then written past the old offset before kawa starts, looks
unchanged by those: Fluentd resumes mid-line in the new content, losing the lines before the offset
and cutting the one across it. Fluent Bit keeps an offset marker for this; kawa keeps this file.

One line per file: `%016x inode \\t %016x offset \\t %08x crc32 \\t key \\n`, the key being the path
of a followed file, or `rotated <dev>:<inode>` (hex) for a rotated one being drained: a start resumes
those from `.kawa-rotated` by inode, and an inode freed and reused meanwhile names another file,
which the mark tells apart. It is rewritten whole (temp file + rename) every MARK_INTERVAL seconds
while files are read, at stop, and when a file is truncated while read; a file read past 0 that has
no mark yet gets one within NEW_MARK_DELAY, so a kill -9 soon after a file appears leaves it checked
too. A mark older than the pos_file's offset still checks the bytes before its own offset; a missing
or unreadable file means no check (Fluentd's behaviour).
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from typing import Iterable

from kawa.plugins.inputs._tail import side_file

SUFFIX = ".kawa-marks"
MARK_BYTES = 64               # checksummed bytes before the offset: a whole nginx line is ~200
MARK_INTERVAL = 30.0          # seconds between saves while reading; no wake-up of its own
NEW_MARK_DELAY = 1.0          # seconds before a file without a mark gets one (also no wake-up of its own)
_LINE = re.compile(rb"^([0-9a-f]{16})\t([0-9a-f]{16})\t([0-9a-f]{8})\t(.+)$")


@dataclass(frozen=True)
class Mark:
    ino: int
    pos: int
    crc: int


def checksum(fd: int, pos: int) -> int | None:
    """crc32 of the MARK_BYTES (or fewer, at the start) bytes before `pos`; None when unreadable."""
    start = max(0, pos - MARK_BYTES)
    try:
        data = os.pread(fd, pos - start, start)
    except OSError:
        return None
    return zlib.crc32(data) if len(data) == pos - start else None


def rotated_key(dev: int, ino: int) -> str:
    """The key of a rotated file's mark (no path: it is found again by inode)."""
    return f"rotated {dev:x}:{ino:x}"


def _checksum_at(path: str, ino: int, pos: int, fd: int | None) -> int | None:
    """checksum() through `fd`, or through the file at `path` when it is still inode `ino`."""
    if fd is not None:
        return checksum(fd, pos)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return checksum(fd, pos) if os.fstat(fd).st_ino == ino else None
    finally:
        os.close(fd)


class OffsetMarks:
    def __init__(self, pos_file: str) -> None:
        self.path = pos_file + SUFFIX
        self.marks: dict[str, Mark] = {}
        for m in side_file.read_records(self.path, _LINE):     # a file without a mark is not checked
            self.marks[os.fsdecode(m.group(4))] = Mark(int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16))

    def rewritten(self, key: str, path: str, ino: int, size: int) -> bool:
        """Whether the file at `path` (inode `ino`, `size` bytes) no longer holds the bytes the mark
        under `key` saw: truncated then written again, or another file. False when there is no mark
        for it or it cannot be read."""
        mark = self.marks.get(key)
        if mark is None or mark.ino != ino or mark.pos == 0:
            return False
        if size < mark.pos:
            return True
        crc = _checksum_at(path, ino, mark.pos, None)
        return crc is not None and crc != mark.crc

    def save(self, positions: Iterable[tuple[str, str, int, int, int | None]], *,
             missing_only: bool = False) -> None:
        """Rewrite the file from (key, path, inode, offset, open descriptor or None) of the files
        followed now. A file that cannot be read keeps its old mark when the inode is the same.
        `missing_only`: a file that has a mark of the same inode keeps it unread, so the file is
        written only when some file gets its first mark (or is no longer followed)."""
        marks: dict[str, Mark] = {}
        for key, path, ino, pos, fd in positions:
            old = self.marks.get(key)
            kept = old if old is not None and old.ino == ino else None
            if missing_only and kept is not None:
                marks[key] = kept
                continue
            crc = _checksum_at(path, ino, pos, fd) if pos > 0 else None
            if crc is not None:
                marks[key] = Mark(ino, pos, crc)
            elif kept is not None:
                marks[key] = kept
        if marks != self.marks:
            self.marks = marks
            self._write()

    def forget(self, path: str) -> None:
        """`path` was truncated while read: its mark names old content (kept, the next start would
        read the new content twice). Written at once, before its position goes back to 0."""
        if self.marks.pop(path, None) is not None:
            self._write()

    def _write(self) -> None:
        # (not written: the next start checks less, as Fluentd, never reads less)
        side_file.replace(self.path, b"".join(b"%016x\t%016x\t%08x\t" % (m.ino, m.pos, m.crc) + os.fsencode(p)
                                              + b"\n" for p, m in self.marks.items()))
