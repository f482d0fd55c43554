"""Fluentd's Forward protocol v1, the server's half: a message in, its raw events out.

A message is one msgpack (or JSON) array in one of four modes:

    Message                  [tag, time, record, option?]
    Forward                  [tag, [[time, record], ...], option?]
    PackedForward            [tag, <bin: a msgpack stream of [time, record]>, option?]
    CompressedPackedForward  PackedForward with option {"compressed": "gzip"}

`time` is integer seconds or an EventTime (msgpack ext type 0: uint32 seconds, uint32 nanoseconds);
Fluent Bit 2+ sends [EventTime, metadata]. option "chunk" asks for {"ack": chunk} once the events
are taken, "size" counts the events.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Iterable, Iterator

import msgpack

NS = 1_000_000_000
EVENT_TIME_EXT = 0
_SECONDS_NANOS = struct.Struct(">II")


class EventTime(int):
    """An event time that came as msgpack's EventTime ext, in nanoseconds (an int seconds value is
    a plain int): Fluentd accepts both, and nothing else, as a time."""

    __slots__ = ()


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EVENT_TIME_EXT and len(data) == 8:
        seconds, nanos = _SECONDS_NANOS.unpack(data)
        return EventTime(seconds * NS + nanos)
    return msgpack.ExtType(code, data)


def pack_entries(events: Iterable[tuple[int, Any]], time_as_integer: bool = False) -> bytes:
    """Events as a msgpack stream of [EventTime, record] (PackedForward entries, and Fluentd's own
    buffer chunks); [seconds, record] with `time_as_integer` (Fluentd v0.12)."""
    pack = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape").pack
    if time_as_integer:
        return b"".join(pack([t // NS, r]) for t, r in events)
    ext = msgpack.ExtType
    return b"".join(pack([ext(EVENT_TIME_EXT, _SECONDS_NANOS.pack(*divmod(t, NS))), r]) for t, r in events)


def unpacker(max_buffer_size: int = 0) -> msgpack.Unpacker:
    """A streaming msgpack decoder as Fluentd's: str as text (bytes that are not UTF-8 kept as they
    came, surrogate-escaped), bin as bytes, any map key, EventTime decoded."""
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=_ext_hook,
                            strict_map_key=False, max_buffer_size=max_buffer_size)


def time_ns(value: Any) -> int | None:
    """Nanoseconds of a valid event time (0: "now", as the sender did not set one); None when the
    value is no time Fluentd accepts (nil, a float, a string)."""
    if type(value) is list:                      # Fluent Bit: [EventTime, metadata]
        value = value[0] if value else None
    if type(value) is EventTime:
        return int(value)
    if type(value) is int:
        return value * NS
    return None


class MessageError(ValueError):
    """A message that cannot be taken apart (its events cannot be read)."""


def packed_entries(entries: bytes | str, compressed: Any, decompression_limit: int) -> Iterator[Any]:
    """The objects of a PackedForward's msgpack stream, decompressed first when `compressed` says gzip."""
    data = entries.encode("utf-8", "surrogateescape") if isinstance(entries, str) else entries
    if compressed is not None and compressed != "text":
        if compressed != "gzip":
            raise MessageError(f"compressed={compressed!r} is not supported (kawa reads gzip)")
        data = gunzip(data, decompression_limit)
    feed = unpacker()
    feed.feed(data)
    try:
        yield from feed
    except (ValueError, msgpack.UnpackException) as exc:     # ExtraData, FormatError, StackError are ValueErrors
        raise MessageError(f"broken msgpack in the packed entries: {type(exc).__name__}: {exc}") from None


def gunzip(data: bytes, limit: int) -> bytes:
    """Every gzip member of `data`, concatenated (Fluentd's senders compress each append as one
    member); more than `limit` bytes out is refused, so a small bomb cannot fill the memory."""
    out: list[bytes] = []
    size = 0
    while data:
        inflate = zlib.decompressobj(wbits=31)
        try:
            piece = inflate.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise MessageError(f"broken gzip data: {exc}") from None
        size += len(piece)
        if size > limit:
            raise MessageError(f"decompressed data is larger than decompression_size_limit ({limit} bytes)")
        out.append(piece)
        if not inflate.eof:
            raise MessageError("truncated gzip data")
        data = inflate.unused_data
    return b"".join(out)


class JsonMessages:
    """Messages sent as JSON text one after another (Fluentd's in_forward accepts a connection whose
    first byte is '{' or '['): a resumable splitter over what arrived so far."""

    def __init__(self, max_buffer: int) -> None:
        self._text = ""
        self._decoder = json.JSONDecoder()
        self._max = max_buffer
        self._pending = b""

    def feed(self, data: bytes) -> None:
        data = self._pending + data
        try:
            text = data.decode("utf-8")
            self._pending = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(data) - 3:               # not a character cut at the end
                text = data.decode("utf-8", "surrogateescape")
                self._pending = b""
            else:
                text, self._pending = data[:exc.start].decode("utf-8"), data[exc.start:]
        self._text += text
        if self._max and len(self._text) > self._max:
            raise MessageError(f"a JSON message is longer than {self._max} bytes")

    def __iter__(self) -> Iterator[Any]:
        text = self._text
        at = 0
        while True:
            while at < len(text) and text[at] in " \t\r\n":
                at += 1
            if at >= len(text):
                break
            try:
                value, at = self._decoder.raw_decode(text, at)
            except json.JSONDecodeError as exc:
                if exc.pos >= len(text) or _incomplete(exc):
                    break                                # the rest has not arrived yet
                self._text = ""
                raise MessageError(f"broken JSON: {exc}") from None
            yield value
        self._text = text[at:]


def _incomplete(exc: json.JSONDecodeError) -> bool:
    return exc.msg.startswith("Unterminated string") or exc.msg.startswith("Expecting")\
        and exc.pos >= len(exc.doc) - 1
