"""File buffer: Fluentd layout, resume after restart and kill -9, corrupted chunk recovery, ENOSPC."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kawa.errors import BufferOverflowError
from kawa.plugins.buffers.file import frame_formatted
from kawa.testing.drivers import OutputDriver

sys.path.insert(0, str(Path(__file__).parent))
from test_buffer import T0, RecordingOutput, wait_for  # noqa: E402,F401  (registers the test output)

SRC = Path(__file__).resolve().parents[2] / "src"


def _conf(buf: Path, extra: str = "") -> str:
    return f"<buffer tag>\n@type file\npath {buf}\nflush_interval 1h\n{extra}\n</buffer>"


def _records(d: OutputDriver) -> list[int]:
    return [r["n"] for _, evs in d.instance.written for _, r in evs]


def test_layout_staged_then_queued_and_resumed_after_restart(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", _conf(buf, "flush_at_shutdown false"))

    async def first() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 1}), (T0, {"n": 2})])
            names = sorted(p.name for p in buf.iterdir())
            assert len(names) == 2 and names[0].startswith("buffer.b") and names[0].endswith(".log")
            assert names[1] == names[0] + ".meta"
            assert (buf / names[1]).read_bytes()[:2] == b"\xc1\x00"
            d.instance.buffer.enqueue_all(force=True)
            assert all(".q" in p.name for p in buf.iterdir())

    asyncio.run(first())
    d2 = OutputDriver("test_recording_buffered", _conf(buf))

    async def second() -> None:
        async with d2.run():
            await d2.flush()
    asyncio.run(second())
    assert _records(d2) == [1, 2]
    assert d2.instance.written[0][0].tag == "a"
    assert list(buf.iterdir()) == []


WRITER = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from test_buffer import RecordingOutput
from kawa.testing.drivers import OutputDriver
d = OutputDriver("test_recording_buffered", "<buffer>\n@type file\npath " + sys.argv[1] + "\nflush_interval 1h\nchunk_limit_records 50\n" + sys.argv[3] + "\n</buffer>")
async def main():
    await d.instance.start()
    n = 0
    while True:
        await d.feed_batch("k", [(1, {"n": n + i, "pad": "x" * 100}) for i in range(10)])
        n += 10
        print(n, flush=True)
asyncio.run(main())
"""


@pytest.mark.parametrize("compress", ["text", "gzip"])
def test_kill_9_at_any_moment_loses_nothing_acknowledged(tmp_path: Path, compress: str) -> None:
    buf = tmp_path / "buf"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(buf), str(Path(__file__).parent),
                             f"compress {compress}"],
                            stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    acknowledged = 0
    deadline = time.monotonic() + 60   # generous: the machine may be loaded; a condition, not a speed check
    while acknowledged < 3000 and time.monotonic() < deadline:
        acknowledged = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert acknowledged >= 3000
    # the writer may have acknowledged more batches before the kill landed: they are in the pipe
    acknowledged = max([acknowledged, *(int(line) for line in proc.stdout.read().split())])
    data_files = [p.read_bytes() for p in buf.iterdir() if not p.name.endswith(".meta")]
    assert data_files and all(raw[:3] == b"\x1f\x8b\x08" for raw in data_files if raw) == (compress == "gzip")
    d = OutputDriver("test_recording_buffered", "<buffer>\n@type file\npath %s\ncompress %s\n</buffer>" % (buf, compress))

    async def resume() -> None:
        async with d.run():
            await d.flush()
    asyncio.run(resume())
    got = sorted(_records(d))
    # every batch emit() returned for is there, exactly once; the batch in flight may be there too
    assert got[:acknowledged] == list(range(acknowledged))
    assert len(got) in (acknowledged, acknowledged + 10)
    assert not any("Traceback" in line for line in d.logs)


