"""From chunk records to one destination's PutLogEvents plan: the Ruby plugin's record handling
(drop empty values, scrub invalid UTF-8, message_keys / JSON / <format>, length cap), then batches.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate, count, islice, repeat
from operator import add, itemgetter, le
from typing import Any, Callable, Iterable, Sequence

import orjson

from kawa.ruby_values import ruby_to_s
from kawa.plugins.formatters.json import json_gem_dumps
from kawa.plugins.outputs.cloudwatch_logs import batcher

NS_PER_MS = 1_000_000
# orjson and Ruby's Float#to_s (yajl, the Ruby plugin's json_handler) differ only for exponent forms:
# orjson "1e+16" / "0.00001", Ruby "1.0e+16" / "1.0e-05". Such output goes through the exact encoder.
_FLOAT_MISMATCH = re.compile(rb"[:,\[]-?(?:[0-9]+e|0\.0000)")
# Texts that send a record of a batch through build(): the float pre-checks of yajl_dumps, and `:""`,
# which every top-level "" value (dropped by build) spells in orjson's output (nested ones too: harmless).
_SUSPECT_NEEDLES = ("e+", "e-", "0.0000", ':""')
_EMPTY_VALUE = (':""',)          # the only one of them records of str values can hold
# Every value in orjson's output follows a key's `":` (values in arrays and nested objects too: the
# array or object itself does). When each `":` is followed by a non-empty string, the batch holds no
# number and no "" value, so none of the needles above can matter: one scan instead of four. A `":`
# inside a string (spelled `\":`) only sends the batch to the needle scans.
_ANY_NON_STRING_OR_EMPTY = re.compile(r'":(?:[^"]|"")')
# orjson.Fragment (orjson >= 3.10) puts raw bytes in orjson's output: a NUL between the records of one
# dumps() call marks where each ends (orjson writes a NUL inside strings as \u0000, never raw).
_FRAGMENT = getattr(orjson, "Fragment", None)
_SEPARATOR = ",\0,"


def scrub(value: Any) -> Any:
    """Ruby String#scrub over a record: invalid UTF-8 (kept as lone surrogates) -> U+FFFD."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def yajl_dumps(record: dict[str, Any]) -> str:
    """Yajl.dump(record) text: orjson, exact encoder when a float spelling would differ."""
    try:
        data = orjson.dumps(record)
    except (TypeError, orjson.JSONEncodeError):
        return json_gem_dumps(record)
    # memmem pre-checks first: the regex costs ~1 µs per message, the substring tests ~50 ns.
    if (b"e+" in data or b"e-" in data or b"0.0000" in data) and _FLOAT_MISMATCH.search(data) is not None:
        return json_gem_dumps(record)
    return data.decode()


def cut_utf8(message: str, max_bytes: int) -> str:
    """The longest prefix of at most max_bytes UTF-8 bytes that does not split a character."""
    if len(message) <= max_bytes and message.isascii():
        return message
    data = message.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return message
    end = max_bytes
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass")


