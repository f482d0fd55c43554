"""HeldFrames: a formatted batch an output hands to the buffer as its own objects. Uncompressed
memory chunks keep it as it is (`chunk.held()`); compressed and file chunks store its packed bytes;
reading any chunk as bytes gives the packed form."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kawa.buffer.chunk import HeldFrames, Metadata
from kawa.buffer.output import BufferedOutput
from kawa.engine.registry import register
from kawa.plugins.buffers.memory import MemoryChunk
from kawa.testing.drivers import OutputDriver

T0 = 1562803200 * 1_000_000_000


def _pack(columns: tuple[str, list[Any]]) -> bytes:
    tag, events = columns
    return b"".join(msgpack.packb([tag, t, r["n"]]) for t, r in events)


@register("output", "test_held_frames")
class HeldFramesOutput(BufferedOutput):
    """Formats at emit time into HeldFrames (as cloudwatch_logs does)."""

    def format_events(self, tag: str, events: list[Any]) -> bytes:
        columns = (tag, list(events))
        return HeldFrames(columns, len(_pack(columns)), _pack)  # type: ignore[return-value]

    async def write(self, chunk: Any) -> None:
        pass


def _batch(start: int, count: int) -> list[Any]:
    return [(T0 + i, {"n": i}) for i in range(start, start + count)]


def _staged_chunk(buffer_conf: str) -> Any:
    d = OutputDriver("test_held_frames", f"<buffer tag>\nflush_interval 1h\n{buffer_conf}\n</buffer>")

    async def run() -> Any:
        async with d.run():
            await d.feed_batch("a", _batch(0, 30))
            await d.feed_batch("a", _batch(30, 30))
            chunk = d.instance.buffer.stage[next(iter(d.instance.buffer.stage))]
            held = chunk.held()
            first, second = chunk.read(), chunk.read()
            return chunk, held, first, second, chunk.bytesize, chunk.held()

    return asyncio.run(run())


EXPECTED = _pack(("a", _batch(0, 60)))


def test_memory_chunk_keeps_held_frames_and_reads_them_packed() -> None:
    chunk, held, first_read, second_read, size, held_after = _staged_chunk("")
    assert held is not None and [len(h.columns[1]) for h in held] == [30, 30]
    assert first_read == second_read == EXPECTED        # packed on every read, the objects kept
    assert held_after == held
    assert size == len(EXPECTED) and chunk.record_count == 60


@pytest.mark.parametrize("buffer_conf", ["compress gzip", "@type file\npath {tmp}/buf"])
def test_compressed_and_file_chunks_store_the_packed_bytes(buffer_conf: str, tmp_path: Path) -> None:
    chunk, held, first_read, _, size, _ = _staged_chunk(buffer_conf.format(tmp=tmp_path))
    assert held is None
    assert first_read == EXPECTED
    if "file" in buffer_conf:
        assert size == len(EXPECTED)


def test_a_memory_chunk_with_bytes_and_held_pieces_is_read_as_bytes() -> None:
    chunk = MemoryChunk(b"\0" * 16, Metadata(tag="a"), True, 0)
    chunk.append(_pack(("a", _batch(0, 5))), 5, 0)
    chunk.append(HeldFrames(("a", _batch(5, 5)), 1, _pack), 5, 0)  # type: ignore[arg-type]
    assert chunk.held() is None
    assert chunk.read() == b"".join(chunk.read_pieces()) == _pack(("a", _batch(0, 10)))
    assert chunk.bytesize == len(_pack(("a", _batch(0, 5)))) + 1
    mark = chunk.mark()
    chunk.append(HeldFrames(("a", _batch(10, 2)), 3, _pack), 2, 0)  # type: ignore[arg-type]
    chunk.rollback(mark)
    assert chunk.read() == _pack(("a", _batch(0, 10)))