def test_corrupted_chunk_is_recovered_record_by_record(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", _conf(buf, "flush_at_shutdown false"))

    async def write() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": i}) for i in range(20)])
    asyncio.run(write())
    (data,) = [p for p in buf.iterdir() if not p.name.endswith(".meta")]
    raw = bytearray(data.read_bytes())
    frame = len(raw) // 20
    raw[5 * frame + 1: 5 * frame + 4] = b"\xc1\xc1\xc1"      # garbage inside record 5
    raw = raw[: len(raw) - frame // 2]                        # torn last record
    data.write_bytes(bytes(raw))
    d2 = OutputDriver("test_recording_buffered", _conf(buf))

    async def resume() -> None:
        async with d2.run():
            await d2.flush()
    asyncio.run(resume())
    got = _records(d2)
    assert got[:5] == [0, 1, 2, 3, 4] and 6 in got and 18 in got and 19 not in got and 5 not in got
    assert any("recovered a damaged buffer chunk" in line and data.name in line for line in d2.logs)


def test_chunk_with_unreadable_meta_is_moved_aside_not_crash_looping(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", _conf(buf, "flush_at_shutdown false"))

    async def write() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 1})])
    asyncio.run(write())
    (meta,) = buf.glob("*.meta")
    meta.write_bytes(b"\xc1\x00\x00\x00\x00\x09garbage")
    system = d.system
    system.root_dir = str(tmp_path / "root")  # type: ignore[attr-defined]
    d2 = OutputDriver("test_recording_buffered", _conf(buf), system=system)

    async def resume() -> None:
        async with d2.run():
            await d2.flush()
    asyncio.run(resume())
    assert d2.instance.written == []
    assert list((tmp_path / "root" / "backup").rglob("buffer.b*.log"))
    assert any("found broken chunk file during resume." in line for line in d2.logs)


def test_disk_full_holds_input_back_and_keeps_buffered_data(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    full = {"on": False}

    def opener(path: str, flags: int, mode: int = 0o644) -> int:
        if full["on"] and not path.endswith((".meta", ".tmp")):
            return os.open("/dev/full", os.O_WRONLY)
        return os.open(path, flags, mode)

    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available to simulate ENOSPC")
    d = OutputDriver("test_recording_buffered", _conf(buf, "flush_at_shutdown false"),
                     extras={"buffer_file_opener": opener})

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 1})])
            full["on"] = True
            with pytest.raises(BufferOverflowError, match="No space left"):
                await d.feed_batch("b", [(T0, {"n": 2})])   # new chunk on a full disk
            full["on"] = False
            await d.feed_batch("a", [(T0, {"n": 3})])
            await d.flush()
    asyncio.run(run())
    assert sorted(_records(d)) == [1, 3]


def test_write_error_mid_frame_cuts_partial_frame(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", _conf(buf, "flush_at_shutdown false"))

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 1})])
            chunk: Any = next(iter(d.instance.buffer.stage.values()))
            real_fd = chunk._fd
            chunk._fd = os.open("/dev/full", os.O_WRONLY)
            with pytest.raises(BufferOverflowError):
                await d.feed_batch("a", [(T0, {"n": 2})])
            os.close(chunk._fd)
            chunk._fd = real_fd
            await d.feed_batch("a", [(T0, {"n": 3})])
            await d.flush()
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available")
    asyncio.run(run())
    assert _records(d) == [1, 3]


def test_chunk_is_not_written_while_the_emit_that_filled_it_is_fsyncing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Written and purged before the emit settles, a kill -9 would leave no chunk checkpoint and no
    moved pos_file: tail would read delivered lines again (duplicates)."""
    import threading

    from kawa import delivery
    from kawa.plugins.buffers import file as file_buffer

    release = threading.Event()
    real_fsync = file_buffer._fsync_path

    def slow_fsync(path: str) -> None:        # flush_mode immediate: the queued chunk is synced by path
        release.wait(10)
        real_fsync(path)

    monkeypatch.setattr(file_buffer, "_fsync_path", slow_fsync)
    d = OutputDriver("test_recording_buffered",
                     f"<buffer>\n@type file\npath {tmp_path / 'buf'}\nflush_mode immediate\n</buffer>")

    async def run() -> None:
        async with d.run():
            ticket = delivery.Ticket(("in_tail\tx.pos\t1", 100))
            with delivery.tracking(ticket):
                emit = asyncio.ensure_future(d.instance.emit("a", [(T0, {"n": 1})]))
                for _ in range(30):                   # the flusher gets every chance to run
                    await asyncio.sleep(0.01)
                assert not emit.done() and d.instance.written == []
            release.set()
            await emit
            ticket.seal()
            await asyncio.wait_for(ticket.stored, 5)
            await wait_for(lambda: bool(d.instance.written))
    asyncio.run(run())
    assert _records(d) == [1]


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 300_000])
@pytest.mark.parametrize("records", [0, 1, 127, 128, 65536, 2**32])
def test_formatted_frame_is_the_msgpack_of_records_and_bytes(size: int, records: int) -> None:
    # what recovery and older chunks read: msgpack [records, bin], across the bin 8/16/32 bounds
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert frame_formatted(data, records) == msgpack.packb([records, data])
