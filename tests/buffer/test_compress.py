"""`<buffer> compress gzip`: chunks stored as gzip members (memory and file), limits on compressed bytes,
outputs reading them decompressed, file chunks resumed and recovered after damage."""

from __future__ import annotations

import asyncio
import gzip
import os
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kawa.buffer import compression
from kawa.buffer.recovery import salvage
from kawa.testing.drivers import OutputDriver

sys.path.insert(0, str(Path(__file__).parent))
from test_buffer import T0, RecordingOutput, wait_for  # noqa: E402,F401  (registers the test output)

GZIP_MAGIC = b"\x1f\x8b\x08"


def _records(d: OutputDriver) -> list[int]:
    return [r["n"] for _, evs in d.instance.written for _, r in evs]


def _batch(start: int, count: int, pad: int = 60) -> list[Any]:
    return [(T0 + i, {"n": i, "msg": f"GET /index.html {i % 7} " + "x" * pad}) for i in range(start, start + count)]


def _file_conf(buf: Path, extra: str = "") -> str:
    return f"<buffer tag>\n@type file\npath {buf}\nflush_interval 1h\ncompress gzip\n{extra}\n</buffer>"


def _data_file(buf: Path) -> Path:
    (data,) = [p for p in buf.iterdir() if not p.name.endswith(".meta")]
    return data


def test_memory_chunk_stores_gzip_members_and_outputs_read_events() -> None:
    plain = OutputDriver("test_recording_buffered", "<buffer tag>\nflush_interval 1h\n</buffer>")
    packed = OutputDriver("test_recording_buffered", "<buffer tag>\nflush_interval 1h\ncompress gzip\n</buffer>")

    async def run(d: OutputDriver) -> Any:
        async with d.run():
            await d.feed_batch("a", _batch(0, 50))
            await d.feed_batch("a", _batch(50, 50))
            chunk = d.instance.buffer.stage[next(iter(d.instance.buffer.stage))]
            stored = list(chunk._pieces)
            size, read = chunk.bytesize, chunk.read()
            await d.flush()
        return chunk, stored, size, read

    _, plain_pieces, plain_size, plain_read = asyncio.run(run(plain))
    chunk, pieces, size, read = asyncio.run(run(packed))
    assert chunk.compressed and len(pieces) == 2                     # one gzip member per append
    assert all(p.startswith(GZIP_MAGIC) for p in pieces)
    assert size == sum(map(len, pieces)) and size * 5 < plain_size    # bytesize counts compressed bytes
    assert read == plain_read == b"".join(plain_pieces)               # read() gives the msgpack stream
    assert _records(packed) == list(range(100)) == _records(plain)


def test_chunk_limits_apply_to_compressed_bytes() -> None:
    conf = "<buffer>\nchunk_limit_size 4k\nflush_interval 1h\n{}\n</buffer>"
    plain = OutputDriver("test_recording_buffered", conf.format(""))
    packed = OutputDriver("test_recording_buffered", conf.format("compress gzip"))

    async def run(d: OutputDriver) -> list[int]:
        async with d.run():
            for start in range(0, 400, 20):
                await d.feed_batch("a", _batch(start, 20))
            sizes = [c.bytesize for c in d.instance.buffer.chunks()]
            await d.flush()
        return sizes

    plain_sizes = asyncio.run(run(plain))
    run_sizes = asyncio.run(run(packed))
    assert all(s <= 4096 for s in run_sizes)
    assert len(run_sizes) * 4 <= len(plain_sizes)      # about 10x fewer chunks: each holds ~10x the records
    assert _records(packed) == list(range(400))


def test_record_too_large_compressed_is_dropped_with_fluentds_message_and_compressible_one_fits() -> None:
    d = OutputDriver("test_recording_buffered", "<buffer>\nchunk_limit_size 2k\nflush_interval 1h\ncompress gzip\n</buffer>")

    async def run() -> None:
        async with d.run():
            noise = os.urandom(3000).hex()              # incompressible: > 2k even gzipped
            await d.feed_batch("a", [(T0, {"n": 0}), (T0, {"n": 1, "noise": noise}),
                                     (T0, {"n": 2, "big": "y" * 5000})])  # 5k of 'y' is tiny gzipped
            await d.flush()

    asyncio.run(run())
    assert _records(d) == [0, 2]                        # Fluentd checks the compressed size of a record
    assert d.instance.buffer.dropped_records == 1
    assert any("concatenated/appended a" in line and "bytes record (nth: 1) is larger than buffer chunk limit size (2048)"
               in line for line in d.logs)


