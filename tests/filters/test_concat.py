"""concat filter: each mode, streams, timeouts and shutdown (the plugin's error events), config errors,
and the delivery tickets that keep held lines from being checkpointed away."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kawa import delivery
from kawa.errors import ConfigError
from kawa.testing.drivers import FilterDriver

T = 1_700_000_000 * 1_000_000_000


def run(conf: str, tag: str, records: list[dict[str, Any]], batches: int = 1) -> FilterDriver:
    d = FilterDriver("concat", conf)
    size = max(1, len(records) // batches)
    for i in range(0, len(records), size):
        d.feed_batch(tag, [(T + i + j, r) for j, r in enumerate(records[i:i + size])])
    return d


JAVA = [
    {"message": "hello before any group"},
    {"message": "2024-01-01 ERROR boom", "stream": "stderr"},
    {"message": "  at a.b(C.java:1)", "stream": "stderr"},
    {"message": "  at d.e(F.java:2)", "stream": "stderr"},
    {"message": "2024-01-01 INFO next", "stream": "stderr"},
    {"other": "no key: passes"},
    {"message": "  at g.h(I.java:3)", "stream": "stderr"},
    {"message": "2024-01-01 INFO last", "stream": "stderr"},
]


def test_multiline_start_regexp_joins_a_stack_trace_across_batches() -> None:
    d = run("key message\nmultiline_start_regexp /^\\d{4}-\\d\\d-\\d\\d /", "app", JAVA, batches=3)
    assert d.filtered_records == [
        {"message": "hello before any group"},
        {"message": "2024-01-01 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)", "stream": "stderr"},
        {"other": "no key: passes"},
        {"message": "2024-01-01 INFO next\n  at g.h(I.java:3)", "stream": "stderr"},
    ]
    assert d.instance.stats()["held_events"] == 1          # "INFO last" waits for its group's end
    # the joined event carries the time of the event that completed it (use_first_timestamp false)
    assert d.filtered_events[1][1] == T + 4


def test_continuous_line_regexp_ends_a_group_at_a_line_that_does_not_continue_it() -> None:
    d = run("key message\nmultiline_start_regexp /^START/\ncontinuous_line_regexp /^\\s/\nuse_first_timestamp true",
            "app", [{"message": "START a"}, {"message": " b"}, {"message": "loose"}, {"message": "START c"}])
    assert d.filtered_events == [("app", T, {"message": "START a\n b"}),
                                 ("app", T, {"message": "loose"})]     # the plugin's time quirk kept


def test_docker_split_lines_with_multiline_end_regexp_as_container_insights_configures_it() -> None:
    lines = [{"log": "part one ", "stream": "stdout"}, {"log": "part two\n", "stream": "stdout"},
             {"log": "whole\n", "stream": "stdout"}]
    d = run('key log\nmultiline_end_regexp /\\n$/\nseparator ""', "kube.var.log", lines)
    assert d.filtered_records == [{"log": "part one part two\n", "stream": "stdout"},
                                  {"log": "whole\n", "stream": "stdout"}]


def test_stream_identity_key_keeps_streams_apart() -> None:
    records = [{"m": "S1", "s": "a"}, {"m": "S2", "s": "b"}, {"m": "x", "s": "a"}, {"m": "y", "s": "b"},
               {"m": "S3", "s": "a"}, {"m": "S4", "s": "b"}]
    d = run("key m\nmultiline_start_regexp /^S/\nstream_identity_key s", "t", records)
    assert d.filtered_records == [{"m": "S1\nx", "s": "a"}, {"m": "S2\ny", "s": "b"}]


def test_n_lines() -> None:
    d = run("key m\nn_lines 2", "t", [{"m": str(i)} for i in range(5)])
    assert d.filtered_records == [{"m": "0\n1"}, {"m": "2\n3"}]


def test_partial_key_of_dockers_fluentd_driver() -> None:
    records = [{"log": "a", "partial_message": "true"}, {"log": "b", "partial_message": "true"},
               {"log": "c", "partial_message": "false"}, {"log": "alone"}]
    d = run('key log\npartial_key partial_message\npartial_value true\nseparator ""', "t", records)
    assert d.filtered_records == [{"log": "abc"}, {"log": "alone"}]


def test_partial_metadata_sorts_by_ordinal() -> None:
    records = [{"log": "B", "partial_message": "true", "partial_id": "x", "partial_ordinal": "2", "partial_last": "false"},
               {"log": "A", "partial_message": "true", "partial_id": "x", "partial_ordinal": "1", "partial_last": "false"},
               {"log": "C", "partial_message": "true", "partial_id": "x", "partial_ordinal": "3", "partial_last": "true"}]
    d = run('key log\nuse_partial_metadata true\nseparator ""', "t", records)
    assert d.filtered_records == [{"log": "ABC"}]
    assert d.instance.streams == {}          # a joined message's stream (its partial_id) is forgotten


def test_cri_log_tags() -> None:
    records = [{"log": "a", "logtag": "P", "stream": "stdout"}, {"log": "b", "logtag": "F", "stream": "stdout"}]
    d = run('key log\nuse_partial_cri_logtag true\npartial_cri_logtag_key logtag\nseparator ""', "t", records)
    assert d.filtered_records == [{"log": "ab"}]


def test_log_events_of_kawa_itself_pass() -> None:
    d = run("key message\nn_lines 2", "fluent.warn", [{"message": "x"}])
    assert d.filtered_records == [{"message": "x"}]


@pytest.mark.parametrize("conf, message", [
    ("key m", "Either n_lines, multiline_start_regexp, multiline_end_regexp, partial_key, use_partial_metadata "
              "or use_partial_cri_logtag is required"),
    ("key m\nn_lines 2\nmultiline_start_regexp /x/", "n_lines and multiline_start_regexp/multiline_end_regexp are exclusive"),
    ("key m\npartial_key p", "partial_value is required when partial_key is specified"),
    ("key m\nuse_partial_metadata true\npartial_key p\npartial_value v", "use_partial_metadata and partial_key are exclusive"),
])
def test_configuration_errors(conf: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FilterDriver("concat", conf)


def test_a_stream_idle_for_flush_interval_becomes_an_error_event() -> None:
    d = FilterDriver("concat", "key m\nmultiline_start_regexp /^S/\nflush_interval 1s")

    async def go() -> None:
        await d.instance.start()
        d.feed_batch("app", [(T, {"m": "S one"}), (T + 1, {"m": " two"})])
        await asyncio.sleep(2.5)
        await d.instance.stop()

    asyncio.run(go())
    assert d.filtered_records == []
    [(tag, _time, record, error)] = d.error_events
    assert (tag, record, error) == ("app", {"m": "S one\n two"}, "Timeout flush: app:default")
    assert "[info]: #0 Timeout flush: app:default" in d.logs


def test_stop_flushes_what_is_held() -> None:
    d = FilterDriver("concat", "key m\nmultiline_start_regexp /^S/")

    async def go() -> None:
        await d.instance.start()
        d.feed_batch("app", [(T, {"m": "S one"})])
        await d.instance.stop()

    asyncio.run(go())
    assert [(r, e) for _t, _tm, r, e in d.error_events] == [({"m": "S one"}, "Flush remaining buffer: app:default")]


def test_held_events_keep_their_emit_unsettled_until_the_group_is_stored() -> None:
    """tail moves its pos_file only past settled emits: a held line must not count as delivered."""
    d = FilterDriver("concat", "key m\nmultiline_start_regexp /^S/")

    async def go() -> None:
        first = delivery.Ticket()
        with delivery.tracking(first):
            d.feed_batch("app", [(T, {"m": "S one"}), (T + 1, {"m": " more"})])
        first.seal()
        await asyncio.sleep(0)
        assert not first.stored.done()                 # both lines are held
        second = delivery.Ticket()
        with delivery.tracking(second):
            d.feed_batch("app", [(T + 2, {"m": "S two"})])   # completes the first group, holds its own line
        share = second.join()                          # the output that takes the joined event
        second.seal()
        await asyncio.sleep(0)
        assert not first.stored.done() and not second.stored.done()
        share.mark_stored()
        await asyncio.sleep(0)
        assert first.stored.done()                     # settled with the emit its lines left in
        assert not second.stored.done()                # "S two" is still held
        assert not first.delivered.done()
        share.mark_delivered()
        await asyncio.sleep(0)
        assert first.delivered.done()

    asyncio.run(go())
    assert d.filtered_records == [{"m": "S one\n more"}]


def test_the_checkpoint_stored_with_an_emit_stays_before_every_held_line() -> None:
    """The outputs store an emit's other events with its checkpoint (where a restart resumes): a
    held line must not be behind it, whether held in this emit or in an earlier one, in any stream."""
    d = FilterDriver("concat", "key m\nstream_identity_key s\nmultiline_start_regexp /^S/")
    offsets = {}

    def emit(events: list, start: int, end: int) -> delivery.Ticket:
        ticket = delivery.Ticket(("app.log", end), start=start)
        ticket.locate = lambda record: offsets.get(id(record))
        with delivery.tracking(ticket):
            d.feed_batch("app", events)
        ticket.locate = None
        ticket.seal()
        return ticket

    async def go() -> None:
        a1, a2 = {"m": "S a", "s": "out"}, {"m": " a more", "s": "out"}
        offsets.update({id(a1): 0, id(a2): 10})
        first = emit([(T, a1), (T, a2)], 0, 20)
        assert first.checkpoint == ("app.log", 0)          # the whole emit is held
        assert first.held_lines == [0, 10]                  # each held line, for a restart (held_lines)
        b1, c1 = {"m": "S b", "s": "out"}, {"m": "S c", "s": "err"}
        offsets.update({id(b1): 20, id(c1): 30})
        second = emit([(T, b1), (T, c1)], 20, 40)          # "a" leaves; "b" and "c" are held
        assert second.checkpoint == ("app.log", 20)
        assert second.held_lines == [20, 30]
        b2 = {"m": "S d", "s": "out"}
        offsets[id(b2)] = 40
        third = emit([(T, b2)], 40, 50)                     # "b" leaves; "c" (err) still held
        assert third.checkpoint == ("app.log", 30)
        assert third.held_lines == [30, 40]                 # every stream's held lines
        # "e" flushes "c" and is held with no line offset: where its emit began (50) counts
        unknown = {"m": "S e", "s": "err"}
        fourth = emit([(T, unknown)], 50, 60)
        assert d.filtered_records[-1] == {"m": "S c", "s": "err"}
        assert d.instance.streams["app:err"].resume == {"app.log": 50}
        assert fourth.checkpoint == ("app.log", 40)         # "d" (out, held at 40) is older
        assert fourth.held_lines is None                    # a held line's offset is not known
        d2 = {"m": "S g", "s": "out"}
        offsets[id(d2)] = 65
        fifth = emit([(T, d2)], 60, 70)                     # "d" leaves: "e" at 50 is the oldest
        assert fifth.checkpoint == ("app.log", 50)

    asyncio.run(go())


def test_an_emit_without_a_checkpoint_is_left_alone() -> None:
    d = FilterDriver("concat", "key m\nmultiline_start_regexp /^S/")

    async def go() -> None:
        ticket = delivery.Ticket(None, start=5)
        with delivery.tracking(ticket):
            d.feed_batch("app", [(T, {"m": "S a"})])
        assert ticket.checkpoint is None

    asyncio.run(go())
