"""Gzip chunk data as Fluentd's `<buffer> compress gzip` keeps it: every append is one gzip member.
A chunk is the concatenation of its members; readers decompress member after member (RFC 1952 2.2)."""

from __future__ import annotations

import zlib
from typing import Iterator

# RFC 1952: ID1 ID2 and CM 8 (deflate) open every member; used to sniff and to resync after damage.
GZIP_MEMBER_START = b"\x1f\x8b\x08"
# Zlib::GzipWriter (compressable.rb) writes with Zlib::DEFAULT_COMPRESSION, which is zlib level 6.
GZIP_LEVEL = 6
_GZIP_WBITS = 31                   # zlib: gzip header and trailer
_WINDOW = 1 << 20                  # compressed bytes fed per step: no copy of a whole chunk per member


def compress(data: bytes) -> bytes:
    """One gzip member holding `data`."""
    return zlib.compress(data, GZIP_LEVEL, wbits=_GZIP_WBITS)


def is_gzip(data: bytes) -> bool:
    return data[:3] == GZIP_MEMBER_START


def iter_decompress(data: bytes) -> Iterator[bytes]:
    """The plain bytes of every member, in order. ValueError on a damaged or torn member."""
    view = memoryview(data)
    pos, n = 0, len(data)
    while pos < n:
        pieces: list[bytes] = []
        pos, whole = _one_member(view, pos, pieces)
        if not whole:
            raise ValueError("damaged or truncated gzip member in buffer chunk")
        yield b"".join(pieces)


def decompress(data: bytes) -> bytes:
    return b"".join(iter_decompress(data))


def scan_members(data: bytes) -> Iterator[tuple[int, int, bytes, bool]]:
    """Every member of possibly damaged gzip data: (start, end, plain bytes, whole). A torn or
    corrupted member gives its readable start with whole False, and ends where the next member
    starts; bytes that start no member are skipped (the gaps between one end and the next start)."""
    view = memoryview(data)
    pos, n = 0, len(data)
    while pos < n:
        if view[pos:pos + 3] != GZIP_MEMBER_START:
            nxt = data.find(GZIP_MEMBER_START, pos + 1)
            if nxt < 0:
                return
            pos = nxt
        pieces: list[bytes] = []
        end, whole = _one_member(view, pos, pieces)
        if not whole:
            # resync at the next member start; the damaged one was read as far as it could be
            nxt = data.find(GZIP_MEMBER_START, pos + 1)
            end = n if nxt < 0 else nxt
        yield pos, end, b"".join(pieces), whole
        pos = end


def _one_member(view: memoryview, pos: int, out: list[bytes]) -> tuple[int, bool]:
    """Decompress the member at `pos` into `out`; (offset after it, True) or (len, False) when torn/damaged."""
    inflater = zlib.decompressobj(_GZIP_WBITS)
    n = len(view)
    while not inflater.eof:
        if pos >= n:
            return n, False
        window = view[pos:pos + _WINDOW]
        try:
            plain = inflater.decompress(window)
        except zlib.error:
            return n, False
        if plain:
            out.append(plain)
        pos += len(window) - len(inflater.unused_data)
    return pos, True
