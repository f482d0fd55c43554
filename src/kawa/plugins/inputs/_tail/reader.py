"""Reads complete lines from one open file in big blocks, and decodes them per batch.

Positional reads (pread) from a byte offset; the unterminated tail of the file stays buffered
until its newline arrives; over-long lines (max_line_size) are dropped here, before decoding.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from typing import Callable

BLOCK_SIZE = 64 * 1024          # one pread; Fluentd reads 8 KiB, bigger blocks cost fewer syscalls
MAX_BATCH_BYTES = 8 * 1024 * 1024   # never hold more than this in one batch, however long the lines

Decoder = Callable[[bytes], str]


@dataclass(slots=True)
class ReadResult:
    data: bytes           # complete lines, each ending in b"\n" (over-long ones removed)
    start_pos: int        # file offset where `data` begins (earlier when over-long lines were cut)
    end_pos: int          # file offset just after the last consumed newline
    skipped_long: int     # lines dropped because of max_line_size
    eof: bool             # the last read reached the end of the file


class LineReader:
    """Complete lines of one file from `start` on. `offset` is where unconsumed data begins."""

    def __init__(self, fd: int, start: int, max_line_size: int | None = None,
                 block_size: int = BLOCK_SIZE) -> None:
        self.fd = fd
        self.offset = start            # start of the bytes held in `partial`
        self.partial = b""             # data after the last newline (an unterminated line)
        self.max_line_size = max_line_size
        self.block_size = block_size
        self.skipping = False          # discarding the rest of an over-long line
        self.skipping_bytes = 0
        self.eof = False

    @property
    def read_offset(self) -> int:
        return self.offset + self.skipping_bytes + len(self.partial)

    def read(self, lines_limit: int, bytes_limit: int | None = None) -> ReadResult | None:
        """Read until about `lines_limit` lines (Fluentd's read_lines_limit), EOF or `bytes_limit`."""
        chunks = [self.partial] if self.partial else []
        got = len(self.partial)
        newlines = 0
        read_off = self.read_offset
        cap = MAX_BATCH_BYTES if bytes_limit is None else max(1, min(bytes_limit, MAX_BATCH_BYTES))
        self.eof = False
        while True:
            want = min(self.block_size, cap - got) if cap > got else 0
            if want <= 0:
                break
            data = os.pread(self.fd, want, read_off)
            if not data:
                self.eof = True
                break
            chunks.append(data)
            read_off += len(data)
            got += len(data)
            newlines += data.count(b"\n")
            if newlines >= lines_limit or len(data) < want:
                self.eof = len(data) < want
                break
        buf = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        return self._split(buf)

    def _split(self, buf: bytes) -> ReadResult | None:
        base = self.offset + self.skipping_bytes
        cut = buf.rfind(b"\n") + 1
        complete, rest = buf[:cut], buf[cut:]
        skipped = 0
        limit = self.max_line_size
        if cut and limit is not None:
            if self.skipping:
                first = complete.index(b"\n") + 1
                complete = complete[first:]
                skipped += 1
                self.skipping, self.skipping_bytes = False, 0
            if len(complete) > limit:
                lines = complete.split(b"\n")[:-1]
                kept = [ln for ln in lines if len(ln) + 1 <= limit]   # Fluentd counts the "\n" too
                if len(kept) != len(lines):
                    skipped += len(lines) - len(kept)
                    complete = b"".join(ln + b"\n" for ln in kept)
        if limit is not None and len(rest) > limit:
            # Fluentd: the unterminated line is already too long; discard it until its newline.
            self.skipping = True
            self.skipping_bytes += len(rest)
            rest = b""
        self.partial = rest
        if not cut:
            return None
        end = base + cut
        self.offset = end
        return ReadResult(complete, base, end, skipped, self.eof)

    def take_partial(self) -> tuple[bytes, int] | None:
        """Hand out the unterminated line (multiline_flush_interval); returns it and its end offset."""
        if not self.partial:
            return None
        data, self.partial = self.partial, b""
        self.offset += len(data)
        return data, self.offset

    def reset(self, start: int) -> None:
        """After a truncation: forget buffered data and read again from `start`."""
        self.offset, self.partial = start, b""
        self.skipping, self.skipping_bytes = False, 0


# -- decoding ---------------------------------------------------------------------------------

_BINARY_NAMES = {"ascii-8bit", "binary"}
_UNICODE = {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


def python_codec(ruby_name: str) -> str | None:
    """Python's codec for a Ruby encoding name; None for ASCII-8BIT (bytes kept as they are)."""
    if ruby_name.lower() in _BINARY_NAMES:
        return None
    try:
        return codecs.lookup(ruby_name).name
    except LookupError:
        raise ValueError(f"unknown encoding name - {ruby_name}") from None


def make_decoder(encoding: str | None, from_encoding: str | None) -> Decoder:
    """How Fluentd's in_tail turns bytes into a string (golden case tail_invalid_utf8).

    - no options: the bytes as they are (invalid UTF-8 kept as surrogate escapes, so outputs can
      write the original bytes back);
    - `encoding E` alone: converted from binary, so every non-ASCII byte is undefined and replaced
      (U+FFFD for a Unicode E, "?" otherwise);
    - `from_encoding F` + `encoding E`: decoded from F (invalid -> replacement), then into E.
    """
    target = python_codec(encoding) if encoding else None
    source = python_codec(from_encoding) if from_encoding else None
    if encoding is None or (target is None and source is None):
        return _raw
    if source == target:
        return _raw if target in (None, "utf-8") else (lambda b: b.decode(target, "surrogateescape"))
    if source is None:
        if target in _UNICODE or target is None:
            return lambda b: b.decode("ascii", "replace")
        return lambda b: b.decode("ascii", "replace").replace("\ufffd", "?")
    if target is None or target in _UNICODE:
        return lambda b: b.decode(source, "replace")
    return lambda b: b.decode(source, "replace").encode(target, "replace").decode(target)


def _raw(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def line_starts(data: bytes, pos: int) -> list[int]:
    """The file offset of each line of `data`, complete lines read from offset `pos` (each ends in
    b"\\n"; ValueError when the last one does not)."""
    starts, at, size = [], 0, len(data)
    index = data.index
    while at < size:
        starts.append(pos + at)
        at = index(b"\n", at) + 1
    return starts


def split_lines(text: str) -> list[str]:
    """Complete lines (text ends with "\\n") chomped as Ruby does: "\\n" or "\\r\\n"."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    del lines[-1]           # the "" after the last "\n" (text[:-1] would copy the whole batch first)
    return lines
