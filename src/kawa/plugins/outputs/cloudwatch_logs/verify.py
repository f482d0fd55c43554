"""Did CloudWatch Logs store a PutLogEvents call whose answer never came (kill -9, lost connection)?
Reads the stream back with GetLogEvents over the batch's time range and compares the events.
"""

# PutLogEvents has no idempotency token, so a call whose answer was lost is either resent (duplicates
# when it was stored) or skipped (loss when it was not). A batch is stored whole or not at all
# (rejectedLogEventsInfo aside), so reading its time range back tells which: every event of the batch
# there (beyond what other accepted calls of the chunk explain) = stored; none = not stored; anything
# else, or no way to read (logs:GetLogEvents denied, throttled, too many events) = unknown: the caller
# resends and warns (at-least-once). Identical events (same millisecond, same text) written by another
# chunk or another writer can make a batch that was not stored look stored only if EVERY event of the
# batch has such a twin; counting multiplicities below keeps that to batches made only of repeats.

from __future__ import annotations

try:   # hashlib's blake2b without loading OpenSSL's libcrypto through _hashlib (3.7 MiB resident)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - other Python builds
    from hashlib import blake2b
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson

from kawa.plugins.outputs.cloudwatch_logs.batcher import LogEvent
from kawa.plugins.outputs.cloudwatch_logs.errors import RESOURCE_NOT_FOUND, AwsApiError, TransportError

# API_GetLogEvents: "limit ... up to 10,000 log events" per page.
PAGE_LIMIT = 10_000
# Events read back before giving up (the batch's time range is shared with other calls and writers);
# pages bound the loop too, because GetLogEvents may return empty pages before the end.
MAX_SCANNED_EVENTS = 300_000
MAX_PAGES = 100
# Throttled / 5xx / no answer: tries, with these waits between them (seconds).
RETRY_WAITS = (0.5, 1.0, 2.0)
# A call whose answer was lost may still be processed by AWS for a moment after the connection died;
# read back no sooner than this after the outcome became unknown (the loss, or the restart).
SETTLE_SECONDS = 2.0
# Seen absent: look again after these waits before resending (the CI fault suite once doubled a call
# its proxy stored later than SETTLE_SECONDS under load).
ABSENT_RECHECKS = (2.0, 4.0)


