"""Generic buffer through a test output: chunk keys, limits, flush modes, retries, dead letters, overflow."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from kawa.buffer.chunk import Chunker, Metadata
from kawa.buffer.options import parse_chunk_keys
from kawa.buffer.output import BufferedOutput, DeliveryAck
from kawa.buffer.placeholders import Placeholders, validate
from kawa.engine.registry import register
from kawa.engine.system import SystemOptions
from kawa.errors import BufferOverflowError, ConfigError, RetryableError, UnrecoverableError
from kawa.testing.drivers import FakeClock, OutputDriver

T0 = 1562803200 * 1_000_000_000   # 2019-07-11 00:00:00 UTC


@register("output", "test_recording_buffered")
class RecordingOutput(BufferedOutput):
    """Writes chunks into `self.written`; `self.fail` decides per call what to raise."""

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.written: list[tuple[Metadata, list]] = []
        self.fail: Callable[[Any], BaseException | None] = lambda chunk: None
        self.calls = 0

    async def write(self, chunk: Any) -> None:
        self.calls += 1
        exc = self.fail(chunk)
        if exc is not None:
            raise exc
        self.written.append((chunk.metadata, list(chunk.events())))


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def _driver(conf: str, **kw: Any) -> OutputDriver:
    return OutputDriver("test_recording_buffered", conf, **kw)


def test_chunk_keys_parsed_and_validated() -> None:
    keys = parse_chunk_keys("tag, time, $.k.x, host", ())
    assert (keys.tag, keys.time, keys.records) == (True, True, ("$.k.x", "host"))
    assert parse_chunk_keys("", ("time",)).time
    assert parse_chunk_keys("[]", ("time",)).records == () and not parse_chunk_keys("[]", ("time",)).time
    with pytest.raises(ConfigError, match="bracket notation"):
        parse_chunk_keys("$['a']", ())
    with pytest.raises(ConfigError, match="invalid char"):
        parse_chunk_keys("a b", ())


def test_chunker_groups_by_timekey_tag_and_nested_keys() -> None:
    chunker = Chunker(parse_chunk_keys("tag,time,$.k.x", ()), 3600, 0)
    groups = chunker.split("app", [(T0, {"k": {"x": 1}}), (T0 + 10, {"k": {"x": 1}}),
                                   (T0 + 3600 * 10**9, {"k": {"x": 1}}), (T0, {"k": {"x": 2}})])
    assert sorted((m.timekey, m.tag, m.variables["$.k.x"], len(e)) for m, e in groups.items()) == [
        (1562803200, "app", 1, 2), (1562803200, "app", 2, 1), (1562806800, "app", 1, 1)]


def test_timekey_in_a_zone_starts_at_local_midnight() -> None:
    chunker = Chunker(parse_chunk_keys("time", ()), 86400, 9 * 3600)
    (meta,) = chunker.split("t", [(T0, {})])
    assert meta.timekey == 1562803200 - 9 * 3600 + 86400 - 86400   # 2019-07-11 00:00 +0900 = 2019-07-10 15:00Z
    assert meta.timekey % 86400 == 15 * 3600


def test_placeholders_fill_and_validate() -> None:
    keys = parse_chunk_keys("tag,time,host", ())
    ph = Placeholders(keys, 0)

    class C:
        id = "ab" * 16
        metadata = Metadata(1562803200, "a.b.c", {"host": "web1"})

    out = ph.extract("/l/${tag}/${tag[0]}/${tag[-1]}/${host}/%Y%m%d/${chunk_id}", C())
    assert out == f"/l/a.b.c/a/c/web1/20190711/{'ab' * 16}"
    validate("path", "/l/${tag}/${host}/%Y%m%d", keys, 86400)
    with pytest.raises(ConfigError, match="doesn't have enough placeholders for keys host"):
        validate("path", "/l/${tag}/%Y%m%d", keys, 86400)
    with pytest.raises(ConfigError, match=r"doesn't have timestamp placeholder for day\('%d'\) for timekey 60"):
        validate("path", "/l/${tag}/${host}/%Y%m%d", keys, 60)
    with pytest.raises(ConfigError, match="has placeholders, but chunk keys doesn't have keys nope"):
        validate("path", "/l/${tag}/${host}/${nope}/%Y%m%d%H%M", keys, 60)


def test_interval_mode_flushes_everything_on_flush_and_keeps_order() -> None:
    d = _driver("<buffer tag>\nflush_interval 1h\n</buffer>")

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 1}), (T0, {"n": 2})])
            await d.feed_batch("b", [(T0, {"n": 3})])
            await d.feed_batch("a", [(T0, {"n": 4})])
            assert d.instance.written == []        # nothing due yet
            await d.flush()
            got = {m.tag: [r["n"] for _, r in evs] for m, evs in d.instance.written}
            assert got == {"a": [1, 2, 4], "b": [3]}

    asyncio.run(run())


def test_chunk_limit_records_splits_into_several_chunks() -> None:
    d = _driver("<buffer>\nchunk_limit_records 3\nflush_mode immediate\n</buffer>")

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": i}) for i in range(7)])
            await wait_for(lambda: sum(len(e) for _, e in d.instance.written) == 7)
        sizes = [len(e) for _, e in d.instance.written]
        assert max(sizes) <= 3 and [r["n"] for _, e in d.instance.written for _, r in e] == list(range(7))

    asyncio.run(run())


def test_a_write_failing_in_its_second_chunk_is_undone_in_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The input retries a failed emit whole: what the write put in other chunks must not stay."""
    from kawa.plugins.buffers.memory import MemoryChunk

    d = _driver("<buffer time>\ntimekey 1h\ntimekey_wait 3650d\n</buffer>")
    real_append = MemoryChunk._append

    def hour_one_fails(chunk: MemoryChunk, *args: Any) -> None:
        if chunk.metadata.timekey == T0 // 10**9 + 3600:
            raise OSError(28, "No space left on device")
        real_append(chunk, *args)
    monkeypatch.setattr(MemoryChunk, "_append", hour_one_fails)

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 0})])
            buffer = d.instance.buffer
            (first,) = buffer.stage.values()
            before = (first.record_count, first.bytesize, first.read(), buffer.stage_size)
            with pytest.raises(BufferOverflowError, match="No space left"):
                await d.feed_batch("a", [(T0, {"n": 1}), (T0 + 3600 * 10**9, {"n": 2})])
            assert (first.record_count, first.bytesize, first.read(), buffer.stage_size) == before
            assert list(buffer.stage.values()) == [first]       # the new hour-1 chunk is gone
            monkeypatch.setattr(MemoryChunk, "_append", real_append)
            await d.feed_batch("a", [(T0, {"n": 1}), (T0 + 3600 * 10**9, {"n": 2})])
            await d.flush()
        assert sorted(r["n"] for _, e in d.instance.written for _, r in e) == [0, 1, 2]

    asyncio.run(run())


