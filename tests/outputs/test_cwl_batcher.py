"""Tests for the pure PutLogEvents batcher: every AWS rule, the oversize/empty policies, the window split.
Ends with a hypothesis property: any input gives valid batches, stable order, nothing lost.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kawa.plugins.outputs.cloudwatch_logs.batcher import (
    EVENT_OVERHEAD_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MAX_EVENT_BYTES,
    MAX_MESSAGE_BYTES,
    MS_PER_DAY,
    TOO_NEW_MS,
    TOO_OLD_MS,
    TRUNCATION_MARKER,
    Batch,
    LogEvent,
    build_batches,
    classify_timestamp,
    cut_in_order,
    split_by_window,
    split_message,
    truncate_message,
)


def flat(batches: list[Batch]) -> list[LogEvent]:
    return [ev for b in batches for ev in b.events]


def aws_size(events: list[LogEvent]) -> int:
    return sum(len(m.encode("utf-8")) + EVENT_OVERHEAD_BYTES for _, m in events)


def test_limits_are_aws_values() -> None:
    assert (MAX_BATCH_BYTES, EVENT_OVERHEAD_BYTES, MAX_EVENT_BYTES, MAX_BATCH_EVENTS) == (1_048_576, 26, 1_048_576, 10_000)
    assert MAX_BATCH_SPAN_MS == 86_400_000 and TOO_OLD_MS == 14 * MS_PER_DAY and TOO_NEW_MS == 7_200_000


def test_empty_input_gives_no_batches() -> None:
    assert build_batches([]).batches == []


def test_stable_sort_by_timestamp() -> None:
    evs = [(3, "c"), (1, "a1"), (2, "b"), (1, "a2"), (1, "a3")]
    res = build_batches(evs)
    assert flat(res.batches) == [(1, "a1"), (1, "a2"), (1, "a3"), (2, "b"), (3, "c")]
    assert len(res.batches) == 1


def test_batch_bytes_counts_utf8_plus_26_and_fills_exactly() -> None:
    # 4 events of 262,118 bytes + 26 = 262,144 each: exactly 1,048,576 -> one batch; one more byte splits.
    msg = "x" * (262_144 - 26)
    res = build_batches([(i, msg) for i in range(4)])
    assert [b.size_bytes for b in res.batches] == [1_048_576]
    res = build_batches([(0, msg + "y")] + [(i, msg) for i in range(1, 4)])
    assert [len(b.events) for b in res.batches] == [3, 1]   # 1,048,577 bytes would be one too many
    for b in res.batches:
        assert b.size_bytes == aws_size(b.events) <= MAX_BATCH_BYTES


def test_multibyte_characters_count_as_bytes_not_chars() -> None:
    # "日" is 3 bytes: 100,000 chars = 300,000 bytes; four of them exceed 1 MiB though 400,000 chars do not.
    msg = "日" * 100_000
    res = build_batches([(i, msg) for i in range(4)])
    assert len(res.batches) == 2
    assert res.batches[0].size_bytes == 3 * (300_000 + 26)


def test_max_events_default_and_configurable() -> None:
    evs = [(0, "m")] * 25_001
    assert [len(b.events) for b in build_batches(evs).batches] == [10_000, 10_000, 5_001]
    assert [len(b.events) for b in build_batches(evs[:10], max_events=4).batches] == [4, 4, 2]
    with pytest.raises(ValueError):
        build_batches(evs, max_events=10_001)


def test_span_stays_strictly_below_24h() -> None:
    day = MAX_BATCH_SPAN_MS
    res = build_batches([(0, "a"), (day - 1, "b"), (day, "c"), (2 * day + 5, "d")])
    assert [[m for _, m in b.events] for b in res.batches] == [["a", "b"], ["c"], ["d"]]
    for b in res.batches:
        assert b.events[-1][0] - b.events[0][0] < day


def test_empty_messages_dropped_by_default_and_counted() -> None:
    res = build_batches([(1, ""), (2, "a"), (3, "")])
    assert flat(res.batches) == [(2, "a")] and res.dropped_empty == 2


def test_empty_messages_as_space_policy() -> None:
    res = build_batches([(1, ""), (2, "a")], empty="space")
    assert flat(res.batches) == [(1, " "), (2, "a")] and res.replaced_empty == 1 and res.dropped_empty == 0


def test_all_empty_gives_no_batch() -> None:
    res = build_batches([(1, ""), (2, "")])
    assert res.batches == [] and res.dropped_empty == 2


def test_event_at_exact_limit_untouched() -> None:
    msg = "x" * MAX_MESSAGE_BYTES
    res = build_batches([(0, msg)])
    assert res.truncated == 0 and flat(res.batches) == [(0, msg)]
    assert res.batches[0].size_bytes == MAX_EVENT_BYTES


def test_oversize_truncate_at_utf8_boundary_with_marker() -> None:
    msg = "é" * 600_000   # 1,200,000 bytes
    res = build_batches([(5, "before"), (7, msg), (9, "after")])
    assert res.truncated == 1
    out = flat(res.batches)
    assert [ts for ts, _ in out] == [5, 7, 9]
    cut = out[1][1]
    assert cut.endswith(TRUNCATION_MARKER)
    assert len(cut.encode("utf-8")) + 26 <= MAX_EVENT_BYTES
    assert msg.startswith(cut[: -len(TRUNCATION_MARKER)])
    # Within one 2-byte character of the limit: the cut keeps as much as fits.
    assert MAX_EVENT_BYTES - (len(cut.encode("utf-8")) + 26) < 2


def test_truncate_message_boundaries() -> None:
    assert truncate_message("short", 100) == "short"
    out = truncate_message("🙂" * 10, 23)   # 4-byte chars; marker 19 bytes leaves room for exactly 1
    assert out == "🙂" + TRUNCATION_MARKER
    out = truncate_message("🙂" * 10, 22)
    assert out == TRUNCATION_MARKER


def test_oversize_split_into_continuations() -> None:
    msg = "ab日" * 300_000  # 1,500,000 bytes
    res = build_batches([(1, "x"), (3, msg), (4, "y")], oversize="split")
    assert res.split == 1 and res.split_extra == 1 and res.truncated == 0
    out = flat(res.batches)
    pieces = [m for ts, m in out if ts == 3]
    assert "".join(pieces) == msg
    assert all(len(p.encode("utf-8")) <= MAX_MESSAGE_BYTES for p in pieces)
    assert [m for _, m in out][0] == "x" and [m for _, m in out][-1] == "y"
    for b in res.batches:
        assert b.size_bytes == aws_size(b.events) <= MAX_BATCH_BYTES


def test_split_message_never_cuts_a_character() -> None:
    for limit in range(4, 12):
        pieces = split_message("a🙂é日" * 20, limit)
        assert "".join(pieces) == "a🙂é日" * 20
        assert all(0 < len(p.encode()) <= limit for p in pieces)


def test_lone_surrogates_scrubbed() -> None:
    res = build_batches([(1, "bad\udcff byte")])
    assert res.scrubbed == 1
    (ts, msg), = flat(res.batches)
    msg.encode("utf-8")   # must not raise


def test_small_configured_limits_keep_events_whole() -> None:
    res = build_batches([(0, "x" * 30)] * 3, max_batch_bytes=100, max_event_bytes=100)
    assert [len(b.events) for b in res.batches] == [1, 1, 1]   # 56 + 56 > 100


def test_bad_arguments_rejected() -> None:
    with pytest.raises(ValueError):
        build_batches([], max_batch_bytes=MAX_BATCH_BYTES + 1)
    with pytest.raises(ValueError):
        build_batches([], oversize="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_batches([], max_event_bytes=40)   # no room for the marker


def test_request_events_shape() -> None:
    (b,) = build_batches([(1, "a")]).batches
    assert b.request_events() == [{"timestamp": 1, "message": "a"}]


# --- acceptance window ----------------------------------------------------------------------------

NOW = 1_800_000_000_000


@pytest.mark.parametrize(("ts", "retention", "want"), [
    (NOW, None, "ok"),
    (NOW + TOO_NEW_MS, None, "ok"),
    (NOW + TOO_NEW_MS + 1, None, "too_new"),
    (NOW - TOO_OLD_MS, None, "ok"),
    (NOW - TOO_OLD_MS - 1, None, "too_old"),
    (NOW - 3 * MS_PER_DAY, 3, "ok"),
    (NOW - 3 * MS_PER_DAY - 1, 3, "expired"),
    (NOW - 20 * MS_PER_DAY, 3, "too_old"),
    (NOW - 20 * MS_PER_DAY, 30, "too_old"),
])
def test_classify_timestamp(ts: int, retention: int | None, want: str) -> None:
    assert classify_timestamp(ts, NOW, retention) == want


def test_split_by_window_keeps_order() -> None:
    evs = [(NOW, "a"), (NOW - TOO_OLD_MS - 5, "old"), (NOW + TOO_NEW_MS + 5, "new"),
           (NOW - 2 * MS_PER_DAY, "exp"), (NOW + 1, "b")]
    w = split_by_window(evs, NOW, retention_days=1)
    assert w.ok == [(NOW, "a"), (NOW + 1, "b")]
    assert w.too_old == [(NOW - TOO_OLD_MS - 5, "old")]
    assert w.too_new == [(NOW + TOO_NEW_MS + 5, "new")]
    assert w.expired == [(NOW - 2 * MS_PER_DAY, "exp")]


# --- property ---------------------------------------------------------------------------------------

messages = st.text(alphabet=st.sampled_from("ab é日🙂\n\"\\"), max_size=120)
events_st = st.lists(st.tuples(st.integers(0, 3000), messages), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    events=events_st,
    max_events=st.integers(1, 12),
    max_event_bytes=st.integers(50, 160),
    extra_batch=st.integers(0, 400),
    span=st.integers(1, 2000),
    oversize=st.sampled_from(["truncate", "split"]),
    empty=st.sampled_from(["drop", "space"]),
)
def test_property_every_batch_valid_nothing_lost(events: list[LogEvent], max_events: int, max_event_bytes: int,
                                                 extra_batch: int, span: int, oversize: str, empty: str) -> None:
    max_batch_bytes = max_event_bytes + extra_batch
    res = build_batches(events, max_events=max_events, max_batch_bytes=max_batch_bytes,
                        max_event_bytes=max_event_bytes, oversize=oversize,  # type: ignore[arg-type]
                        empty=empty, max_span_ms=span)  # type: ignore[arg-type]
    max_msg = max_event_bytes - EVENT_OVERHEAD_BYTES
    for b in res.batches:
        assert 1 <= len(b.events) <= max_events
        assert b.size_bytes == aws_size(b.events) <= max_batch_bytes
        ts = [t for t, _ in b.events]
        assert ts == sorted(ts) and ts[-1] - ts[0] < span
        assert all(0 < len(m.encode()) <= max_msg for _, m in b.events)

    expected: list[LogEvent] = []
    for t, m in sorted(events, key=lambda e: e[0]):
        if m == "":
            if empty == "space":
                expected.append((t, " "))
        elif len(m.encode()) > max_msg:
            if oversize == "split":
                expected.extend((t, p) for p in split_message(m, max_msg))
            else:
                expected.append((t, truncate_message(m, max_msg)))
        else:
            expected.append((t, m))
    assert flat(res.batches) == expected
    n_empty = sum(1 for _, m in events if m == "")
    assert res.dropped_empty + res.replaced_empty == n_empty
    n_big = sum(1 for _, m in events if len(m.encode()) > max_msg)
    assert res.truncated + res.split == n_big


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 3000), st.text(alphabet="ab\u00e9\u65e5\U0001f642", min_size=1,
                                                             max_size=40)), max_size=60),
    max_events=st.integers(1, 12),
    extra_batch=st.integers(0, 400),
    span=st.integers(1, 2000),
)
def test_property_batch_wide_cut_equals_the_event_loop(events: list[LogEvent], max_events: int, extra_batch: int,
                                                       span: int) -> None:
    # Plain events take the bisection path; one empty message (dropped) forces the per-event loop.
    # Both must cut the same batches.
    kw = {"max_events": max_events, "max_batch_bytes": 186 + extra_batch, "max_event_bytes": 186,
          "max_span_ms": span}
    fast = build_batches(events, **kw)  # type: ignore[arg-type]
    slow = build_batches(events + [(0, "")], **kw)  # type: ignore[arg-type]
    assert slow.dropped_empty == 1
    assert [(b.events, b.size_bytes) for b in fast.batches] == [(b.events, b.size_bytes) for b in slow.batches]


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 3000), st.text(alphabet="ab\u00e9\u65e5\U0001f642\ud800",
                                                             max_size=40)), max_size=60),
    max_events=st.integers(1, 12),
    extra_batch=st.integers(0, 400),
    span=st.integers(1, 2000),
)
def test_property_cut_in_order_is_build_batches_cut_or_none(events: list[LogEvent], max_events: int,
                                                            extra_batch: int, span: int) -> None:
    # Events in order as two columns: the same batches as build_batches, or None exactly when one
    # event needs a policy (empty, over the event limit, a lone surrogate).
    kw = {"max_events": max_events, "max_batch_bytes": 186 + extra_batch, "max_event_bytes": 186,
          "max_span_ms": span}
    events = sorted(events, key=lambda e: e[0])
    bounds = cut_in_order([t for t, _ in events], [m for _, m in events], **kw)  # type: ignore[arg-type]
    needs_policy = any(m == "" or "\ud800" in m or len(m.encode()) > 186 - EVENT_OVERHEAD_BYTES
                       for _, m in events)
    assert (bounds is None) == needs_policy
    if bounds is not None:
        result = build_batches(events, **kw)  # type: ignore[arg-type]
        assert [events[s:e] for s, e in bounds] == [b.events for b in result.batches]
        assert not events or bounds[0][0] == 0 and bounds[-1][1] == len(events)