def message_digest(message: str) -> str:
    """Short stable digest of one message (first/last message of an in-flight batch)."""
    return blake2b(message.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def inflight_record(pieces: list[LogEvent], s: int, e: int, now: float) -> dict[str, Any]:
    """What the progress file keeps about call [s, e) of `pieces` while it is in flight."""
    first, last = pieces[s], pieces[e - 1]
    return {"s": s, "e": e, "count": e - s, "first_ts": first[0], "last_ts": last[0],
            "first": message_digest(first[1]), "last": message_digest(last[1]), "at": now}


def matches(record: dict[str, Any], pieces: list[LogEvent]) -> bool:
    """The re-planned chunk has the same batch at the recorded positions."""
    s, e = int(record.get("s", -1)), int(record.get("e", -1))
    if not 0 <= s < e <= len(pieces) or record.get("count") != e - s:
        return False
    first, last = pieces[s], pieces[e - 1]
    return (record.get("first_ts") == first[0] and record.get("last_ts") == last[0]
            and record.get("first") == message_digest(first[1]) and record.get("last") == message_digest(last[1]))


def done_around(pieces: list[LogEvent], done: Iterable[tuple[int, int]], s: int, e: int) -> list[LogEvent]:
    """Events of the chunk's other done calls (`done` ranges) whose timestamps fall in [s, e)'s range:
    CloudWatch holds them too, so they must not count as the batch's. `pieces` are sorted by time."""
    lo, hi = s, e
    while lo > 0 and pieces[lo - 1][0] >= pieces[s][0]:
        lo -= 1
    while hi < len(pieces) and pieces[hi][0] <= pieces[e - 1][0]:
        hi += 1
    return [pieces[p] for a, b in done for p in range(max(a, lo), min(b, hi)) if not s <= p < e]


@dataclass
class Outcome:
    stored: bool | None        # True / False, None = could not tell
    reason: str = ""           # for None: why (goes into the warning)
    found: int = 0             # events of the batch found beyond those explained by other calls


def _get_page(client: Any, group: str, stream: str, start: int, end: int, token: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startTime": start,
                              "endTime": end, "startFromHead": True, "limit": PAGE_LIMIT}
    if token:
        params["nextToken"] = token
    return client.call("GetLogEvents", orjson.dumps(params))


def _page_with_retries(client: Any, args: tuple[Any, ...], sleep: Callable[[float], None]) -> dict[str, Any]:
    for wait in (*RETRY_WAITS, None):
        try:
            return _get_page(client, *args)
        except AwsApiError as err:
            if wait is None or not (err.throttling or err.transient):
                raise
        except TransportError:
            if wait is None:
                raise
        sleep(wait)
    raise AssertionError("unreachable")


def check_stored(client: Any, group: str, stream: str, batch: list[LogEvent], others: Iterable[LogEvent],
                 *, sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Blocking (worker thread): is `batch` in the stream? `others` = events of the same chunk and
    stream already accepted whose timestamps fall in the batch's range (they are expected there too)."""
    others = list(others)
    return _settled(lambda: _count_in_stream(client, group, stream, Counter(batch), others, batch[0][0],
                                             batch[-1][0], lambda ts, message: (ts, message), sleep), sleep)


def check_digests(client: Any, group: str, stream: str, digests: list[Any], digest_of: Callable[[int, str], Any],
                  *, sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """`check_stored` for a call known only by its events' digests (cloudwatch_logs' journal)."""
    stamps = [d[0] for d in digests]
    return _settled(lambda: _count_in_stream(client, group, stream, Counter(digests), (), min(stamps), max(stamps),
                                             digest_of, sleep), sleep)


def _settled(check: Callable[[], Outcome], sleep: Callable[[float], None]) -> Outcome:
    """Absent is only believed after looking again: a call cut off mid-flight may be stored a few
    seconds late (a loaded service; GetLogEvents may lag), and resending it then doubles it. Present
    or unknown answers are final."""
    outcome = check()
    for wait in ABSENT_RECHECKS:
        if outcome.stored is not False:
            break
        sleep(wait)
        outcome = check()
    return outcome


def _count_in_stream(client: Any, group: str, stream: str, wanted: Counter[Any], others: Iterable[Any],
                     first_ts: int, last_ts: int, key_of: Callable[[int, str], Any],
                     sleep: Callable[[float], None]) -> Outcome:
    expected_elsewhere = Counter(ev for ev in others if ev in wanted)
    total = sum(wanted.values())
    seen: Counter[Any] = Counter()
    token: str | None = None
    scanned = 0
    try:
        for _ in range(MAX_PAGES):
            # API_GetLogEvents: startTime inclusive, endTime exclusive.
            page = _page_with_retries(client, (group, stream, first_ts, last_ts + 1, token), sleep)
            for ev in page.get("events") or ():
                key = key_of(ev.get("timestamp"), ev.get("message") or "")
                if key in wanted:
                    seen[key] += 1
            scanned += len(page.get("events") or ())
            next_token = page.get("nextForwardToken")
            if not next_token or next_token == token:     # API_GetLogEvents: same token = the end
                break
            if scanned > MAX_SCANNED_EVENTS:
                return Outcome(None, f"more than {MAX_SCANNED_EVENTS} events share the batch's time range")
            token = next_token
        else:
            return Outcome(None, f"GetLogEvents did not reach the end of the time range in {MAX_PAGES} pages")
    except AwsApiError as err:
        if err.code == RESOURCE_NOT_FOUND:       # no stream (or group): nothing of the batch can be there
            return Outcome(False)
        hint = " (grant logs:GetLogEvents to avoid these duplicates)" if err.credentials else ""
        return Outcome(None, f"GetLogEvents failed: {err}{hint}")
    except TransportError as err:
        return Outcome(None, f"GetLogEvents got no answer: {err}")
    beyond = {key: max(0, seen[key] - expected_elsewhere[key]) for key in wanted}
    found = sum(min(beyond[key], n) for key, n in wanted.items())
    if found == total:
        return Outcome(True, found=found)
    if found == 0:
        return Outcome(False)
    return Outcome(None, f"only {found} of the batch's {total} events are in the stream", found=found)