def test_record_larger_than_chunk_limit_is_dropped_counted_and_logged() -> None:
    d = _driver("<buffer>\nchunk_limit_size 100\nflush_mode immediate\n</buffer>")

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"m": "x" * 500}), (T0, {"m": "ok"})])
            await wait_for(lambda: d.instance.written)
        assert d.instance.buffer.dropped_records == 1
        assert any("is larger than buffer chunk limit size (100)" in line for line in d.logs)

    asyncio.run(run())


def test_retryable_error_retries_same_chunk_with_backoff_then_succeeds() -> None:
    clock = FakeClock(T0)
    d = _driver("<buffer>\nflush_mode immediate\nretry_randomize false\n</buffer>", clock=clock)
    failures = iter([RetryableError("503"), RetryableError("503")])
    d.instance.fail = lambda chunk: next(failures, None)

    async def run() -> None:
        async with d.run():
            await d.feed("a", T0, {"n": 1})
            await wait_for(lambda: d.instance.calls == 1)
            await asyncio.sleep(0.05)
            assert d.instance.calls == 1            # waits for the fake clock, not wall time
            clock.advance(1)
            d.instance.flusher.wake()
            await wait_for(lambda: d.instance.calls == 2)
            clock.advance(1.5)
            d.instance.flusher.wake()
            await asyncio.sleep(0.05)
            assert d.instance.calls == 2            # second wait is 2 s
            clock.advance(0.5)
            d.instance.flusher.wake()
            await wait_for(lambda: d.instance.written)
        assert any("failed to flush the buffer." in line and "retry_times=1" in line for line in d.logs)

    asyncio.run(run())


