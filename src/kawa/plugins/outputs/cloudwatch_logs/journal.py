"""What a memory-buffered cloudwatch_logs output sent that its inputs may read again after kill -9:
one small durable file, so a restart drops those events instead of sending them twice.
"""

# Why: with a memory buffer, kill -9 loses the chunks, and tail (whose pos_file moves only once the
# lines are delivered, kawa.delivery) reads the unsettled lines again. Events of those lines that
# CloudWatch Logs had already accepted (a chunk half sent, a call whose answer the kill cut off, a
# chunk delivered while an earlier one was not) would be sent a second time. So, before each
# PutLogEvents call, the output appends the call's destination and a digest of each event to this
# journal; after the answer it appends "ok" or "failed". Once every input that emitted the chunk's
# events has moved its own checkpoint past them (Ticket.committed), their entries are retired:
# those lines will not come back. At start the entries left are what came back: "ok" ones are
# dropped when they arrive again, calls still in flight are first read back from the stream
# (restart_check below), and anything else is sent again.
#
# An event's digest is (timestamp ms, UTF-8 length, CRC-32 of the message): 16 bytes on disk, and a
# false match needs the same millisecond, length and CRC within one restart's leftovers. Leftover
# digests that never come back (the file was rotated away meanwhile) expire after LEFTOVER_TTL.
#
# File: records framed as 4-byte big-endian length + msgpack. A record cut by the kill ends the read
# (everything after it is ignored and the file is rewritten). Writes go to the page cache (survive
# kill -9); "send" records are fsync'd when `fsync` is set (power loss).

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from array import array
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter, lshift, or_
from typing import Any, Callable, Iterable

import msgpack

from kawa.plugins.outputs.cloudwatch_logs.batcher import LogEvent

Digest = tuple[int, int, int]          # (timestamp ms, UTF-8 byte length, CRC-32)
_FRAME = struct.Struct(">I")
# Leftover digests stop matching this long after the first chunk written since the restart.
LEFTOVER_TTL = 600.0
# Rewrite the file (live entries only) when it grew past this and mostly holds retired entries.
COMPACT_BYTES = 8 << 20


def digest(ts: int, message: str) -> Digest:
    data = message.encode("utf-8", "surrogatepass")
    return ts, len(data), zlib.crc32(data)


def _pack_digests(events: Iterable[LogEvent]) -> tuple[bytes, bytes]:
    """The digests of a call's events as two arrays (timestamps; length << 32 | CRC-32), C-level maps
    over the whole call instead of a Python step per event."""
    events = events if isinstance(events, list) else list(events)
    messages = list(map(itemgetter(1), events))
    try:
        # the default encoding and errors skip the codec lookup of named arguments (~70 ns an event);
        # the bytes are the same as digest()'s for every message without a lone surrogate
        data = list(map(str.encode, messages))
    except UnicodeEncodeError:
        data = list(map(str.encode, messages, repeat("utf-8"), repeat("surrogatepass")))
    # struct packs a whole call in one go; array() parses each item as a call argument (~1,000
    # instructions an event more, callgrind). The bytes are the same: native int64 / uint64.
    n = len(events)
    stamps = struct.pack(f"={n}q", *map(itemgetter(0), events))
    crcs = struct.pack(f"={n}Q", *map(or_, map(lshift, map(len, data), repeat(32)), map(zlib.crc32, data)))
    return stamps, crcs


def _unpack_digests(stamps: bytes, crcs: bytes) -> list[Digest]:
    a, b = array("q"), array("Q")
    a.frombytes(stamps)
    b.frombytes(crcs)
    return [(ts, sc >> 32, sc & 0xFFFFFFFF) for ts, sc in zip(a, b)]


@dataclass
class Entry:
    jid: int
    group: str
    stream: str
    stamps: bytes
    crcs: bytes
    state: str = "send"                 # send (answer unknown) | ok

    def digests(self) -> list[Digest]:
        return _unpack_digests(self.stamps, self.crcs)


@dataclass
class Leftovers:
    """What the previous process sent that may come back: digests per destination, with counts."""

    by_dest: dict[tuple[str, str], Counter[Digest]] = field(default_factory=dict)
    entries: list[int] = field(default_factory=list)     # journal ids these came from
    expires: float | None = None

    def add(self, group: str, stream: str, digests: Iterable[Digest]) -> None:
        self.by_dest.setdefault((group, stream), Counter()).update(digests)

    @property
    def empty(self) -> bool:
        return not any(self.by_dest.values())

    def take(self, group: str, stream: str, pieces: list[LogEvent]) -> list[int]:
        """Positions of `pieces` already sent before the restart (each digest used once)."""
        counter = self.by_dest.get((group, stream))
        if not counter:
            return []
        hits: list[int] = []
        for pos, (ts, message) in enumerate(pieces):
            d = digest(ts, message)
            n = counter.get(d)
            if n:
                hits.append(pos)
                if n == 1:
                    del counter[d]
                else:
                    counter[d] = n - 1
        if not counter:
            del self.by_dest[(group, stream)]
        return hits