class MessageBuilder:
    """One record -> the message text, exactly in the Ruby plugin's order (write())."""

    def __init__(self, *, message_keys: list[str], formatter: Callable[[str, int, dict[str, Any]], str] | None,
                 max_message_length: int | None, remove_keys: tuple[str, ...]) -> None:
        self.message_keys = message_keys
        self.formatter = formatter
        self.max_len = max_message_length
        self.remove_keys = remove_keys

    def build(self, tag: str, time_ns: int, record: dict[str, Any]) -> str:
        for key in self.remove_keys:      # remove_retention_in_days_key / remove_log_group_aws_tags_key
            record.pop(key, None)
        if "" in record.values():         # drop_empty_record: only top-level "" values
            record = {k: v for k, v in record.items() if v != ""}
        if self.formatter is not None:
            message = self.formatter(tag, time_ns, scrub(record))
        elif self.message_keys:
            parts = [ruby_to_s(record.get(k)) for k in self.message_keys]
            message = " ".join(p for p in parts if p)
            message = scrub(message)
        else:
            try:
                message = yajl_dumps(record)
            except UnicodeEncodeError:
                message = yajl_dumps(scrub(record))
            else:
                if not message.isascii() and _has_surrogates(message):
                    message = yajl_dumps(scrub(record))
        if self.max_len is not None:
            message = cut_utf8(message, self.max_len)
        return message

    @property
    def plain(self) -> bool:
        """Messages are the record JSON, nothing removed or cut: what build_batch handles."""
        return self.formatter is None and not self.message_keys and self.max_len is None and not self.remove_keys

    def build_batch(self, tag: str, times: list[int], records: list[Any], str_values: bool = False) -> list[str] | None:
        """build() of every record, in one orjson call and a few C-level scans instead of one Python
        pass per record: the same texts, "" where build() gives "". None when the batch needs the
        per-record path (not plain, a record not a dict, orjson refusing a record: surrogates, other types).

        Records whose JSON holds a suspect text (a float spelling or an empty value) go through build().
        `str_values`: the records are flat with str values only (kawa.event.StrValueEvents), so only
        an empty value can be suspect.
        """
        if not self.plain or _FRAGMENT is None or not records or set(map(type, records)) != {dict}:
            return None
        items: list[Any] = [_FRAGMENT(b"\0")] * (2 * len(records) - 1)
        items[::2] = records
        try:
            text = orjson.dumps(items)[1:-1].decode()
        except (TypeError, orjson.JSONEncodeError, RecursionError):
            return None
        messages = text.split(_SEPARATOR)
        if len(messages) != len(records):      # cannot happen (see _FRAGMENT); the exact path if it did
            return None
        build = self.build
        for k in _suspects(text, messages, str_values):
            messages[k] = build(tag, times[k], records[k])
        return messages


def _suspects(text: str, messages: list[str], str_values: bool) -> list[int]:
    """Indexes of the messages (joined by _SEPARATOR into `text`) holding one of _SUSPECT_NEEDLES
    (only the empty value with `str_values`): a first scan that usually finds none, then one scan
    of the batch per needle and a step per message found."""
    if str_values:
        needles = _EMPTY_VALUE
        # a backward scan tests the needle's first character, ':', much rarer in JSON than the
        # quote a forward one tests first: 220 against 490 ns a line of nginx JSON
        if text.rfind(_EMPTY_VALUE[0]) < 0:
            return []
    else:
        needles = _SUSPECT_NEEDLES
        if _ANY_NON_STRING_OR_EMPTY.search(text) is None:
            return []
    starts: list[int] | None = None
    found: set[int] = set()
    for needle in needles:
        at = text.find(needle)
        while at >= 0:
            if starts is None:
                starts = list(accumulate(map(add, map(len, messages), repeat(len(_SEPARATOR))), initial=0))
            k = bisect_right(starts, at) - 1
            found.add(k)
            at = text.find(needle, starts[k + 1])
    return sorted(found)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class ChunkRecords:
    """Plan.records without the decoded records: each record's position in its chunk, read again from
    the chunk (still in the buffer while it is written) the first time one is needed (@ERROR routing).

    A list of (tag, time_ns, record) holds every decoded record of the chunk while it is sent: for a
    memory buffer's 8 MiB chunk of nginx lines that is ~26 MiB of dicts and strings (tracemalloc).
    """

    def __init__(self, read_chunk: Callable[[], Iterable[tuple[str, int, Any]]]) -> None:
        self._read_chunk = read_chunk
        # record index -> position in the chunk's record stream: a range while the records are one
        # run of positions (a whole chunk for one destination: no array of 8 bytes a record to fill)
        self.positions: array[int] | range = range(0)
        self._loaded: list[tuple[str, int, Any]] | None = None

    def _array(self) -> array[int]:
        if self.positions.__class__ is range:
            self.positions = array("q", self.positions)
        return self.positions  # type: ignore[return-value]

    def add(self, position: int) -> int:
        """Remember the record at `position` of the chunk; returns its record index."""
        positions = self._array()
        positions.append(position)
        return len(positions) - 1

    def add_range(self, start: int, stop: int) -> None:
        """add() of every position in [start, stop)."""
        if not self.positions:
            self.positions = range(start, stop)
        else:
            self._array().extend(range(start, stop))

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[str, int, Any]:
        if self._loaded is None:
            wanted = self.positions
            everything = list(self._read_chunk())
            self._loaded = [everything[p] for p in wanted]
        return self._loaded[index]


