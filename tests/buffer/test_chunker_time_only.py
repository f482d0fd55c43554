"""Chunker with the time chunk key only: one group when the whole batch is in one timekey range,
per-event grouping otherwise (also when first and last events share a range but others do not)."""

from __future__ import annotations

from kawa.buffer.chunk import Chunker
from kawa.buffer.options import parse_chunk_keys

HOUR_NS = 3600 * 10**9
T0 = 1562803200 * 10**9      # 2019-07-11 00:00:00 UTC


def test_batch_within_one_timekey_is_one_group() -> None:
    events = [(T0 + i * 10**9, {"n": i}) for i in range(100)]
    groups = Chunker(parse_chunk_keys("time", ()), 3600, 0).split("t", events)
    assert [(m.timekey, m.tag, len(e)) for m, e in groups.items()] == [(1562803200, None, 100)]


def test_out_of_order_batch_spanning_ranges_is_split_per_event() -> None:
    # first and last events share a range; the middle one belongs to the next hour
    events = [(T0, {"n": 0}), (T0 + HOUR_NS, {"n": 1}), (T0 + 5, {"n": 2}), (T0 - 1, {"n": 3})]
    groups = Chunker(parse_chunk_keys("time,tag", ()), 3600, 0).split("app", events)
    assert {(m.timekey, m.tag): [r["n"] for _, r in e] for m, e in groups.items()} == {
        (1562803200, "app"): [0, 2], (1562806800, "app"): [1], (1562799600, "app"): [3]}


def test_offset_moves_the_range_boundary() -> None:
    # +09:00: local midnight is 15:00 UTC; 14:59:59 and 15:00:00 UTC fall in different days
    day = Chunker(parse_chunk_keys("time", ()), 86400, 9 * 3600)
    before, after = T0 + 15 * HOUR_NS - 10**9, T0 + 15 * HOUR_NS
    assert len(day.split("t", [(before, {}), (after, {})])) == 2
    assert len(day.split("t", [(after, {}), (after + HOUR_NS, {})])) == 1
