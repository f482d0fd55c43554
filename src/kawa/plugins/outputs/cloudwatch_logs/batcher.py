"""Pure PutLogEvents request building: stable sort, size/count/span limits, oversize and empty policy.
No I/O: the output hands in (timestamp_ms, message) pairs for one group/stream and sends what we return.
"""

# Empty messages (InputLogEvent.message has min length 1) are dropped by default, as
# fluent-plugin-cloudwatch-logs v0.15.0 does ("... do not have non-empty record. Skip." in write());
# empty="space" sends a single space instead for users who want every record to leave a trace.
# Either way the count is returned so the caller can report it.

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add, itemgetter
from typing import Iterable, Literal

LogEvent = tuple[int, str]    # (timestamp in ms since epoch, message): what goes into one InputLogEvent

# --- AWS limits -------------------------------------------------------------------------------
# API_PutLogEvents: "The maximum batch size is 1,048,576 bytes. This size is calculated as the sum
# of all event messages in UTF-8, plus 26 bytes for each log event."
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
# API_PutLogEvents / API_InputLogEvent: "Each log event can be no larger than 1 MB" (raised from
# 256 KB in April 2025). Counted with the 26-byte overhead, as the Fluentd plugin does, which is the
# stricter reading.
MAX_EVENT_BYTES = 1_048_576
MAX_MESSAGE_BYTES = MAX_EVENT_BYTES - EVENT_OVERHEAD_BYTES
# API_PutLogEvents: "The maximum number of log events in a batch is 10,000." (InputLogEvents max 10000)
MAX_BATCH_EVENTS = 10_000
# API_PutLogEvents: "A batch of log events in a single request cannot span more than 24 hours."
# We keep every batch strictly below 24 h (last - first < 24 h), like the Fluentd plugin's `>=` test,
# so an exact-24 h pair never depends on how AWS rounds the boundary.
MAX_BATCH_SPAN_MS = 24 * 60 * 60 * 1000
# API_PutLogEvents: events "older than 14 days or older than the retention period of the log group"
# and events "more than 2 hours in the future" are rejected while the rest are stored.
TOO_OLD_MS = 14 * 24 * 60 * 60 * 1000
TOO_NEW_MS = 2 * 60 * 60 * 1000
MS_PER_DAY = 24 * 60 * 60 * 1000

# Appended to truncated messages so a reader of the log group sees the cut was deliberate.
TRUNCATION_MARKER = "[truncated by kawa]"

OversizePolicy = Literal["truncate", "split"]
EmptyPolicy = Literal["drop", "space"]


@dataclass(slots=True)
class Batch:
    """One PutLogEvents request's events, sorted, with their AWS-counted size."""

    events: list[LogEvent]
    size_bytes: int          # sum of UTF-8 message bytes + 26 per event, as AWS counts it

    def request_events(self) -> list[dict[str, int | str]]:
        """The `logEvents` parameter for botocore's put_log_events."""
        return [{"timestamp": ts, "message": msg} for ts, msg in self.events]


@dataclass(slots=True)
class BatchResult:
    """The batches plus what had to be changed to make them valid, so the caller can count and warn."""

    batches: list[Batch] = field(default_factory=list)
    truncated: int = 0       # oversized events cut down (policy truncate)
    split: int = 0           # oversized events cut into continuation events (policy split)
    split_extra: int = 0     # extra events created by splitting
    dropped_empty: int = 0   # empty messages dropped (policy drop)
    replaced_empty: int = 0  # empty messages sent as a single space (policy space)
    scrubbed: int = 0        # messages whose lone surrogates could not be UTF-8 encoded; replaced by '?'

    @property
    def event_count(self) -> int:
        return sum(len(b.events) for b in self.batches)


def utf8_len(message: str) -> int:
    """UTF-8 byte length; raises UnicodeEncodeError on lone surrogates."""
    # isascii() is a C-speed scan that lets the common case skip building a bytes copy.
    return len(message) if message.isascii() else len(message.encode("utf-8"))


def _cut_at_boundary(data: bytes, end: int) -> int:
    """Largest cut <= end that does not split a UTF-8 sequence (data[end] is not a continuation byte)."""
    while 0 < end < len(data) and (data[end] & 0xC0) == 0x80:
        end -= 1
    return end


def truncate_message(message: str, max_message_bytes: int = MAX_MESSAGE_BYTES,
                     marker: str = TRUNCATION_MARKER) -> str:
    """Cut `message` at a UTF-8 boundary and append `marker`, all within max_message_bytes."""
    data = message.encode("utf-8")
    if len(data) <= max_message_bytes:
        return message
    room = max_message_bytes - len(marker.encode("utf-8"))
    if room < 0:
        raise ValueError(f"max_message_bytes {max_message_bytes} leaves no room for the marker")
    return data[:_cut_at_boundary(data, room)].decode("utf-8") + marker