class SentJournal:
    """The journal file of one output (see the module comment). Thread-safe: calls run in workers."""

    def __init__(self, path: str, *, fsync: bool = True, warn: Callable[[str], None] = lambda _m: None) -> None:
        self.path = path
        self.fsync = fsync
        self.warn = warn
        self.live: dict[int, Entry] = {}
        self._next = 1
        self._lock = threading.Lock()
        self._fd = -1
        self.written = 0

    # -- start ------------------------------------------------------------------------------------
    def open(self) -> list[Entry]:
        """Read what the previous process left, rewrite the file with it, and return it."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        entries = self._read()
        self.live = {e.jid: e for e in entries}
        self._next = max(self.live, default=0) + 1
        self._rewrite()
        return entries

    def _read(self) -> list[Entry]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        entries: dict[int, Entry] = {}
        pos = 0
        while pos + 4 <= len(data):
            (size,) = _FRAME.unpack_from(data, pos)
            body = data[pos + 4: pos + 4 + size]
            if len(body) < size:
                break                            # cut by the kill: this call never started
            try:
                rec = msgpack.unpackb(body, raw=False)
                self._apply(entries, rec)
            except (ValueError, TypeError, IndexError, msgpack.UnpackException) as exc:
                self.warn(f"delivery journal {self.path}: unreadable record at byte {pos} ({exc}); "
                          "the rest is ignored (its events may be sent again)")
                break
            pos += 4 + size
        return list(entries.values())

    @staticmethod
    def _apply(entries: dict[int, Entry], rec: list[Any]) -> None:
        op = rec[0]
        if op == "send":
            _op, jid, group, stream, stamps, crcs = rec
            entries[jid] = Entry(jid, group, stream, stamps, crcs)
        elif op == "ok":
            if rec[1] in entries:
                entries[rec[1]].state = "ok"
        elif op == "drop":
            for jid in rec[1]:
                entries.pop(jid, None)
        else:
            raise ValueError(f"unknown record {op!r}")

    def _rewrite(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            for e in self.live.values():
                f.write(self._frame(["send", e.jid, e.group, e.stream, e.stamps, e.crcs]))
                if e.state == "ok":
                    f.write(self._frame(["ok", e.jid]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.written = os.fstat(self._fd).st_size

    @staticmethod
    def _frame(rec: list[Any]) -> bytes:
        body = msgpack.packb(rec, use_bin_type=True)
        return _FRAME.pack(len(body)) + body

    def _append(self, rec: list[Any], sync: bool = False) -> None:
        frame = self._frame(rec)
        os.write(self._fd, frame)
        self.written += len(frame)
        if sync and self.fsync:
            os.fsync(self._fd)

    # -- while running ----------------------------------------------------------------------------
    def sending(self, group: str, stream: str, events: list[LogEvent]) -> int:
        """Before a PutLogEvents call of `events`: its journal id."""
        stamps, crcs = _pack_digests(events)
        with self._lock:
            jid = self._next
            self._next += 1
            self.live[jid] = Entry(jid, group, stream, stamps, crcs)
            self._append(["send", jid, group, stream, stamps, crcs], sync=True)
        return jid

    def accepted(self, jid: int) -> None:
        with self._lock:
            entry = self.live.get(jid)
            if entry is not None and entry.state != "ok":
                entry.state = "ok"
                self._append(["ok", jid])

    def forget(self, jids: Iterable[int]) -> None:
        """Calls not stored (failed with an answer), or whose events cannot come back (retired)."""
        with self._lock:
            gone = [j for j in jids if self.live.pop(j, None) is not None]
            if not gone:
                return
            self._append(["drop", gone])
            if self.written > COMPACT_BYTES and len(self.live) * 4 < len(gone) + 64:
                self._rewrite()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def leftovers_of(entries: list[Entry], stored: Callable[[Entry], bool | None]) -> tuple[Leftovers, list[int], int]:
    """Leftovers from the previous process's entries: "ok" ones, and calls in flight that `stored`
    finds in the stream. Returns (leftovers, ids of entries not stored or unknown, unknown events)."""
    left = Leftovers()
    not_stored: list[int] = []
    unknown_events = 0
    for e in entries:
        ok = e.state == "ok" or stored(e)
        if ok:
            left.add(e.group, e.stream, e.digests())
            left.entries.append(e.jid)
        else:
            if ok is None:
                unknown_events += len(e.stamps) // 8
            not_stored.append(e.jid)
    return left, not_stored, unknown_events


def expire_at(now: float | None = None) -> float:
    return (time.monotonic() if now is None else now) + LEFTOVER_TTL
