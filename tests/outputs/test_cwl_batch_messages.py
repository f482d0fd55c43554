"""cloudwatch_logs' batch paths give the bytes of the per-record paths: MessageBuilder.build_batch
against build() one record at a time, format_events' batch pack against per-event packs, and the
batch-wide planning of a prebuilt chunk against the general loop."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgpack
import pytest

from kawa.buffer.chunk import as_bytes
from kawa.plugins.outputs.cloudwatch_logs.messages import MessageBuilder

SURROGATE = b"caf\xe9".decode("utf-8", "surrogateescape")     # invalid UTF-8 kept by surrogateescape


def plain_builder() -> MessageBuilder:
    return MessageBuilder(message_keys=[], formatter=None, max_message_length=None, remove_keys=())


def tricky_records() -> list[dict[str, Any]]:
    return [
        {"a": 1e16, "b": "x"},                          # Ruby 1.0e+16
        {"a": 0.00001},                                 # Ruby 1.0e-05
        {"a": 1.5e300, "b": -2.5e-10, "c": 0.0001},     # spelled alike
        {"a": [1e-7, {"b": 3e+20}]},                    # nested floats
        {"a": "", "b": "kept"},                         # top-level "" dropped
        {"a": {"b": ""}, "c": [""]},                    # nested "" kept
        {"only": ""},                                   # everything dropped: "{}"
        {"text": "e+ e- 0.0000 :\"\" in text"},         # suspect texts inside strings
        {"k:": "", "x": '":""'},
        {"ünï": "cödé ✓ 🎉", "jp": "日本語"},
        {"nested": {"d": {"e": [1, 2, {"f": None}]}}, "t": True, "f": False, "n": None},
        {"big": 2**63 - 1, "neg": -(2**63)},
        {"ctl": "a\x00b\x1fc\u2028", "q": 'say "hi" \\ back'},
        {},
        {"i": 1, "f": 1.0, "z": -0.0},
    ]


def per_record(builder: MessageBuilder, records: list[dict[str, Any]]) -> list[str]:
    return [builder.build("t", i, dict(r)) for i, r in enumerate(records)]


def test_build_batch_matches_build_on_tricky_records() -> None:
    records = tricky_records()
    b = plain_builder()
    batch = b.build_batch("t", list(range(len(records))), [dict(r) for r in records])
    assert batch is not None
    assert batch == per_record(b, records)
    assert batch[4] == '{"b":"kept"}' and batch[6] == "{}" and batch[0] == '{"a":1.0e+16,"b":"x"}'


@pytest.mark.parametrize("tricky", tricky_records())
def test_build_batch_finds_one_tricky_record_among_string_only_ones(tricky: dict[str, Any]) -> None:
    # string-only batches skip the needle scans (one search for a value that is not a non-empty
    # string): a single number or "" among them must still send its record through build()
    plain = {"remote": "10.0.0.1", "path": "/a:b", "agent": 'say \\":"x'}
    records = [plain, tricky, plain]
    b = plain_builder()
    batch = b.build_batch("t", [0, 1, 2], [dict(r) for r in records])
    if batch is not None:                       # None: orjson refused the record (per-record path)
        assert batch == per_record(b, records)


STR_RECORDS = [
    {"remote": "10.0.0.1", "path": "/a:b", "agent": 'say \\":"x'},
    {"a": "", "b": "kept"},                         # top-level "" dropped
    {"only": ""},                                   # everything dropped: "{}"
    {"text": "e+ e- 0.0000 1e+16 :\"\" in text", "n": "-0.0"},
    {"k:": "", "x": '":""'},
    {"ünï": "cödé ✓ 🎉", "ctl": "a\x00b\x1fc\u2028", "q": 'say "hi" \\ back'},
]


def test_build_batch_of_str_values_looks_for_empty_values_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from kawa.plugins.outputs.cloudwatch_logs import messages

    class NoSearch:
        def search(self, text: str) -> None:
            raise AssertionError("searched records of str values for numbers")

    b = plain_builder()
    expected = per_record(b, STR_RECORDS)
    monkeypatch.setattr(messages, "_ANY_NON_STRING_OR_EMPTY", NoSearch())
    batch = b.build_batch("t", list(range(len(STR_RECORDS))), [dict(r) for r in STR_RECORDS], str_values=True)
    assert batch == expected and batch[1] == '{"b":"kept"}' and batch[2] == "{}"
    with pytest.raises(AssertionError, match="searched"):
        b.build_batch("t", [0], [{"a": "x"}])        # without the promise the search runs


@pytest.mark.parametrize("odd", [
    {"s": SURROGATE},                       # orjson refuses lone surrogates
    {1: "non-str key"},
    {"set": {1, 2}},                        # a type orjson does not know
    {"big": 2**70},                         # beyond 64 bits
])
def test_build_batch_leaves_what_orjson_refuses_to_build(odd: dict[Any, Any]) -> None:
    b = plain_builder()
    records = [{"a": "x"}, odd]
    assert b.build_batch("t", [0, 1], records) is None


def test_build_batch_only_for_plain_dicts() -> None:
    assert plain_builder().build_batch("t", [0], [None]) is None   # type: ignore[list-item]
    assert plain_builder().build_batch("t", [], []) is None
    keyed = MessageBuilder(message_keys=["a"], formatter=None, max_message_length=None, remove_keys=())
    assert keyed.build_batch("t", [0], [{"a": "x"}]) is None


def drive(conf: str) -> Any:
    from kawa.testing.drivers import OutputDriver

    return OutputDriver("cloudwatch_logs", "region us-east-1\nendpoint http://127.0.0.1:9\n" + conf,
                        log_level="info")


def per_event_format(out: Any, tag: str, events: list[tuple[int, Any]]) -> bytes:
    """format_events as it was before the batch path: one build() and one pack() per event."""
    pack = msgpack.Packer(unicode_errors="surrogateescape", default=str).pack
    frames = []
    for t, r in out.injector.inject_batch(tag, events):
        if not isinstance(r, dict):
            continue
        message = out.builder.build(tag, t, r)
        if message:
            frames.append(pack((tag, t, message)))
    return b"".join(frames)


@pytest.mark.parametrize("count", [1, 15, 16, 17, 300, 65535, 65536])
def test_format_events_bytes_match_per_event_packing(count: int) -> None:
    out = drive("log_group_name g\nlog_stream_name s\n").instance
    records = tricky_records()
    events = [(1_700_000_000_000_000_000 + i, dict(records[i % len(records)])) for i in range(count)]
    expected = per_event_format(out, "app", [(t, dict(r)) for t, r in events])
    held = out.format_events("app", events)
    assert as_bytes(held) == expected
    # the held batch's size counts the memory its columns take (the buffer's limits bound memory),
    # and for these records no less than their packed frames
    tag, times, messages = held.columns
    assert len(held) >= sum(map(sys.getsizeof, messages)) + sum(map(sys.getsizeof, times)) >= len(expected)


def test_format_events_of_str_value_events_give_the_same_bytes_without_the_number_search(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kawa.event import StrValueEvents
    from kawa.plugins.outputs.cloudwatch_logs import messages

    out = drive("log_group_name g\nlog_stream_name s\n").instance
    events = [(1_700_000_000_000_000_000 + i, dict(STR_RECORDS[i % len(STR_RECORDS)])) for i in range(40)]
    expected = per_event_format(out, "app", [(t, dict(r)) for t, r in events])
    searched = []
    monkeypatch.setattr(messages, "_ANY_NON_STRING_OR_EMPTY", type("Spy", (), {
        "search": lambda self, text: searched.append(text)})())
    assert as_bytes(out.format_events("app", StrValueEvents(events))) == expected and searched == []
    out.format_events("app", [(t, dict(r)) for t, r in events])
    assert len(searched) == 1                          # a plain list is searched


def test_format_events_falls_back_per_record_for_surrogates_and_nil() -> None:
    out = drive("log_group_name g\nlog_stream_name s\n").instance
    events = [(1, {"a": SURROGATE}), (2, None), (3, {"b": 1e16}), (4, {1: "x"})]
    expected = per_event_format(out, "app", list(events))
    got = as_bytes(out.format_events("app", events))
    assert got == expected
    messages = [f[2] for f in _frames(got)]
    assert messages == ['{"a":"caf\ufffd"}', '{"b":1.0e+16}', '{"1":"x"}']


def _frames(data: bytes) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    return list(unpacker)


def plans_of(out: Any, chunk: Any) -> list[Any]:
    plans, missing = out._plan_chunk(chunk)
    assert missing == []
    return [(p.group, p.stream, p.pieces, p.batches, list(p.source), list(p.records.positions), p.tags, p.retention)
            for p in plans]


def test_prebuilt_chunk_plan_matches_a_plan_of_the_records() -> None:
    """Messages built per batch at emit plan the same as the records planned one by one."""
    d = drive("log_group_name g\nlog_stream_name s\nmax_events_per_batch 7\n")
    out = d.instance
    base = 1_700_000_000_000_000_000
    records = tricky_records()
    # out of order and equal timestamps: the stable sort must agree
    events = [(base + ((i * 7919) % 50) * 1_000_000, dict(records[i % len(records)])) for i in range(120)]

    async def one_chunk() -> Any:
        await out.emit("app", [(t, dict(r)) for t, r in events])
        out.buffer.enqueue_all(force=True)
        return out.buffer.dequeue()

    chunk = asyncio.run(one_chunk())
    fast = plans_of(out, chunk)
    out.prebuild = False                        # chunks of [tag, time, record]: messages built when planned
    general = plans_of(out, asyncio.run(one_chunk()))
    out.prebuild = True
    assert fast == general
    assert sum(len(p[2]) for p in fast) == 120
    plan = out._plan_chunk(chunk)[0][0]
    tag, t, record = plan.records[plan.source[0]]       # @ERROR records come back from the chunk
    assert tag == "app" and isinstance(record, dict)


def test_prebuilt_plan_in_slices_matches_the_general_loop_across_feed_slices() -> None:
    """_plan_prebuilt works a slice of frames at a time: over a chunk of several UNPACK_FEED slices
    its plan (order, batches, record positions) is the general loop's."""
    from kawa.buffer.chunk import UNPACK_FEED

    out = drive("log_group_name g\nlog_stream_name s\n").instance
    base = 1_700_000_000_000_000_000
    events = [(base + ((i * 7919) % 977) * 1_000_000, {"n": i, "pad": "x" * (200 + i % 50)}) for i in range(12_000)]

    async def one_chunk() -> Any:
        await out.emit("app", [(t, dict(r)) for t, r in events])
        out.buffer.enqueue_all(force=True)
        return out.buffer.dequeue()

    chunk = asyncio.run(one_chunk())
    assert chunk.bytesize > 2 * UNPACK_FEED
    assert out._plan_prebuilt(chunk, "g", "s", None) is not None       # the batch path is the one taken
    fast = plans_of(out, chunk)
    out._plan_prebuilt = lambda *a: None                                 # the general loop
    assert plans_of(out, chunk) == fast
    assert len(fast[0][2]) == 12_000 and fast[0][5] == list(range(12_000))


