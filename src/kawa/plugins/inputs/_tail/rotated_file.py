"""kawa's side file `<pos_file>.kawa-rotated`: the rotated files still being read (rotate_wait), so
a crash while one has unread lines resumes it at the next start; the pos_file stays Fluentd's.

One line per file: `%016x dev \\t %016x inode \\t %016x offset \\t watched path \\t path now \\n`;
offsets are updated in place with one pwrite, membership changes rewrite the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kawa.plugins.inputs._tail.position_file import MemoryPositionEntry, _fsync_dir

SUFFIX = ".kawa-rotated"
_POS_COLUMN = 2 * 17        # two "%016x\t" columns before the offset


@dataclass
class RotatedRecord:
    dev: int
    ino: int
    pos: int
    watched: str          # the path in the configuration (tag, path_key)
    current: str          # where the file was when it was last seen


class RotatedEntry(MemoryPositionEntry):
    """Position of one draining file; `mirror` (the pos_file entry with follow_inodes) follows it."""

    def __init__(self, owner: "RotatedFiles", record: RotatedRecord,
                 mirror: MemoryPositionEntry | None) -> None:
        super().__init__(record.pos, record.ino)
        self.owner, self.dev, self.mirror = owner, record.dev, mirror
        self.watched, self.current = record.watched, record.current
        self.seek = -1

    def update_pos(self, pos: int) -> None:
        if pos != self.pos and self.seek >= 0 and self.owner.fd >= 0:
            os.pwrite(self.owner.fd, b"%016x" % pos, self.seek)
        self.pos = pos
        if self.mirror is not None:
            self.mirror.update_pos(pos)

    def update(self, ino: int, pos: int) -> None:
        self.ino = ino
        self.update_pos(pos)


class RotatedFiles:
    def __init__(self, pos_file: str) -> None:
        self.path = pos_file + SUFFIX
        self.fd = -1
        self.entries: list[RotatedEntry] = []

    def load(self) -> list[RotatedRecord]:
        """What the previous run was still reading (well-formed lines only)."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split(b"\n"):
            parts = line.split(b"\t", 4)
            if len(parts) != 5:
                continue
            try:
                out.append(RotatedRecord(int(parts[0], 16), int(parts[1], 16), int(parts[2], 16),
                                         os.fsdecode(parts[3]), os.fsdecode(parts[4])))
            except ValueError:
                continue
        return out

    def add(self, record: RotatedRecord, mirror: MemoryPositionEntry | None = None) -> RotatedEntry:
        entry = RotatedEntry(self, record, mirror)
        self.entries.append(entry)
        self.rewrite()
        return entry

    def remove(self, entry: MemoryPositionEntry) -> None:
        if entry in self.entries:
            self.entries.remove(entry)        # type: ignore[arg-type]
            self.rewrite()

    def rewrite(self) -> None:
        """Write-temp + fsync + rename (a crash leaves the old or the new list, never a torn one)."""
        tmp = f"{self.path}.tmp{os.getpid()}"
        chunks, offset = [], 0
        for e in self.entries:
            line = b"%016x\t%016x\t%016x\t%s\t%s\n" % (e.dev, e.ino, e.pos, os.fsencode(e.watched),
                                                         os.fsencode(e.current))
            e.seek = offset + _POS_COLUMN
            offset += len(line)
            chunks.append(line)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, b"".join(chunks))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        self.close()
        self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def current_path(fd: int | None) -> str | None:
    """Where an open file is now (Linux /proc); None when unknown or deleted."""
    if fd is None:
        return None
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return None if target.endswith(" (deleted)") else target


def find_by_inode(record: RotatedRecord, directories: list[str]) -> tuple[str, os.stat_result] | None:
    """The file (dev, ino) at its recorded path, or renamed again inside one of `directories`."""
    candidates = [record.current]
    for d in dict.fromkeys(directories):
        try:
            with os.scandir(d) as it:
                candidates.extend(e.path for e in it if e.inode() == record.ino)
        except OSError:
            continue
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (record.dev, record.ino):
            return path, st
    return None