def split_message(message: str, max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[str]:
    """Cut `message` into pieces of at most max_message_bytes UTF-8 bytes; "".join(pieces) == message."""
    if max_message_bytes < 4:   # a 4-byte code point must fit, or we would loop forever
        raise ValueError("max_message_bytes must be at least 4")
    data = message.encode("utf-8")
    pieces: list[str] = []
    pos, total = 0, len(data)
    while pos < total:
        end = _cut_at_boundary(data, min(pos + max_message_bytes, total))
        pieces.append(data[pos:end].decode("utf-8"))
        pos = end
    return pieces


def _check_limits(max_events: int, max_batch_bytes: int, max_event_bytes: int, max_span_ms: int) -> None:
    """The limits default to AWS's and may only be lowered."""
    if not 1 <= max_events <= MAX_BATCH_EVENTS:
        raise ValueError(f"max_events must be within 1..{MAX_BATCH_EVENTS}")
    if not 0 < max_batch_bytes <= MAX_BATCH_BYTES or not 0 < max_event_bytes <= MAX_EVENT_BYTES:
        raise ValueError("byte limits must be positive and not above AWS's")
    if not 0 < max_span_ms <= MAX_BATCH_SPAN_MS:
        raise ValueError(f"max_span_ms must be within 1..{MAX_BATCH_SPAN_MS}")


def build_batches(
    events: Iterable[LogEvent],
    *,
    max_events: int = MAX_BATCH_EVENTS,
    max_batch_bytes: int = MAX_BATCH_BYTES,
    max_event_bytes: int = MAX_EVENT_BYTES,
    oversize: OversizePolicy = "truncate",
    empty: EmptyPolicy = "drop",
    max_span_ms: int = MAX_BATCH_SPAN_MS,
) -> BatchResult:
    """Turn one group/stream's events into valid PutLogEvents batches, in stable timestamp order.

    The limits default to AWS's and may only be lowered (tests use small ones to exercise the rules).
    """
    _check_limits(max_events, max_batch_bytes, max_event_bytes, max_span_ms)
    if oversize not in ("truncate", "split") or empty not in ("drop", "space"):
        raise ValueError(f"unknown policy oversize={oversize!r} empty={empty!r}")
    # An event must also fit alone in a batch.
    max_msg = min(max_event_bytes, max_batch_bytes) - EVENT_OVERHEAD_BYTES
    marker_len = len(TRUNCATION_MARKER.encode("utf-8"))
    if max_msg < (marker_len + 4 if oversize == "truncate" else 4):
        raise ValueError("event byte limit too small for the oversize policy")

    result = BatchResult()
    # sorted() is stable: equal timestamps keep their arrival order, which readers rely on.
    ordered = sorted(events, key=itemgetter(0))
    sizes = _plain_sizes(list(map(itemgetter(1), ordered)), max_msg)
    if sizes is not None:
        bounds = _bounds(list(map(itemgetter(0), ordered)), sizes, max_events, max_batch_bytes, max_span_ms)
        result.batches.extend(Batch(ordered[i:end], size) for i, end, size in bounds)
        return result
    batches = result.batches

    cur: list[LogEvent] = []
    cur_append = cur.append
    cur_bytes = count = 0
    # `not count` starts each batch (the first one too) at its own first event's timestamp: a dropped
    # empty event before it must not shorten the batch's span.
    first_ts = 0
    overhead = EVENT_OVERHEAD_BYTES
    for ts, msg in ordered:
        if msg.isascii():
            n = len(msg)
        else:
            try:
                n = len(msg.encode("utf-8"))
            except UnicodeEncodeError:
                # Lone surrogates (e.g. from surrogateescape decoding) are not valid UTF-8; AWS only
                # accepts UTF-8, so replace them rather than fail the whole batch.
                msg = msg.encode("utf-8", "replace").decode("utf-8")
                n = len(msg.encode("utf-8"))
                result.scrubbed += 1
        if n == 0:
            if empty == "drop":
                result.dropped_empty += 1
                continue
            msg, n = " ", 1
            result.replaced_empty += 1
        if n > max_msg:
            if oversize == "truncate":
                msg = truncate_message(msg, max_msg)
                pieces = [msg]
                result.truncated += 1
            else:
                pieces = split_message(msg, max_msg)
                result.split += 1
                result.split_extra += len(pieces) - 1
        else:
            # The common small event, no list of pieces.
            size = n + overhead
            if not count or count == max_events or cur_bytes + size > max_batch_bytes \
                    or ts - first_ts >= max_span_ms:
                if count:
                    batches.append(Batch(cur, cur_bytes))
                    cur = []
                    cur_append = cur.append
                cur_bytes = count = 0
                first_ts = ts
            cur_append((ts, msg))
            cur_bytes += size
            count += 1
            continue
        for piece in pieces:
            size = len(piece.encode("utf-8")) + overhead
            if not count or count == max_events or cur_bytes + size > max_batch_bytes \
                    or ts - first_ts >= max_span_ms:
                if count:
                    batches.append(Batch(cur, cur_bytes))
                    cur = []
                    cur_append = cur.append
                cur_bytes = count = 0
                first_ts = ts
            cur_append((ts, piece))
            cur_bytes += size
            count += 1
    if cur:
        batches.append(Batch(cur, cur_bytes))
    return result


def cut_in_order(stamps: list[int], messages: list[str], *, max_events: int = MAX_BATCH_EVENTS,
                 max_batch_bytes: int = MAX_BATCH_BYTES, max_event_bytes: int = MAX_EVENT_BYTES,
                 max_span_ms: int = MAX_BATCH_SPAN_MS) -> list[tuple[int, int]] | None:
    """build_batches' cut for events already in timestamp order, given as two columns: the
    [start, end) positions of each batch, without making the (timestamp, message) pairs or sorting
    them. None when some event needs a policy (empty, oversize, invalid UTF-8): build_batches
    handles those. Limits as build_batches'."""
    _check_limits(max_events, max_batch_bytes, max_event_bytes, max_span_ms)
    sizes = _plain_sizes(messages, min(max_event_bytes, max_batch_bytes) - EVENT_OVERHEAD_BYTES)
    if sizes is None:
        return None
    return [(i, end) for i, end, _ in _bounds(stamps, sizes, max_events, max_batch_bytes, max_span_ms)]


def _plain_sizes(msgs: list[str], max_msg: int) -> list[int] | None:
    """UTF-8 sizes when no message needs a policy (empty, oversize, invalid UTF-8), else None."""
    sizes = list(map(len, msgs))
    if not all(map(str.isascii, msgs)):
        # isascii() is O(1) (a flag of the str): a C scan finds the few messages to encode
        ascii_flags = list(map(str.isascii, msgs))
        k = ascii_flags.index(False)
        try:
            while True:
                sizes[k] = len(msgs[k].encode("utf-8"))
                k = ascii_flags.index(False, k + 1)
        except UnicodeEncodeError:
            return None
        except ValueError:
            pass                                    # no more non-ASCII messages
    if sizes and (min(sizes) == 0 or max(sizes) > max_msg):
        return None
    return sizes


def _bounds(stamps: list[int], sizes: list[int], max_events: int, max_batch_bytes: int,
            max_span_ms: int) -> list[tuple[int, int, int]]:
    """The greedy cut of build_batches' loop, found per batch by bisection instead of per event:
    (start, end, AWS bytes) of each batch.

    Each limit is monotone along the sorted events (sizes > 0, timestamps non-decreasing), so a batch
    starting at i ends at the first position any of the three limits would refuse.
    """
    n = len(stamps)
    # sums[k] = AWS bytes of events [0, k)
    sums = list(accumulate(map(add, sizes, repeat(EVENT_OVERHEAD_BYTES)), initial=0))
    out = []
    i = 0
    while i < n:
        end = min(n, i + max_events,
                  bisect_right(sums, sums[i] + max_batch_bytes, i + 1) - 1,
                  bisect_left(stamps, stamps[i] + max_span_ms, i + 1))
        out.append((i, end, sums[end] - sums[i]))
        i = end
    return out


@dataclass(slots=True)
class WindowSplit:
    """Events sorted into what AWS would store and what it would reject (and why)."""

    ok: list[LogEvent] = field(default_factory=list)
    too_old: list[LogEvent] = field(default_factory=list)    # > 14 days old
    expired: list[LogEvent] = field(default_factory=list)    # within 14 days but older than retention
    too_new: list[LogEvent] = field(default_factory=list)    # > 2 h in the future


def classify_timestamp(timestamp_ms: int, now_ms: int, retention_days: int | None = None) -> str:
    """'ok', 'too_old', 'expired' or 'too_new', by AWS's PutLogEvents acceptance window."""
    if timestamp_ms > now_ms + TOO_NEW_MS:
        return "too_new"
    if timestamp_ms < now_ms - TOO_OLD_MS:
        return "too_old"
    if retention_days is not None and timestamp_ms < now_ms - retention_days * MS_PER_DAY:
        return "expired"
    return "ok"


def split_by_window(events: Iterable[LogEvent], now_ms: int,
                    retention_days: int | None = None) -> WindowSplit:
    """Divide events client-side so rejected ones can go to the dead-letter path instead of vanishing."""
    out = WindowSplit()
    oldest_ok = now_ms - TOO_OLD_MS
    if retention_days is not None:
        oldest_ok = max(oldest_ok, now_ms - retention_days * MS_PER_DAY)
    newest_ok = now_ms + TOO_NEW_MS
    ok_append = out.ok.append
    for ev in events:
        ts = ev[0]
        # Two integer compares per event on the hot path; classification only for rejects.
        if oldest_ok <= ts <= newest_ok:
            ok_append(ev)
        else:
            getattr(out, classify_timestamp(ts, now_ms, retention_days)).append(ev)
    return out
