"""cloudwatch_logs: a PutLogEvents call whose answer was lost (kill -9, dropped connection) is read back
with GetLogEvents before it is resent: stored -> skipped, not stored -> resent, unknown -> resent + warning.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from kawa.errors import RetryableError
from kawa.plugins.outputs.cloudwatch_logs import verify
from kawa.plugins.outputs.cloudwatch_logs.errors import AwsApiError
from kawa.plugins.outputs.cloudwatch_logs.progress import ChunkProgress
from kawa.testing.cwl_server import read_all_events

EVENTS = 40          # 4 calls of 10 events
BATCH = 10


def arun(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


@pytest.fixture(autouse=True)
def quick_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "SETTLE_SECONDS", 0.05)
    monkeypatch.setattr(verify, "RETRY_WAITS", (0.01, 0.01))


def file_conf(group: str, root: Path) -> str:
    return (f"log_group_name {group}\nlog_stream_name s\nmax_events_per_batch {BATCH}\n"
            f"<buffer>\n@type file\npath {root / 'buf'}\n</buffer>")


async def first_process(d: Any) -> Any:
    """Buffer EVENTS events (same millisecond for several, as second-resolution logs do) and dequeue."""
    base = (time.time_ns() - 60_000_000_000) // 1_000_000 * 1_000_000
    await d.instance.emit("app", [(base + (i // 4) * 1_000_000, {"i": i, "line": "GET /"}) for i in range(EVENTS)])
    d.instance.buffer.enqueue_all(force=True)
    chunk = d.instance.buffer.dequeue()
    assert chunk is not None
    return chunk


async def restart(cw_output: Any, conf: str) -> Any:
    """A new process: a new output on the same buffer directory, its chunk taken from disk."""
    d = cw_output(conf)
    await d.instance.buffer.start()
    d.instance.progress.prune(c.id for c in d.instance.buffer.chunks())
    chunk = d.instance.buffer.dequeue()
    assert chunk is not None
    return d, chunk


def stored(endpoint: str, group: str) -> Counter[str]:
    return Counter(e["message"] for e in read_all_events(endpoint, group, "s"))


def inflight_on_disk(root: Path) -> list[dict[str, Any]]:
    files = glob.glob(os.path.join(root, "buf", "cloudwatch_logs_progress", "*.cwlprogress"))
    return [v for f in files for v in orjson.loads(Path(f).read_bytes()).get("inflight", {}).values()]


async def lose_second_answer(cw_output: Any, cwl_proxy: Any, conf: str, *, stored_anyway: bool) -> None:
    first = cw_output(conf)
    chunk = await first_process(first)
    cwl_proxy.faults.delay(0.0, 1)                                      # call 1 answered
    cwl_proxy.faults.drop_connection(1, after_forward=stored_anyway)    # call 2: answer lost
    with pytest.raises(RetryableError, match="no answer"):
        await first.instance.write(chunk)
    assert first.instance.counters["batches_sent"] == 1


@arun
async def test_stored_call_whose_answer_was_lost_is_not_resent_after_restart(cw_output, cwl_proxy, make_stream,
                                                                            tmp_path):
    group, _ = make_stream()
    conf = file_conf(group, tmp_path)
    await lose_second_answer(cw_output, cwl_proxy, conf, stored_anyway=True)
    (record,) = inflight_on_disk(tmp_path)                 # durable before the call was sent
    assert (record["s"], record["e"], record["count"]) == (BATCH, 2 * BATCH, BATCH)
    assert len(stored(cwl_proxy.endpoint, group)) == 2 * BATCH
    cwl_proxy.reset_stats()
    second, chunk = await restart(cw_output, conf)
    await second.instance.write(chunk)
    counts = stored(cwl_proxy.endpoint, group)
    assert len(counts) == EVENTS and set(counts.values()) == {1}, "zero duplicates, zero loss"
    calls = cwl_proxy.stats().calls
    assert calls["GetLogEvents"] >= 1 and calls["PutLogEvents"] == 2       # calls 3 and 4 only
    c = second.instance.counters
    assert (c["inflight_found"], c["inflight_missing"], c["inflight_unverified"]) == (1, 0, 0)
    assert any("is stored in CloudWatch Logs; not resending it" in line for line in second.logs)
    assert not inflight_on_disk(tmp_path)


@arun
async def test_call_lost_before_aws_got_it_is_resent_after_restart(cw_output, cwl_proxy, make_stream, tmp_path):
    group, _ = make_stream()
    conf = file_conf(group, tmp_path)
    await lose_second_answer(cw_output, cwl_proxy, conf, stored_anyway=False)
    assert len(inflight_on_disk(tmp_path)) == 1
    assert len(stored(cwl_proxy.endpoint, group)) == BATCH
    cwl_proxy.reset_stats()
    second, chunk = await restart(cw_output, conf)
    await second.instance.write(chunk)
    counts = stored(cwl_proxy.endpoint, group)
    assert len(counts) == EVENTS and set(counts.values()) == {1}
    assert cwl_proxy.stats().calls["PutLogEvents"] == 3                    # calls 2 (resent), 3, 4
    c = second.instance.counters
    assert (c["inflight_found"], c["inflight_missing"], c["inflight_unverified"]) == (0, 1, 0)


@arun
async def test_a_refused_call_is_not_left_in_flight_on_disk(cw_output, cwl_proxy, make_stream, tmp_path):
    """A 5xx answer means not stored: a restart resends the call at once, no read-back (which costs
    SETTLE_SECONDS and the absent rechecks, 2-8 s per chunk, during the recovery from an outage)."""
    group, _ = make_stream()
    conf = file_conf(group, tmp_path)
    first = cw_output(conf)
    chunk = await first_process(first)
    cwl_proxy.faults.delay(0.0, 1)                                      # call 1 answered
    cwl_proxy.faults.unavailable(1)                                     # call 2 refused (500)
    with pytest.raises(RetryableError, match="ServiceUnavailable"):
        await first.instance.write(chunk)
    assert not inflight_on_disk(tmp_path)
    cwl_proxy.reset_stats()
    second, chunk = await restart(cw_output, conf)
    await second.instance.write(chunk)
    calls = cwl_proxy.stats().calls
    assert calls["GetLogEvents"] == 0 and calls["PutLogEvents"] == 3        # calls 2 (resent), 3, 4
    counts = stored(cwl_proxy.endpoint, group)
    assert len(counts) == EVENTS and set(counts.values()) == {1}


@arun
async def test_a_written_chunk_killed_before_its_purge_is_not_sent_again(cw_output, cwl_proxy, make_stream, tmp_path):
    """The progress file outlives the write until the chunk is purged: a kill -9 between the two (the
    same event-loop step) finds every call recorded, and sends nothing twice."""
    group, _ = make_stream()
    conf = file_conf(group, tmp_path)
    first = cw_output(conf)
    chunk = await first_process(first)
    await first.instance.write(chunk)                                  # no purge: the kill comes first
    progress_files = glob.glob(os.path.join(tmp_path, "buf", "cloudwatch_logs_progress", "*.cwlprogress"))
    assert len(progress_files) == 1
    cwl_proxy.reset_stats()
    second, chunk = await restart(cw_output, conf)
    await second.instance.write(chunk)
    assert cwl_proxy.stats().calls["PutLogEvents"] == 0
    counts = stored(cwl_proxy.endpoint, group)
    assert len(counts) == EVENTS and set(counts.values()) == {1}
    second.instance.buffer.purge(chunk)
    second.instance.progress.sweep(c.id for c in second.instance.buffer.chunks())
    assert not glob.glob(os.path.join(tmp_path, "buf", "cloudwatch_logs_progress", "*.cwlprogress"))


@arun
async def test_unverifiable_lost_call_is_resent_with_a_warning(cw_output, cwl_proxy, make_stream, tmp_path):
    group, _ = make_stream()
    conf = file_conf(group, tmp_path)
    await lose_second_answer(cw_output, cwl_proxy, conf, stored_anyway=True)
    second, chunk = await restart(cw_output, conf)
    cwl_proxy.faults.throttle(len(verify.RETRY_WAITS) + 1, action="GetLogEvents")   # past every retry
    await second.instance.write(chunk)
    assert cwl_proxy.faults.pending("GetLogEvents") == 0
    counts = stored(cwl_proxy.endpoint, group)
    assert len(counts) == EVENTS, "at-least-once: nothing lost"
    assert sum(n - 1 for n in counts.values()) == BATCH                   # exactly the lost call, doubled
    c = second.instance.counters
    assert (c["inflight_unverified"], c["inflight_unverified_events"]) == (1, BATCH)
    warning = [line for line in second.logs if "could not tell whether CloudWatch Logs stored" in line]
    assert len(warning) == 1 and "ThrottlingException" in warning[0] and f"up to {BATCH} events may be duplicated" \
        in warning[0]


@arun
async def test_memory_buffer_verifies_a_lost_answer_within_the_process(cw_output, cwl_proxy, make_stream):
    group, _ = make_stream()
    d = cw_output(f"log_group_name {group}\nlog_stream_name s\nmax_events_per_batch {BATCH}")
    chunk = await first_process(d)
    cwl_proxy.faults.delay(0.0, 2)
    cwl_proxy.faults.drop_connection(1, after_forward=True)             # call 3 stored, answer lost
    with pytest.raises(RetryableError):
        await d.instance.write(chunk)
    assert d.instance.progress.directory is None
    await d.instance.write(chunk)
    counts = stored(cwl_proxy.endpoint, group)
    assert len(counts) == EVENTS and set(counts.values()) == {1}
    assert d.instance.counters["inflight_found"] == 1


# --- check_stored against a scripted GetLogEvents ---------------------------------------------

class ScriptedLogs:
    """Answers GetLogEvents from a list of stored events, `page` per page, or raises `error`."""

    def __init__(self, events: list[tuple[int, str]], page: int = 3, error: Exception | None = None) -> None:
        self.events, self.page, self.error = events, page, error
        self.calls: list[dict[str, Any]] = []

    def call(self, action: str, body: bytes) -> dict[str, Any]:
        assert action == "GetLogEvents"
        params = orjson.loads(body)
        self.calls.append(params)
        if self.error is not None:
            raise self.error
        inside = [e for e in self.events if params["startTime"] <= e[0] < params["endTime"]]
        start = int(params.get("nextToken", "f/0")[2:])
        chunk = inside[start:start + self.page]
        nxt = f"f/{start + len(chunk)}"
        return {"events": [{"timestamp": t, "message": m} for t, m in chunk], "nextForwardToken": nxt}


def test_check_stored_counts_repeats_and_pages():
    batch = [(100, "a"), (100, "a"), (101, "b"), (102, "c")]
    elsewhere = [(100, "a"), (101, "z")]               # another call of the chunk holds one "a" too
    logs = ScriptedLogs(elsewhere + batch + [(103, "outside")], page=2)
    outcome = verify.check_stored(logs, "g", "s", batch, [(100, "a")], sleep=lambda _: None)
    assert outcome.stored is True and outcome.found == 4
    assert len(logs.calls) >= 3 and all(c["endTime"] == 103 and c["startFromHead"] for c in logs.calls)
    # only the other call's "a" is there: that explains it, so the batch is absent
    absent = verify.check_stored(ScriptedLogs(elsewhere), "g", "s", batch, [(100, "a")], sleep=lambda _: None)
    assert absent.stored is False
    # one "a" short: neither all nor none
    partial = verify.check_stored(ScriptedLogs(elsewhere + batch[1:]), "g", "s", batch, [(100, "a")],
                                  sleep=lambda _: None)
    assert partial.stored is None and "3 of the batch's 4" in partial.reason


def test_done_around_takes_other_calls_sharing_the_time_range():
    pieces = [(1, "a"), (2, "b"), (2, "c"), (3, "d"), (3, "e"), (4, "f")]
    # the batch is [2, 4) = (2,"c"), (3,"d"); done: [0, 2) and [4, 6)
    assert verify.done_around(pieces, [(0, 2), (4, 6)], 2, 4) == [(2, "b"), (3, "e")]
    assert verify.done_around(pieces, [], 2, 4) == []


def test_check_stored_without_permission_or_stream():
    denied = AwsApiError(400, "AccessDeniedException", "not authorized to perform: logs:GetLogEvents")
    out = verify.check_stored(ScriptedLogs([], error=denied), "g", "s", [(1, "a")], [], sleep=lambda _: None)
    assert out.stored is None and "grant logs:GetLogEvents" in out.reason
    missing = AwsApiError(400, "ResourceNotFoundException", "The specified log stream does not exist.")
    assert verify.check_stored(ScriptedLogs([], error=missing), "g", "s", [(1, "a")], [],
                               sleep=lambda _: None).stored is False
    waits: list[float] = []
    throttled = ScriptedLogs([], error=AwsApiError(400, "ThrottlingException", "Rate exceeded"))
    out = verify.check_stored(throttled, "g", "s", [(1, "a")], [], sleep=waits.append)
    assert out.stored is None and len(throttled.calls) == len(verify.RETRY_WAITS) + 1 == len(waits) + 1


def test_inflight_record_survives_in_the_progress_file_and_matches_only_its_batch():
    pieces = [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    p = ChunkProgress("c1")
    p.bind("g\0s", 4)
    p.inflight["g\0s"] = verify.inflight_record(pieces, 1, 3, 10.0)
    again = ChunkProgress.from_json("c1", p.to_json())
    record = again.inflight["g\0s"]
    assert record["at"] > 10.0           # unknown since the load at the latest: settle counts from now
    assert verify.matches(record, pieces)
    assert not verify.matches(record, [(1, "a"), (2, "b"), (3, "x"), (4, "d")])
    assert not verify.matches(record, pieces[:2])
    assert not again.bind("g\0s", 5) and "g\0s" not in again.inflight   # layout changed: resend


def test_absent_is_looked_at_again_before_resending():
    """A cut-off call stored late (a loaded service) must not read as absent: that would double it."""
    batch = [(1, "a"), (2, "b")]
    logs = ScriptedLogs([])
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        logs.events = list(batch)          # stored while we waited

    assert verify.check_stored(logs, "g", "s", batch, [], sleep=sleep).stored is True
    assert waits == [verify.ABSENT_RECHECKS[0]]
    never = verify.check_stored(ScriptedLogs([]), "g", "s", batch, [], sleep=waits.append)
    assert never.stored is False and waits[1:] == list(verify.ABSENT_RECHECKS)
