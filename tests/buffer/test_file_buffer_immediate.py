"""File buffer with flush_mode immediate: each chunk is written once, already queued (.q + .meta, no
rename, no .tmp), resumes after a restart, and leaves no file behind when the disk is full."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from kawa.errors import BufferOverflowError
from kawa.testing.drivers import OutputDriver

sys.path.insert(0, str(Path(__file__).parent))
from test_buffer import T0, RecordingOutput, wait_for  # noqa: E402,F401  (registers the test output)


def _conf(buf: Path) -> str:
    return f"<buffer tag>\n@type file\npath {buf}\nflush_mode immediate\nflush_at_shutdown false\n</buffer>"


def test_chunk_is_written_queued_and_resumed(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", _conf(buf))

    async def first() -> None:
        # not started: nothing flushes, the queued chunk stays on disk
        await d.feed_batch("a", [(T0, {"n": 1}), (T0, {"n": 2})])
        names = sorted(p.name for p in buf.iterdir())
        assert len(names) == 2 and names[0].startswith("buffer.q") and names[1] == names[0] + ".meta"
        assert (buf / names[1]).read_bytes()[:2] == b"\xc1\x00"
        assert [c.record_count for c in d.instance.buffer.queue] == [2]
        assert d.instance.buffer.stage == {}
        await d.instance.buffer.stop()

    asyncio.run(first())
    d2 = OutputDriver("test_recording_buffered", _conf(buf))

    async def second() -> None:
        async with d2.run():
            await d2.flush()
    asyncio.run(second())
    assert [r["n"] for _, evs in d2.instance.written for _, r in evs] == [1, 2]
    assert list(buf.iterdir()) == []


def test_disk_full_leaves_no_chunk_files(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available to simulate ENOSPC")
    buf = tmp_path / "buf"

    def opener(path: str, flags: int, mode: int = 0o644) -> int:
        if not path.endswith(".meta"):
            return os.open("/dev/full", os.O_WRONLY)
        return os.open(path, flags, mode)

    d = OutputDriver("test_recording_buffered", _conf(buf), extras={"buffer_file_opener": opener})

    async def run() -> None:
        with pytest.raises(BufferOverflowError, match="No space left"):
            await d.feed_batch("a", [(T0, {"n": 1})])
    asyncio.run(run())
    assert list(buf.iterdir()) == []
    assert not d.instance.buffer.queue
