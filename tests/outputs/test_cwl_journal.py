"""cloudwatch_logs' sent journal (memory buffers): what was sent before a kill -9 is not sent again
when the input reads it again, calls cut off are read back, and entries go once the input checkpointed.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kawa import delivery
from kawa.plugins.outputs.cloudwatch_logs import journal as journal_mod
from kawa.plugins.outputs.cloudwatch_logs import verify
from kawa.plugins.outputs.cloudwatch_logs.journal import Leftovers, SentJournal, digest
from kawa.testing.cwl_server import read_all_events


def arun(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


# -- the file -------------------------------------------------------------------------------------

@pytest.mark.parametrize("surrogates", [True, False])
def test_digests_of_a_call_are_each_event_s_digest_in_the_file_layout(surrogates: bool) -> None:
    # the on-disk layout: native int64 timestamps, then native uint64 (UTF-8 length << 32 | CRC-32);
    # a call with lone surrogates takes the surrogatepass encoding, one without the default one
    import struct
    import zlib

    lone = b"caf\xe9".decode("utf-8", "surrogateescape")
    events = [(1_700_000_000_000, '{"a":"b"}'), (-5, ""), (7, "ünï ✓ 🎉"), (8, lone), (9, "\ud800x")]
    if not surrogates:
        events[3:] = [(8, "café"), (9, "x")]
    stamps, crcs = journal_mod._pack_digests(events)
    assert journal_mod._pack_digests(iter(events)) == (stamps, crcs)
    want = [(ts, len(m.encode("utf-8", "surrogatepass")), zlib.crc32(m.encode("utf-8", "surrogatepass")))
            for ts, m in events]
    assert stamps == struct.pack("=5q", *(w[0] for w in want))
    assert crcs == struct.pack("=5Q", *(w[1] << 32 | w[2] for w in want))
    assert journal_mod._unpack_digests(stamps, crcs) == [digest(ts, m) for ts, m in events] == want


def test_reopen_returns_calls_not_retired_with_their_state(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    j = SentJournal(path)
    assert j.open() == []
    a = j.sending("g", "s", [(1000, "a"), (1001, "b")])
    b = j.sending("g", "s", [(1002, "c")])
    c = j.sending("g", "t", [(1003, "é")])
    j.accepted(a)
    j.forget([b])
    j.close()

    again = SentJournal(path)
    entries = {e.jid: e for e in again.open()}
    assert set(entries) == {a, c}
    assert entries[a].state == "ok" and entries[c].state == "send"
    assert entries[a].digests() == [digest(1000, "a"), digest(1001, "b")]
    assert (entries[c].group, entries[c].stream) == ("g", "t")
    assert again.sending("g", "s", [(1, "x")]) > c          # ids keep growing across restarts


def test_record_cut_by_the_kill_is_ignored_and_garbage_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = SentJournal(str(path))
    j.open()
    ok = j.sending("g", "s", [(1000, "a")])
    j.accepted(ok)
    j.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b"\x00\x00\x01\x00partial")          # length says 256, 7 bytes follow
    assert [e.jid for e in SentJournal(str(path)).open()] == [ok]

    warnings: list[str] = []
    path.write_bytes(whole + b"\x00\x00\x00\x03\xc1\xc1\xc1")      # a complete frame of garbage
    assert [e.jid for e in SentJournal(str(path), warn=warnings.append).open()] == [ok]
    assert warnings and "unreadable record" in warnings[0]


def test_retired_entries_are_compacted_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "COMPACT_BYTES", 4096)
    path = tmp_path / "j"
    j = SentJournal(str(path), fsync=False)
    j.open()
    events = [(1000 + i, f"message {i}") for i in range(100)]
    ids = [j.sending("g", "s", events) for _ in range(5)]
    grown = path.stat().st_size
    assert grown > 4096
    j.forget(ids[:4])
    assert path.stat().st_size < grown / 2
    assert [e.jid for e in SentJournal(str(path)).open()] == [ids[4]]


def test_leftovers_match_each_sent_event_once() -> None:
    left = Leftovers()
    left.add("g", "s", [digest(1, "x"), digest(1, "x"), digest(2, "y")])
    pieces = [(1, "x"), (1, "x"), (1, "x"), (2, "y"), (2, "y"), (3, "x")]
    assert left.take("g", "s", pieces) == [0, 1, 3]     # two x and one y were sent: the rest is new
    assert left.empty
    left.add("g", "s", [digest(1, "x")])
    assert left.take("g", "other", [(1, "x")]) == []    # another destination never matches


# -- through the output, against the strict proxy ---------------------------------------------------

NS = 1_000_000_000


def _events(n: int, start_ns: int, label: str) -> list[tuple[int, dict[str, Any]]]:
    return [(start_ns + i * NS // 1000, {"n": i, "label": label}) for i in range(n)]


async def _emit_as_tail(d: Any, events: list[tuple[int, dict[str, Any]]], offset: int) -> delivery.Ticket:
    """Emit like tail does: under a ticket with a checkpoint, sealed; not committed until the test says."""
    ticket = delivery.Ticket(("in_tail\ttest.pos\t1", offset))
    with delivery.tracking(ticket):
        await d.instance.emit("app", events)
    ticket.seal()
    return ticket


async def _write_all(d: Any) -> None:
    buf = d.instance.buffer
    buf.enqueue_all(force=True)
    while (chunk := buf.dequeue()) is not None:
        await d.instance.write(chunk)
        buf.purge(chunk)


def _conf(group: str, path: Path) -> str:
    return f"log_group_name {group}\nlog_stream_name s\nauto_create_stream true\nsent_journal_path {path}\n"


def _counts(endpoint: str, group: str) -> Counter[str]:
    return Counter(e["message"] for e in read_all_events(endpoint, group, "s"))


@arun
async def test_restart_skips_what_was_sent_before_and_forgets_once_committed(cw_output, cwl_proxy, tmp_path):
    group = f"/kawa/test/{uuid.uuid4().hex[:12]}"
    path = tmp_path / "cwl.journal"
    start = time.time_ns()
    first, second = _events(30, start, "first"), _events(20, start + NS, "second")

    before = cw_output(_conf(group, path))                  # the process that is killed
    async with before.run():
        await _emit_as_tail(before, first, 100)
        await _write_all(before)                            # sent; the pos_file never moved
    assert sum(_counts(cwl_proxy.endpoint, group).values()) == 30
    assert len(SentJournal(str(path)).open()) == 1

    after = cw_output(_conf(group, path))                   # the restart: tail reads both again
    async with after.run():
        t1 = await _emit_as_tail(after, first, 100)
        t2 = await _emit_as_tail(after, second, 200)
        await _write_all(after)
        counts = _counts(cwl_proxy.endpoint, group)
        assert sum(counts.values()) == 50 and set(counts.values()) == {1}, counts
        assert after.instance.counters["resent_skipped"] == 30
        assert len(after.instance.journal.live) == 2        # old entry + the new call, until committed
        t1.commit()
        t2.commit()
        await asyncio.sleep(0)
        assert after.instance.journal.live == {}
    assert SentJournal(str(path)).open() == []


@arun
async def test_call_cut_off_by_the_kill_is_read_back(cw_output, cwl_proxy, logs, tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(verify, "ABSENT_RECHECKS", (0.0,))
    group = f"/kawa/test/{uuid.uuid4().hex[:12]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    path = tmp_path / "cwl.journal"
    start = time.time_ns()
    stored, lost = _events(10, start, "stored"), _events(10, start + NS, "lost")

    probe = cw_output(_conf(group, path))                   # the same messages the output builds
    build = probe.instance.builder.build
    as_sent = {label: [(t // 1_000_000, build("app", t, dict(r))) for t, r in evs]
               for label, evs in (("stored", stored), ("lost", lost))}
    j = SentJournal(str(path))
    j.open()
    j.sending(group, "s", as_sent["stored"])                # in flight at the kill, CloudWatch stored it
    j.sending(group, "s", as_sent["lost"])                  # in flight at the kill, never arrived
    j.close()
    logs.put_log_events(logGroupName=group, logStreamName="s",
                        logEvents=[{"timestamp": ts, "message": m} for ts, m in as_sent["stored"]])

    after = cw_output(_conf(group, path))
    async with after.run():
        await _emit_as_tail(after, stored + lost, 100)
        await _write_all(after)
        counters = after.instance.counters
    counts = _counts(cwl_proxy.endpoint, group)
    assert sum(counts.values()) == 20 and set(counts.values()) == {1}, counts
    assert counters["inflight_found"] == 1 and counters["inflight_missing"] == 1
    assert counters["resent_skipped"] == 10


@arun
async def test_file_buffer_needs_no_journal(cw_output, tmp_path):
    d = cw_output(f"log_group_name g\nlog_stream_name s\n<buffer>\n@type file\npath {tmp_path / 'buf'}\n</buffer>\n")
    async with d.run():
        assert d.instance.journal is None