def _system_with_root(root: Path) -> SystemOptions:
    system = SystemOptions.defaults()
    system.root_dir = str(root)  # type: ignore[attr-defined]
    return system  # type: ignore[return-value]


def test_failure_after_progress_restarts_the_backoff_and_counts_no_retry_step() -> None:
    clock = FakeClock(T0)
    d = _driver("<buffer>\nflush_mode immediate\nretry_randomize false\nretry_max_times 2\n</buffer>", clock=clock)
    failures = iter([RetryableError("503"), RetryableError("503 after 3 calls", progress=True),
                     RetryableError("503 after 2 calls", progress=True), RetryableError("503 after 1 call", progress=True)])
    d.instance.fail = lambda chunk: next(failures, None)

    async def run() -> None:
        async with d.run():
            await d.feed("a", T0, {"n": 1})
            for calls in (2, 3, 4, 5):          # every wait is retry_wait (1 s): never 2, 4, ...
                await wait_for(lambda calls=calls: d.instance.calls == calls - 1)
                clock.advance(1)
                d.instance.flusher.wake()
            await wait_for(lambda: d.instance.written)
        # four failures with retry_max_times 2: progress kept the chunk from the dead-letter directory
        assert d.instance.flusher.dead_lettered == 0

    asyncio.run(run())


def test_exhausted_retries_move_only_that_chunk_to_dead_letter(tmp_path: Path) -> None:
    d = _driver("<buffer tag>\nflush_mode immediate\nretry_max_times 0\n</buffer>",
                system=_system_with_root(tmp_path))
    d.instance.fail = lambda chunk: RetryableError("down") if chunk.metadata.tag == "bad" else None

    async def run() -> None:
        async with d.run():
            await d.feed("bad", T0, {"n": 1})
            await d.feed("good", T0, {"n": 2})
            await wait_for(lambda: d.instance.flusher.dead_lettered == 1 and d.instance.written)
        assert [m.tag for m, _ in d.instance.written] == ["good"]
        (dead,) = (tmp_path / "backup" / "worker0" / "test").glob("*.log")
        assert json.loads(Path(str(dead) + ".meta.json").read_text())["tag"] == "bad"
        assert any("Hit limit for retries" in line for line in d.logs)
        assert any("bad chunk is moved to" in line for line in d.logs)

    asyncio.run(run())


def test_unrecoverable_error_goes_to_dead_letter_without_retry(tmp_path: Path) -> None:
    d = _driver("<buffer>\nflush_mode immediate\n</buffer>", system=_system_with_root(tmp_path))
    d.instance.fail = lambda chunk: UnrecoverableError("400 bad request")

    async def run() -> None:
        async with d.run():
            await d.feed("a", T0, {"n": 1})
            await wait_for(lambda: d.instance.flusher.dead_lettered == 1)
        assert d.instance.calls == 1
        assert any("got unrecoverable error in primary and no secondary" in line for line in d.logs)

    asyncio.run(run())


