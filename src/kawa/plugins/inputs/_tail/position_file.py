"""in_tail's pos_file, byte-compatible with Fluentd: one `path\\t%016x\\t%016x\\n` line per file.

Positions are updated in place (fixed-width hex, one pwrite per update: an entry is never torn in
a way that changes its width); compaction writes a temp file, fsyncs and renames it over the old.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Hashable

# Fluentd in_tail/position_file.rb: UNWATCHED_POSITION, POSITION_FILE_ENTRY_REGEX, entry layout.
UNWATCHED_POSITION = 0xFFFFFFFFFFFFFFFF
ENTRY_RE = re.compile(rb"^([^\t\n]+)\t([0-9a-fA-F]+)\t([0-9a-fA-F]+)")
HEX_WIDTH = 16


def format_entry(path: str, pos: int, ino: int) -> bytes:
    return os.fsencode(path) + b"\t%016x\t%016x\n" % (pos, ino)


@dataclass
class ParsedEntry:
    path: str
    pos: int
    ino: int


def parse_entries(data: bytes, warn: Callable[[str], None] | None = None) -> list[ParsedEntry]:
    """Every well-formed line, in file order (unparsable lines are reported and skipped)."""
    out: list[ParsedEntry] = []
    for line in data.split(b"\n"):
        if not line:
            continue
        m = ENTRY_RE.match(line)
        if m is None:
            if warn is not None:
                warn("Unparsable line in pos_file: " + line.decode("utf-8", "replace"))
            continue
        out.append(ParsedEntry(os.fsdecode(m.group(1)), int(m.group(2), 16), int(m.group(3), 16)))
    return out


class MemoryPositionEntry:
    """Position of a file when there is no pos_file (or of a rotated file during rotate_wait)."""

    def __init__(self, pos: int = 0, ino: int = 0) -> None:
        self.pos = pos
        self.ino = ino

    def update(self, ino: int, pos: int) -> None:
        self.ino, self.pos = ino, pos

    def update_pos(self, pos: int) -> None:
        self.pos = pos


class FilePositionEntry(MemoryPositionEntry):
    """One line of the pos_file; `seek` is the byte offset of its pos column."""

    def __init__(self, owner: "PositionFile", path: str, seek: int, pos: int, ino: int) -> None:
        super().__init__(pos, ino)
        self.owner = owner
        self.path = path          # as written in the file (needed to rewrite inode-keyed files)
        self.seek = seek

    # seek -1: unwatched (its line says so) or the file is closed; later updates stay in memory
    # (a delivery ticket may settle after the file was released or the input stopped).
    def update(self, ino: int, pos: int) -> None:
        if (ino, pos) != (self.ino, self.pos) and self.seek >= 0 and self.owner.fd >= 0:
            os.pwrite(self.owner.fd, b"%016x\t%016x" % (pos, ino), self.seek)
        self.ino, self.pos = ino, pos

    def update_pos(self, pos: int) -> None:
        if pos != self.pos and self.seek >= 0 and self.owner.fd >= 0:
            os.pwrite(self.owner.fd, b"%016x" % pos, self.seek)
        self.pos = pos


class PositionFile:
    """The open pos_file. Keys are paths, or inodes with follow_inodes (as in Fluentd)."""

    def __init__(self, path: str, follow_inodes: bool, *, file_mode: int = 0o644,
                 warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.follow_inodes = follow_inodes
        self.file_mode = file_mode
        self.warn = warn
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, file_mode)
        self.entries: dict[Hashable, FilePositionEntry] = {}

    def key(self, path: str, ino: int) -> Hashable:
        return ino if self.follow_inodes else path

    # -- loading and compaction ---------------------------------------------------------------

    def _read_all(self) -> bytes:
        size = os.fstat(self.fd).st_size
        return os.pread(self.fd, size, 0) if size else b""

    def _compacted(self) -> dict[Hashable, ParsedEntry]:
        """Latest entry per key, unwatched ones dropped (Fluentd's fetch_compacted_entries)."""
        out: dict[Hashable, ParsedEntry] = {}
        for e in parse_entries(self._read_all(), self.warn):
            if e.pos == UNWATCHED_POSITION:
                continue
            k = self.key(e.path, e.ino)
            if k in out and self.warn is not None:
                self.warn(f"{e.path} already exists. use latest one: deleted {out[k]}")
            out[k] = e
        return out

    def load(self, existing: set[Hashable] | None = None) -> None:
        """Compact (dropping entries whose file is gone when `existing` is given) and map entries."""
        entries = self._compacted()
        if existing is not None:
            entries = {k: e for k, e in entries.items() if k in existing}
        self._rewrite(list(entries.values()))

    def try_compact(self) -> None:
        """pos_file_compaction_interval: drop unwatched and duplicate lines, keep live entries."""
        self._rewrite([ParsedEntry(e.path, e.pos, e.ino) for e in self.entries.values()])

    def _rewrite(self, entries: list[ParsedEntry]) -> None:
        """Write-temp + fsync + rename so a crash leaves either the old or the new file."""
        tmp = f"{self.path}.tmp{os.getpid()}"
        data = b"".join(format_entry(e.path, e.pos, e.ino) for e in entries)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, self.file_mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        old_fd, self.fd = self.fd, os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        os.close(old_fd)
        mapped: dict[Hashable, FilePositionEntry] = {}
        offset = 0
        for e in entries:
            k = self.key(e.path, e.ino)
            seek = offset + len(os.fsencode(e.path)) + 1
            existing = self.entries.get(k)
            if existing is not None:
                existing.seek = seek
                mapped[k] = existing
            else:
                mapped[k] = FilePositionEntry(self, e.path, seek, e.pos, e.ino)
            offset += len(os.fsencode(e.path)) + 2 * HEX_WIDTH + 3
        self.entries = mapped

    # -- entries ------------------------------------------------------------------------------

    def get(self, path: str, ino: int) -> FilePositionEntry:
        """The entry for this file, appending a zero entry when there is none (as Fluentd does)."""
        k = self.key(path, ino)
        found = self.entries.get(k)
        if found is not None:
            return found
        end = os.fstat(self.fd).st_size
        os.pwrite(self.fd, format_entry(path, 0, 0), end)
        entry = FilePositionEntry(self, path, end + len(os.fsencode(path)) + 1, 0, 0)
        self.entries[k] = entry
        return entry

    def unwatch(self, path: str, ino: int) -> None:
        entry = self.entries.pop(self.key(path, ino), None)
        if entry is not None:
            entry.update_pos(UNWATCHED_POSITION)
            entry.seek = -1

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
