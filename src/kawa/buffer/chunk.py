"""Chunks and their Metadata(timekey, tag, variables), and how a batch is split by chunk keys.

A chunk holds msgpack event frames `[time_ns, record]` (standard) or bytes an output formatted,
stored as they are or (`compress gzip`) as gzip members; readers always get them decompressed.
"""

from __future__ import annotations

import os
import struct
import time as _time
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator

import msgpack

from kawa.buffer.options import ChunkKeys
from kawa.event import NS_PER_SEC, Event

# Fluentd EventTime msgpack ext type (lib/fluent/time.rb TYPE = 0): 4-byte sec + 4-byte nsec, big endian.
# kawa writes integer nanoseconds but reads this form too, so Fluentd-written chunks resume.
EVENT_TIME_EXT = 0
_EVENT_TIME = itemgetter(0)
# Bytes fed to one msgpack Unpacker at a time: its buffer refuses more than 100 MiB (max_buffer_size),
# and file chunks may be 256 MiB (more once decompressed). 1 MiB: the Unpacker keeps a copy of what
# it was fed, so a bigger slice is that much more memory per chunk being read (16 MiB cost 12 MiB of
# peak RSS in the CloudWatch burst) for no speed gain.
UNPACK_FEED = 1 << 20


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EVENT_TIME_EXT and len(data) == 8:
        sec, nsec = struct.unpack(">II", data)
        return sec * NS_PER_SEC + nsec
    return msgpack.ExtType(code, data)


def new_unpacker(**kw: Any) -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, strict_map_key=False, ext_hook=_ext_hook,
                            unicode_errors="surrogateescape", **kw)


def iter_frames(pieces: Iterable[bytes]) -> Iterator[Any]:
    """Every msgpack object of a plain stream given in pieces, fed in slices the Unpacker accepts."""
    for frames in frame_lists(pieces):
        yield from frames


def frame_lists(pieces: Iterable[bytes]) -> Iterator[list[Any]]:
    """The msgpack objects of a plain stream, a list per slice fed (about UNPACK_FEED bytes of them):
    for callers that work a list at a time in C, without holding the whole chunk decoded."""
    unpacker = new_unpacker(use_list=True)
    for piece in pieces:
        view = memoryview(piece)
        for start in range(0, len(view), UNPACK_FEED):
            unpacker.feed(view[start:start + UNPACK_FEED])
            frames = list(unpacker)
            if frames:
                yield frames


class HeldFrames:
    """A formatted batch kept as the output's own objects (`columns`) by a buffer that can hold them
    (memory, uncompressed): the output that made it reads the columns back at write time instead of
    unpacking msgpack it packed at emit (cloudwatch_logs: ~1.5 µs an event of ~10). Whatever reads the
    chunk as bytes (backup, @ERROR, a buffer that stores bytes) gets `pack(columns)`, made then.

    `len()` is the size the output gives, what the buffer's byte limits count: cloudwatch_logs gives
    the memory its columns take, so a memory buffer's limits bound the process's memory."""

    __slots__ = ("columns", "size", "_pack")

    def __init__(self, columns: Any, size: int, pack: Callable[[Any], bytes]) -> None:
        self.columns = columns
        self.size = size
        self._pack = pack

    def __len__(self) -> int:
        return self.size

    def packed(self) -> bytes:
        return self._pack(self.columns)


def as_bytes(data: bytes | HeldFrames) -> bytes:
    """What a piece of chunk data is as bytes (a HeldFrames packed now)."""
    return data.packed() if data.__class__ is HeldFrames else data  # type: ignore[union-attr,return-value]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


class Metadata:
    """What every event of a chunk shares: `timekey` (epoch seconds or None), `tag` (or None),
    `variables` (record chunk key -> value, or None). Hashable; compare by value."""

    __slots__ = ("timekey", "tag", "variables", "_hash")

    def __init__(self, timekey: int | None = None, tag: str | None = None,
                 variables: dict[str, Any] | None = None) -> None:
        self.timekey = timekey
        self.tag = tag
        self.variables = variables
        self._hash = hash((timekey, tag, _freeze(variables)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Metadata) and self.timekey == other.timekey and self.tag == other.tag
                and self.variables == other.variables)

    def __repr__(self) -> str:
        return f"Metadata(timekey={self.timekey!r}, tag={self.tag!r}, variables={self.variables!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"timekey": self.timekey, "tag": self.tag, "variables": self.variables, "seq": 0}