def test_slow_down_backs_off_the_whole_output() -> None:
    clock = FakeClock(T0)
    d = _driver("<buffer tag>\nflush_mode immediate\nretry_randomize false\nretry_wait 10\n</buffer>", clock=clock)
    d.instance.fail = lambda chunk: (RetryableError("throttled", slow_down=True)
                                     if chunk.metadata.tag == "a" and d.instance.calls == 1 else None)

    async def run() -> None:
        async with d.run():
            await d.feed("a", T0, {"n": 1})
            await wait_for(lambda: d.instance.calls == 1)
            await d.feed("b", T0, {"n": 2})
            await asyncio.sleep(0.05)
            assert d.instance.written == []      # "b" waits too
            clock.advance(10)
            d.instance.flusher.wake()
            await wait_for(lambda: any(m.tag == "b" for m, _ in d.instance.written))

    asyncio.run(run())


def test_overflow_throw_exception_then_drop_oldest_chunk() -> None:
    d = _driver("<buffer tag>\nchunk_limit_size 1k\ntotal_limit_size 2k\nflush_interval 1h\n"
                "flush_at_shutdown false\n</buffer>")
    d.instance.fail = lambda chunk: RetryableError("down")
    big = [(T0, {"m": "x" * 900})]

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", big)
            await d.feed_batch("b", big)
            await d.feed_batch("c", big)
            with pytest.raises(BufferOverflowError):
                await d.feed_batch("d", big)

    asyncio.run(run())
    d2 = _driver("<buffer tag>\nchunk_limit_size 1k\ntotal_limit_size 2k\nflush_interval 1h\n"
                 "overflow_action drop_oldest_chunk\nflush_at_shutdown false\n</buffer>")
    d2.instance.fail = lambda chunk: RetryableError("down")

    async def run2() -> None:
        async with d2.run():
            for tag in "abc":
                await d2.feed_batch(tag, big)
            d2.instance.buffer.enqueue_all(force=True)
            await d2.feed_batch("d", big)
            assert "d" in {m.tag for m in d2.instance.buffer.stage}
        assert any("dropping oldest chunk" in line for line in d2.logs)

    asyncio.run(run2())


def test_memory_ack_settles_after_write_and_shutdown_flushes() -> None:
    d = _driver("<buffer>\nflush_interval 1h\n</buffer>")
    settled: list[bool] = []

    async def run() -> None:
        async with d.run():
            await d.instance.emit("a", [(T0, {"n": 1})], ack=DeliveryAck(lambda: settled.append(True)))
            assert settled == []
        assert settled == [True]              # flush_at_shutdown (memory default) wrote it
        assert len(d.instance.written) == 1

    asyncio.run(run())


def test_flush_mode_lazy_waits_for_timekey_wait() -> None:
    clock = FakeClock(T0 + 10 * 10**9)
    d = _driver("<buffer time>\ntimekey 60\ntimekey_wait 30\ntimekey_use_utc true\n</buffer>", clock=clock)

    async def run() -> None:
        async with d.run():
            await d.feed("a", T0, {"n": 1})
            d.instance.flusher.enqueue_due()
            assert not d.instance.buffer.queue
            clock.advance(60 + 30 - 10)          # range [T0, T0+60) + 30 s wait has passed
            d.instance.flusher.enqueue_due()
            await wait_for(lambda: d.instance.written)

    asyncio.run(run())


def test_idle_enqueue_timer_wakes_when_a_chunk_is_staged() -> None:
    """With nothing staged the enqueue timer sleeps (up to IDLE_WAIT, 30 s) instead of ticking; the
    first staged chunk must wake it, so the chunk still goes out at its flush_interval."""
    d = _driver("<buffer>\nflush_mode interval\nflush_interval 0.2\n</buffer>")

    async def run() -> None:
        async with d.run():
            calls = 0
            enqueue_due = d.instance.flusher.enqueue_due

            def counting() -> None:
                nonlocal calls
                calls += 1
                enqueue_due()

            d.instance.flusher.enqueue_due = counting     # type: ignore[method-assign]
            await asyncio.sleep(1.5)                       # longer than the 1 s tick of a staged buffer
            assert calls <= 1                              # the loop's first pass only, no tick
            await d.feed("a", T0, {"n": 1})
            await wait_for(lambda: d.instance.written, timeout=10)   # far below IDLE_WAIT

    asyncio.run(run())