@pytest.mark.parametrize("order", ["in order", "shuffled"])
def test_held_chunk_plans_as_its_packed_bytes_and_as_the_records(order: str) -> None:
    """A memory chunk keeps format_events' columns (HeldFrames); _plan_held over them gives the plan
    that the same chunk read as packed bytes (_plan_prebuilt) and the general loop give. Shuffled
    timestamps take plan_in_order's sort; several emits make several held pieces."""
    out = drive("log_group_name g\nlog_stream_name s\nmax_events_per_batch 50\n").instance
    base = 1_700_000_000_000_000_000
    step = 1 if order == "in order" else 7919
    events = [(base + ((i * step) % 977) * 1_000_000, {"n": str(i), "pad": "é" * (i % 5)}) for i in range(900)]

    async def one_chunk() -> Any:
        for k in range(0, 900, 300):
            await out.emit("app", [(t, dict(r)) for t, r in events[k:k + 300]])
        out.buffer.enqueue_all(force=True)
        return out.buffer.dequeue()

    chunk = asyncio.run(one_chunk())
    held = chunk.held()
    assert held is not None and len(held) == 3
    assert chunk.bytesize == sum(map(len, held))
    plan = out._plan_held(chunk, held, "g", "s", None)
    assert plan is not None and len(plan.pieces) == 900
    from_held = plans_of(out, chunk)
    chunk.held = lambda: None                                            # read as packed bytes
    assert out._plan_prebuilt(chunk, "g", "s", None) is not None
    assert plans_of(out, chunk) == from_held
    out._plan_prebuilt = lambda *a: None                                 # the general loop
    assert plans_of(out, chunk) == from_held
    times = [p[0] for p in from_held[0][2]]
    assert times == sorted(times) and (order == "in order") == (from_held[0][4] == list(range(900)))


def test_held_chunk_without_a_group_name_takes_the_loop_that_routes_its_records() -> None:
    """A group template that resolves empty: _plan_held gives way to the loop, which sends every
    record to @ERROR with its reason, the records read back from the held messages."""
    d = drive("log_group_name ${k}\nlog_stream_name s\n<buffer k>\n</buffer>\n")
    out = d.instance

    async def one_chunk() -> Any:
        await out.emit("app", [(1_700_000_000_000_000_000, {"a": "1"})])
        out.buffer.enqueue_all(force=True)
        return out.buffer.dequeue()

    chunk = asyncio.run(one_chunk())
    assert chunk.held() is not None
    plans, missing = out._plan_chunk(chunk)
    assert plans == [] and [(m[1], m[3]) for m in missing] == [("app", {"a": "1"})]