def new_chunk_id(clock_ns: Callable[[], int] = _time.time_ns) -> bytes:
    """16 bytes like Fluentd's UniqueId: microseconds first (ids sort by creation), then random."""
    micros = clock_ns() // 1000
    return struct.pack(">Q", micros) + os.urandom(8)


class Chunk:
    """One chunk. Backends implement `_append`, `_raw`, `purge` (and may stream `_plain_pieces`).

    Public contract (outputs rely on it): `.id` (32 hex chars), `.metadata`, `.record_count`,
    `.bytesize`, `.events()` (standard chunks), `.read()` (bytes: the formatted text, or the msgpack
    stream of standard chunks), `.formatted`, `.created_at` / `.modified_at` (ns).
    `.compressed`: the data is stored as gzip members (`<buffer> compress gzip`); `.bytesize` then
    counts the stored (compressed) bytes, as Fluentd's, and `.read()` / `.events()` decompress.
    """

    persistent = False

    def __init__(self, unique_id: bytes, metadata: Metadata, formatted: bool, created_at: int,
                 compressed: bool = False) -> None:
        self.unique_id = unique_id
        self.id = unique_id.hex()
        self.metadata = metadata
        self.formatted = formatted
        self.compressed = compressed
        self.created_at = created_at
        self.modified_at = created_at
        self.record_count = 0
        self.bytesize = 0
        # fsyncs in flight (file buffer): not written out meanwhile, or a kill -9 between its purge
        # and the emit's checkpoint could lose the only record that its lines are delivered
        self.syncing = 0
        self.state = "staged"          # staged -> queued -> (dequeued) -> purged
        self.acks: list[Any] = []      # DeliveryAck objects settled when this chunk is committed

    def append(self, data: bytes, records: int, now_ns: int, checkpoint: tuple[str, int] | None = None) -> None:
        """Add `records` events already serialized as `data` (a gzip member when compressed, see
        Buffer.encode); all or nothing. `checkpoint`: the emitting input's (kawa.delivery), which a
        persistent chunk records as pending until Buffer.sync commits it."""
        self._append(data, records, checkpoint)
        self.record_count += records
        self.bytesize += len(data)
        self.modified_at = now_ns

    def mark(self) -> tuple[Any, ...]:
        """This chunk's state now, for `rollback` (Buffer.write undoing a failed emit)."""
        return self.record_count, self.bytesize, self.modified_at, self._data_mark()

    def rollback(self, mark: tuple[Any, ...]) -> None:
        """Remove what was appended since `mark` (nothing may have read or flushed it since)."""
        record_count, bytesize, modified_at, data_mark = mark
        self._rollback(data_mark)
        self.record_count, self.bytesize, self.modified_at = record_count, bytesize, modified_at

    def read(self) -> bytes:
        """The data, decompressed: the formatted text, or the msgpack stream of events."""
        return self._raw()

    def read_pieces(self) -> Iterable[bytes]:
        """`read()` in pieces, without joining them into one copy (outputs that parse a stream)."""
        return self._plain_pieces()

    def held(self) -> list[HeldFrames] | None:
        """The chunk's data as the HeldFrames its output appended, when all of it is held that way
        (memory buffers); None otherwise: read it as bytes."""
        return None

    def events(self) -> Iterator[Event]:
        """(time_ns, record) of every event; only for standard (not formatted) chunks."""
        if self.formatted:
            raise TypeError("this chunk holds bytes formatted by the output, not events")
        for time_ns, record in iter_frames(self._plain_pieces()):
            yield time_ns, record

    def _plain_pieces(self) -> Iterable[bytes]:
        """The decompressed msgpack stream of a standard chunk, in pieces (backends stream it)."""
        return (self._raw(),)

    def enqueued(self) -> None:
        self.state = "queued"

    def _append(self, data: bytes, records: int, checkpoint: tuple[str, int] | None) -> None:
        raise NotImplementedError

    def _raw(self) -> bytes:
        raise NotImplementedError

    def _data_mark(self) -> Any:
        raise NotImplementedError

    def _rollback(self, data_mark: Any) -> None:
        raise NotImplementedError

    def purge(self) -> None:
        """Forget the data (after commit or when moved to the dead-letter directory)."""
        self.state = "purged"

    def file_gone(self) -> bool:
        """True when the data lives in a file that no longer exists (removed outside kawa, e.g. to
        free a full disk): no retry can read it."""
        return False

    def close(self) -> None:
        """Release handles, keep data (persistent backends resume it)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state} {self.metadata!r} records={self.record_count}>"


# -- chunk key extraction ----------------------------------------------------------------------

def make_accessor(key: str) -> Callable[[dict[str, Any]], Any]:
    """Fluentd record_accessor for chunk keys: `$.a.b` walks nested hashes, plain keys are literal."""
    if not key.startswith("$."):
        return lambda record: record.get(key)
    path = key[2:].split(".")

    def get(record: dict[str, Any]) -> Any:
        value: Any = record
        for part in path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    return get


class TimekeyCalc:
    """Fluentd output.rb calculate_timekey: start of the timekey range in the configured zone."""

    def __init__(self, timekey: float, utc_offset: Any) -> None:
        self.timekey = int(timekey)
        self.offset = utc_offset

    def __call__(self, time_ns: int) -> int:
        sec = time_ns // NS_PER_SEC
        offset = self.offset
        if not isinstance(offset, int):
            delta = datetime.fromtimestamp(sec, timezone.utc).astimezone(offset).utcoffset()
            offset = int(delta.total_seconds()) if delta is not None else 0
        return sec - ((sec + offset) % self.timekey)


class Chunker:
    """Groups a batch's events by Metadata according to the chunk keys."""

    def __init__(self, keys: ChunkKeys, timekey: float | None, utc_offset: Any) -> None:
        self.keys = keys
        self.timekey = TimekeyCalc(timekey, utc_offset) if keys.time and timekey else None
        self.accessors = [(k, make_accessor(k)) for k in keys.records]
        self._simple: dict[str | None, Metadata] = {}

    def metadata_for(self, tag: str, time_ns: int, record: dict[str, Any]) -> Metadata:
        timekey = self.timekey(time_ns) if self.timekey is not None else None
        variables = {k: get(record) for k, get in self.accessors} if self.accessors else None
        return Metadata(timekey, tag if self.keys.tag else None, variables)

    def split(self, tag: str, events: list[Event]) -> dict[Metadata, list[Event]]:
        if self.keys.simple:
            key = tag if self.keys.tag else None
            meta = self._simple.get(key)
            if meta is None:
                meta = self._simple[key] = Metadata(None, key, None)
            return {meta: events}
        groups: dict[Metadata, list[Event]] = {}
        if not self.accessors and self.timekey is not None:
            calc = self.timekey
            if type(calc.offset) is int:
                # With a fixed offset the timekey never decreases with time: when the earliest and
                # the latest event share one, the whole batch does (two C passes, no per-event call).
                first = calc(min(map(_EVENT_TIME, events)))
                if first == calc(max(map(_EVENT_TIME, events))):
                    return {Metadata(first, tag if self.keys.tag else None, None): events}
            by_key: dict[int, list[Event]] = {}
            for event in events:
                tk = calc(event[0])
                group = by_key.get(tk)
                if group is None:
                    by_key[tk] = [event]
                else:
                    group.append(event)
            tag_value = tag if self.keys.tag else None
            return {Metadata(tk, tag_value, None): evs for tk, evs in by_key.items()}
        for event in events:
            meta = self.metadata_for(tag, event[0], event[1])
            group = groups.get(meta)
            if group is None:
                groups[meta] = [event]
            else:
                group.append(event)
        return groups
