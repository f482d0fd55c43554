"""Reading chunk data that may be damaged (torn write, garbage): keep every readable record, measure the rest.
Used by the file buffer when it resumes and by `kawa buffer inspect/replay`; plain or gzip chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from kawa.buffer import compression
from kawa.buffer.chunk import UNPACK_FEED, iter_frames, new_unpacker

FRAME_START = 0x92            # msgpack fixarray of 2: every frame is [time_ns, record] or [count, bytes]


def valid_frame(frame: Any, formatted: bool) -> int:
    """Records in a frame, or 0 when it is not a frame of this chunk kind (corruption)."""
    if not isinstance(frame, list) or len(frame) != 2 or not isinstance(frame[0], int):
        return 0
    if formatted:
        return frame[0] if isinstance(frame[1], bytes) and frame[0] > 0 else 0
    return 1 if isinstance(frame[1], dict) and frame[0] >= 0 else 0


def scan_frames(data: bytes, formatted: bool) -> tuple[list[tuple[int, int]], int, int]:
    """Good frame ranges, records in them, bytes lost. Resyncs after corruption at the next frame start."""
    good: list[tuple[int, int]] = []
    records = lost = 0
    view = memoryview(data)
    pos, n = 0, len(data)
    while pos < n:
        unpacker = new_unpacker(use_list=True)
        fed = pos
        start = 0
        try:
            while True:
                for frame in unpacker:
                    end = unpacker.tell()
                    count = valid_frame(frame, formatted)
                    if not count:
                        raise ValueError("not a frame")
                    good.append((pos + start, pos + end))
                    records += count
                    start = end
                if fed >= n:
                    break
                unpacker.feed(view[fed:fed + UNPACK_FEED])
                fed = min(fed + UNPACK_FEED, n)
        except Exception:  # msgpack raises several types on garbage; all mean "corrupt here"
            pass
        bad_at = pos + start
        if bad_at >= n:
            break
        nxt = data.find(bytes([FRAME_START]), bad_at + 1)
        if nxt < 0:
            lost += n - bad_at
            break
        lost += nxt - bad_at
        pos = nxt
    return good, records, lost


@dataclass
class Salvaged:
    """The readable part of a chunk's data in its stored form (plain frames, or gzip members of
    frames), the records in it and the bytes that could not be read."""

    data: bytes
    records: int
    lost: int

    @property
    def damaged(self) -> bool:
        return self.lost > 0


def salvage(data: bytes, formatted: bool, compressed: bool) -> Salvaged:
    """Every readable frame of `data`. Gzip members are read one at a time (never the whole chunk
    decompressed) and scanned one by one, so the torn end of one never joins the start of the next;
    intact members are kept as they are, the good frames of a damaged one become a new member. A
    torn or corrupted member counts as lost whole (its compressed bytes), its readable records kept."""
    if not compressed:
        good, records, lost = scan_frames(data, formatted)
        return Salvaged(data if not lost else b"".join(data[a:b] for a, b in good), records, lost)
    view = memoryview(data)
    kept: list[bytes | memoryview] = []
    records = lost = 0
    prev_end = 0
    for start, end, plain, whole in compression.scan_members(data):
        lost += start - prev_end                 # bytes that start no member
        prev_end = end
        good, count, plain_lost = scan_frames(plain, formatted)
        records += count
        if whole and not plain_lost:
            kept.append(view[start:end])
            continue
        lost += (end - start) if not whole else plain_lost
        if good:
            kept.append(compression.compress(b"".join(plain[a:b] for a, b in good)))
    lost += len(data) - prev_end
    if not lost:
        return Salvaged(data, records, 0)
    return Salvaged(b"".join(kept), records, lost)


def payloads(frames: bytes) -> Iterator[bytes]:
    """The output's text of each `[records, bytes]` frame of a formatted chunk."""
    for frame in iter_frames((frames,)):
        yield frame[1]