def test_formatted_output_writes_the_same_file_with_compressed_chunks(tmp_path: Path) -> None:
    outputs = {}
    for mode, buffer_type in (("text", "memory"), ("gzip", "memory"), ("gzip", "file")):
        out = tmp_path / f"{mode}-{buffer_type}"
        buffer_path = f"path {tmp_path}/buf-{mode}\n" if buffer_type == "file" else ""
        d = OutputDriver("file", f"path {out}/app\nappend true\n<buffer>\n@type {buffer_type}\n"
                                 f"{buffer_path}compress {mode}\n</buffer>")

        async def run(d: OutputDriver = d, gzipped: bool = mode == "gzip") -> None:
            async with d.run():
                await d.feed_batch("web", _batch(0, 30))
                await d.feed_batch("web", _batch(30, 30))
                assert all(c.compressed == gzipped for c in d.instance.buffer.chunks())
                await d.flush()
        asyncio.run(run())
        outputs[(mode, buffer_type)] = [p.read_bytes() for p in sorted(out.iterdir())]
    assert outputs[("text", "memory")] and outputs[("text", "memory")][0].count(b"\n") == 60
    assert outputs[("gzip", "memory")] == outputs[("text", "memory")] == outputs[("gzip", "file")]


def test_file_chunk_is_gzip_on_disk_records_it_in_meta_and_resumes(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", _file_conf(buf, "flush_at_shutdown false"))

    async def write() -> None:
        async with d.run():
            await d.feed_batch("a", _batch(0, 20))
            await d.feed_batch("a", _batch(20, 20))
    asyncio.run(write())
    data = _data_file(buf)
    raw = data.read_bytes()
    assert raw.startswith(GZIP_MAGIC) and raw.count(GZIP_MAGIC) >= 2
    assert len(gzip.decompress(raw)) > 5 * len(raw)
    meta = Path(str(data) + ".meta").read_bytes()
    assert msgpack.unpackb(meta[6:], raw=False, strict_map_key=False)["compress"] == "gzip"
    d2 = OutputDriver("test_recording_buffered", _file_conf(buf))

    async def resume() -> None:
        async with d2.run():
            (chunk,) = list(d2.instance.buffer.chunks())
            assert (chunk.compressed, chunk.record_count, chunk.bytesize) == (True, 40, len(raw))
            await d2.feed_batch("a", _batch(40, 5))          # appended to the resumed chunk: one more member
            await d2.flush()
    asyncio.run(resume())
    assert _records(d2) == list(range(45))
    assert list(buf.iterdir()) == []


def test_torn_and_corrupted_gzip_members_keep_the_good_records(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", _file_conf(buf, "flush_at_shutdown false"))

    async def write() -> None:
        async with d.run():
            for start in range(0, 100, 20):                   # five members of 20 records
                await d.feed_batch("a", _batch(start, 20))
    asyncio.run(write())
    data = _data_file(buf)
    raw = bytearray(data.read_bytes())
    starts = [i for i in range(len(raw)) if raw[i:i + 3] == GZIP_MAGIC]
    assert len(starts) == 5
    raw[starts[1] + 10: starts[1] + 14] = b"\xff\xff\xff\xff"   # member 2: its deflate block header is garbage
    raw = raw[: starts[4] + (len(raw) - starts[4]) * 2 // 3]    # member 5 torn (kill -9 mid-write)
    data.write_bytes(bytes(raw))
    d2 = OutputDriver("test_recording_buffered", _file_conf(buf))

    async def resume() -> None:
        async with d2.run():
            await d2.flush()
    asyncio.run(resume())
    got = _records(d2)
    torn_kept = [n for n in got if n >= 80]
    assert got == list(range(20)) + list(range(40, 80)) + torn_kept
    assert torn_kept == list(range(80, 80 + len(torn_kept))) and 0 < len(torn_kept) < 20
    warn = next(line for line in d2.logs if "recovered a damaged buffer chunk" in line)
    assert data.name in warn and f"records_kept={len(got)}" in warn
    assert not any("Traceback" in line for line in d2.logs)


def test_torn_member_readable_start_is_salvaged_record_by_record() -> None:
    frames = [msgpack.packb([T0 + i, {"n": i, "msg": "z" * 40}]) for i in range(250)]
    whole = compression.compress(b"".join(frames[:50]))
    member = compression.compress(b"".join(frames[50:]))
    torn = member[: len(member) // 2]
    result = salvage(whole + torn, formatted=False, compressed=True)
    unpacker = msgpack.Unpacker(strict_map_key=False)
    unpacker.feed(compression.decompress(result.data))
    records = [r["n"] for _, r in unpacker]
    assert records == list(range(len(records))) and 50 < len(records) < 250   # whole records, the torn start's too
    assert result.records == len(records) and result.lost == len(torn)        # the torn member counts as lost
    assert result.data.startswith(whole)                                      # intact members kept as they are
    with pytest.raises(ValueError):
        compression.decompress(whole + torn)                                  # strict readers refuse it


def test_staged_gzip_chunk_resumed_under_compress_text_is_read_and_not_appended(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", _file_conf(buf, "flush_at_shutdown false"))

    async def write() -> None:
        async with d.run():
            await d.feed_batch("a", _batch(0, 10))
    asyncio.run(write())
    text_conf = _file_conf(buf).replace("compress gzip", "compress text")
    d2 = OutputDriver("test_recording_buffered", text_conf)

    async def resume() -> None:
        async with d2.run():
            assert len(d2.instance.buffer.queue) == 1 and not d2.instance.buffer.stage
            await d2.feed_batch("a", _batch(10, 5))
            (staged,) = d2.instance.buffer.stage.values()
            assert not staged.compressed
            await d2.flush()
    asyncio.run(resume())
    assert _records(d2) == list(range(15))


def test_fluentd_gzip_chunk_without_compress_key_is_known_by_its_magic(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    buf.mkdir()
    chunk_id = "5f0a1b2c3d4e5f60718293a4b5c6d7e8"
    event_time = msgpack.ExtType(0, (1562803200).to_bytes(4, "big") + (5).to_bytes(4, "big"))
    data = (gzip.compress(msgpack.packb([event_time, {"n": 1}]))
            + gzip.compress(msgpack.packb([event_time, {"n": 2}])))
    (buf / f"buffer.q{chunk_id}.log").write_bytes(data)
    body = msgpack.packb({"timekey": None, "tag": "web", "variables": None, "seq": 0,
                          "id": bytes.fromhex(chunk_id), "s": 2, "c": 1562803200, "m": 1562803201})
    (buf / f"buffer.q{chunk_id}.log.meta").write_bytes(b"\xc1\x00" + len(body).to_bytes(4, "big") + body)
    d = OutputDriver("test_recording_buffered", _file_conf(buf).replace("compress gzip", ""))

    async def resume() -> None:
        async with d.run():
            await d.flush()
    asyncio.run(resume())
    assert d.instance.written[0][1] == [(1562803200 * 10**9 + 5, {"n": 1}), (1562803200 * 10**9 + 5, {"n": 2})]


@pytest.mark.parametrize("flush_mode", ["interval", "immediate"])
def test_formatted_gzip_file_chunks_resume_and_write_the_same_text(tmp_path: Path, flush_mode: str) -> None:
    def driver() -> OutputDriver:
        return OutputDriver("file", f"path {tmp_path}/out/app\nappend true\n<buffer>\n@type file\npath {tmp_path}/buf\n"
                                    f"compress gzip\nflush_mode {flush_mode}\nflush_at_shutdown false\n"
                                    "retry_wait 1h\n</buffer>")
    def refuse(path: str, data: bytes) -> str:
        raise OSError("disk gone")               # nothing is written in the first run: chunks stay on disk

    d = driver()
    d.instance._write_file = refuse
    expected: list[bytes] = []

    async def write() -> None:
        async with d.run():
            await d.feed_batch("web", _batch(0, 30))
            await d.feed_batch("web", _batch(30, 30))
            chunks = list(d.instance.buffer.chunks())
            assert chunks and all(c.compressed and c.formatted for c in chunks)
            expected.append(b"".join(c.read() for c in chunks))
    asyncio.run(write())
    assert not (tmp_path / "out").exists()
    assert all(p.read_bytes()[:3] == GZIP_MAGIC for p in (tmp_path / "buf").iterdir() if not p.name.endswith(".meta"))
    d2 = driver()

    async def resume() -> None:
        async with d2.run():
            assert sum(c.record_count for c in d2.instance.buffer.chunks()) == 60
            d2.instance.buffer.enqueue_all(force=True)
            await d2.flush()
    asyncio.run(resume())
    (out,) = (tmp_path / "out").iterdir()
    assert out.read_bytes() == expected[0] and out.read_bytes().count(b"\n") == 60
