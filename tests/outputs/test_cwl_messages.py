"""Tests for cloudwatch_logs' message planning helpers: ChunkRecords (Plan.records that re-reads the chunk)
and plan_destination's record sources."""

from __future__ import annotations

from typing import Any, Iterator

from kawa.plugins.outputs.cloudwatch_logs.messages import ChunkRecords, Plan, plan_destination


def test_chunk_records_reads_the_chunk_once_and_only_when_asked() -> None:
    chunk = [("a", 1, {"n": 0}), ("a", 2, None), ("b", 3, {"n": 2}), ("b", 4, {"n": 3})]
    reads: list[int] = []

    def read() -> Iterator[tuple[str, int, Any]]:
        reads.append(1)
        return iter([(tag, t, dict(r) if r else r) for tag, t, r in chunk])

    records = ChunkRecords(read)
    assert [records.add(0), records.add(2), records.add(3)] == [0, 1, 2]
    assert len(records) == 3 and reads == []          # nothing decoded while planning
    assert records[1] == ("b", 3, {"n": 2})
    assert records[0] == ("a", 1, {"n": 0}) and records[2] == ("b", 4, {"n": 3})
    assert reads == [1]


def test_plan_destination_sources_follow_the_sort_with_chunk_records() -> None:
    plan = Plan("g", "s", records=ChunkRecords(lambda: iter([("t", 0, {"i": i}) for i in range(3)])))
    for i in range(3):
        plan.records.add(i)  # type: ignore[union-attr]
    plan_destination(plan, [(30, "c", 0), (10, "a", 1), (20, "b", 2)], max_events=10, oversize="truncate")
    assert plan.pieces == [(10, "a"), (20, "b"), (30, "c")]
    assert [plan.records[plan.source[p]][2]["i"] for p in range(3)] == [1, 2, 0]