@dataclass
class Plan:
    """One group/stream of one chunk: its pieces in send order and the batches over them."""

    group: str
    stream: str
    pieces: list[batcher.LogEvent] = field(default_factory=list)
    batches: list[tuple[int, int]] = field(default_factory=list)    # [start, end) positions
    source: Sequence[int] = field(default_factory=list)             # position -> record index
    # record index -> (tag, time_ns, original): a list, or ChunkRecords to re-read them only when needed
    records: list[tuple[str, int, dict[str, Any]]] | ChunkRecords = field(default_factory=list)
    tags: dict[str, str] | None = None
    retention: int | None = None
    result: batcher.BatchResult | None = None

    @property
    def key(self) -> str:
        return self.group + "\0" + self.stream

    def window(self, now_ms: int, retention_days: int | None, send_anyway: bool) -> tuple[int, int]:
        """[lo, hi): positions AWS would store; the pieces are sorted, so rejects are a prefix/suffix."""
        ts = list(map(itemgetter(0), self.pieces))
        if send_anyway:
            return bisect_left(ts, 0), len(ts)     # negative timestamps fail the whole request
        oldest = now_ms - batcher.TOO_OLD_MS
        if retention_days is not None:
            oldest = max(oldest, now_ms - retention_days * batcher.MS_PER_DAY)
        return bisect_left(ts, max(oldest, 0)), bisect_right(ts, now_ms + batcher.TOO_NEW_MS)


def plan_destination(plan: Plan, messages: list[tuple[int, str, int]], *, max_events: int,
                     oversize: batcher.OversizePolicy) -> None:
    """Sort (stably) and batch `messages` = (timestamp_ms, message, record index) into `plan`."""
    messages.sort(key=itemgetter(0))
    # map(itemgetter(...)) makes the (timestamp, message) pairs and the sources in C, not in a loop.
    _batch_into(plan, list(map(itemgetter(0, 1), messages)), list(map(itemgetter(2), messages)),
                max_events=max_events, oversize=oversize)


def plan_in_order(plan: Plan, times_ms: list[int], messages: list[str], *, max_events: int,
                  oversize: batcher.OversizePolicy) -> None:
    """plan_destination for events given as two columns, the record index being the position. A
    chunk's events usually arrive in time order: then one C pass checks it, no sort is needed, and
    when no event needs a policy the batches are cut over the columns (batcher.cut_in_order)."""
    if not all(map(le, times_ms, islice(times_ms, 1, None))):
        plan_destination(plan, list(zip(times_ms, messages, count())), max_events=max_events, oversize=oversize)
        return
    bounds = batcher.cut_in_order(times_ms, messages, max_events=max_events)
    if bounds is None:
        _batch_into(plan, list(zip(times_ms, messages)), range(len(messages)), max_events=max_events,
                    oversize=oversize)
        return
    plan.result = batcher.BatchResult()             # nothing truncated, split or dropped
    plan.pieces = list(zip(times_ms, messages))
    plan.batches = bounds
    plan.source = range(len(messages))


def _batch_into(plan: Plan, events: list[batcher.LogEvent], sources: Sequence[int], *, max_events: int,
                oversize: batcher.OversizePolicy) -> None:
    """Batch `events`, sorted, into `plan`; `sources[k]` is the record index of events[k]."""
    result = batcher.build_batches(events, max_events=max_events, oversize=oversize, empty="drop")
    plan.result = result
    pos = 0
    for b in result.batches:
        plan.pieces.extend(b.events)
        plan.batches.append((pos, pos + len(b.events)))
        pos += len(b.events)
    if not result.split_extra:
        plan.source = list(sources)
        return
    # Some events were split into several pieces: count pieces per message the way the batcher did.
    max_msg = batcher.MAX_MESSAGE_BYTES
    source: list[int] = []
    for (_, msg), i in zip(events, sources):
        size = batcher.utf8_len(msg.encode("utf-8", "replace").decode("utf-8"))
        n = 1 if size <= max_msg else len(batcher.split_message(msg.encode("utf-8", "replace").decode(), max_msg))
        source.extend([i] * n)
    plan.source = source


def pack_frames(pack: Callable[[Any], bytes], tag: str, times: list[int], messages: list[str]) -> bytes:
    """The bytes of pack((tag, time, message)) for each event, from one pack() call: msgpack of a
    list is the list's array header followed by each item's own bytes."""
    data = pack(list(zip(repeat(tag), times, messages)))
    n = len(messages)
    return data[1 if n < 16 else 3 if n < 0x10000 else 5:]     # fixarray / array 16 / array 32 header
