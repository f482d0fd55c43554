"""File buffer with flush_mode immediate: each chunk is written once, already queued (.q + .meta, no
rename, no .tmp), resumes after a restart, and leaves no file behind when the disk is full. The
newest chunks hand the text they were written with to their first read."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from kawa.engine.registry import register
from kawa.errors import BufferOverflowError, RetryableError
from kawa.plugins.buffers.file import frame_formatted
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
    # the log names the file system's error and the buffer path, not Fluentd's "by buffer overflow"
    # (which points at total_limit_size)
    [line] = [line for line in d.logs if "failed to write data into buffer" in line]
    assert "[error]" in line and "its file system refused the write" in line
    assert f'path="{buf}"' in line and "[Errno 28] No space left on device" in line


class TextOutput(RecordingOutput):
    """Formats at emit time, as out_file does: its chunks hold text; `texts` gets what each write read."""

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.texts: list[bytes] = []

    def format_events(self, tag: str, events: list[Any]) -> bytes:
        return b"".join(f"{tag} {r['n']}\n".encode() for _, r in events)

    async def write(self, chunk: Any) -> None:
        self.calls += 1
        exc = self.fail(chunk)
        if exc is not None:
            raise exc
        self.texts.append(chunk.read())


register("output", "test_recording_text")(TextOutput)


def test_a_new_chunk_hands_its_text_to_the_first_read_without_reading_its_file(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_text", _conf(buf))

    async def run() -> None:
        await d.feed_batch("a", [(T0, {"n": 1}), (T0, {"n": 2})])     # not started: stays queued
        chunk: Any = d.instance.buffer.queue[0]
        assert chunk.written == b"a 1\na 2\n"
        # the file changed behind the chunk's back: only a read of the file would see it
        Path(chunk.path).write_bytes(frame_formatted(b"other\n", 1))
        assert chunk.read() == b"a 1\na 2\n"
        assert chunk.written is None                # the first read took it
        assert chunk.read() == b"other\n"           # later reads read the file
        await d.instance.buffer.stop()

    asyncio.run(run())


def test_a_retried_chunk_reads_its_file(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_text", _conf(buf).replace("</buffer>", "retry_wait 0.01\n</buffer>"))
    d.instance.fail = lambda chunk: RetryableError("not yet") if d.instance.calls == 1 else None

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 1})])
            await wait_for(lambda: d.instance.texts != [])

    asyncio.run(run())
    assert d.instance.calls == 2 and d.instance.texts == [b"a 1\n"]
    assert list(buf.iterdir()) == []


def test_only_the_newest_chunks_keep_their_text_and_within_a_byte_bound(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from kawa.plugins.buffers import file as file_buffer

    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_text", _conf(buf))

    async def run() -> None:
        for n in range(4):                          # not started: a queue behind an output that is behind
            await d.feed_batch("a", [(T0, {"n": n})])
        queue: Any = d.instance.buffer.queue      # a deque
        assert [c.written for c in queue] == [None] * (4 - file_buffer.KEEP_WRITTEN_CHUNKS) + \
            [b"a 2\n", b"a 3\n"][-file_buffer.KEEP_WRITTEN_CHUNKS:]
        assert [c.read() for c in queue] == [b"a 0\n", b"a 1\n", b"a 2\n", b"a 3\n"]   # from files or memory
        monkeypatch.setattr(file_buffer, "KEEP_WRITTEN_BYTES", 10)
        await d.feed_batch("a", [(T0, {"n": 10}), (T0, {"n": 11})])     # 10 bytes: kept
        await d.feed_batch("a", [(T0, {"n": 12})])                       # 15 together: the older one reads its file
        assert [c.written for c in list(queue)[-2:]] == [None, b"a 12\n"]
        await d.feed_batch("a", [(T0, {"n": n}) for n in range(100, 103)])   # 18 bytes alone: not kept
        assert [c.written for c in list(queue)[-2:]] == [b"a 12\n", None]
        await d.instance.buffer.stop()

    asyncio.run(run())


def test_a_chunk_whose_file_was_removed_is_dropped_once_with_an_error(tmp_path: Path) -> None:
    """Files removed under kawa during an outage (someone freeing a full disk): the chunk is counted
    and logged as dropped instead of retried for the whole retry_timeout; the others are written."""
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_text", _conf(buf).replace("</buffer>", "retry_wait 0.01\n</buffer>"))
    removed: list[Any] = []

    async def run() -> None:
        async with d.run():
            d.instance.fail = lambda chunk: RetryableError("down")
            await d.feed_batch("a", [(T0, {"n": 0}), (T0, {"n": 100})])
            [first] = d.instance.buffer.chunks()
            removed.append(first)
            for n in range(1, 4):
                await d.feed_batch("a", [(T0, {"n": n}), (T0, {"n": n + 100})])
            await wait_for(lambda: d.instance.calls >= 8)       # each chunk failed at least twice
            assert first.written is None                        # older than the chunks that keep their text
            os.unlink(first.path)
            d.instance.fail = lambda chunk: None
            await wait_for(lambda: len(d.instance.texts) == 3)
            await asyncio.sleep(0.1)                # a retry of the removed chunk would have come by now

    asyncio.run(run())
    assert sorted(d.instance.texts) == [b"a 1\na 101\n", b"a 2\na 102\n", b"a 3\na 103\n"]
    [first] = removed
    gone = [i for i, line in enumerate(d.logs) if "file is gone" in line]
    assert len(gone) == 1
    assert d.logs[gone[0]].startswith("[error]: #0 the buffer chunk's file is gone (removed outside kawa?): its "
                                      f"records cannot be sent and are dropped chunk=\"{first.id}\" records=2 "
                                      "error=[Errno 2] No such file or directory")
    assert not [line for line in d.logs[gone[0]:] if first.id in line and "failed to flush" in line]
    assert d.instance.stats()["dropped_records"] == {"chunk_file_gone": 2}
    assert list(buf.iterdir()) == []                # its .meta went too


def test_a_staged_chunk_whose_file_was_removed_is_written_back_from_its_open_descriptor(tmp_path: Path) -> None:
    """A staged chunk keeps its file open for appends: removed under kawa, its data is still there,
    so the enqueue writes it back (with a warning) and every record is delivered, the one appended
    after the removal too."""
    buf = tmp_path / "buf"
    conf = (f"<buffer tag>\n@type file\npath {buf}\nflush_mode interval\nflush_interval 1h\n"
            "flush_at_shutdown false\n</buffer>")
    d = OutputDriver("test_recording_text", conf)
    ids: list[str] = []

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 1}), (T0, {"n": 2})])
            [staged] = d.instance.buffer.chunks()
            ids.append(staged.id)
            os.unlink(staged.path)
            await d.feed_batch("a", [(T0, {"n": 3})])       # appended to the removed file
            await d.instance.flush()
            await wait_for(lambda: d.instance.texts != [])

    asyncio.run(run())
    assert d.instance.texts == [b"a 1\na 2\na 3\n"]
    assert [line for line in d.logs if "removed" in line] == [
        "[warn]: #0 a staged buffer chunk's file was removed outside kawa; its data, still open, is written back "
        f'chunk="{ids[0]}" records=3']
    assert not [line for line in d.logs if "error" in line]
    assert list(buf.iterdir()) == []


def test_a_staged_chunk_removed_with_nothing_open_is_dropped_once_with_an_error(tmp_path: Path) -> None:
    """Without an open descriptor (a chunk resumed and not appended to since) there is nothing to
    write back: the enqueue still queues it, and its flush drops it once, counted."""
    buf = tmp_path / "buf"
    conf = (f"<buffer tag>\n@type file\npath {buf}\nflush_mode interval\nflush_interval 1h\n"
            "flush_at_shutdown false\n</buffer>")
    d = OutputDriver("test_recording_text", conf)

    async def run() -> None:
        async with d.run():
            await d.feed_batch("a", [(T0, {"n": 1}), (T0, {"n": 2})])
            [staged] = d.instance.buffer.chunks()
            staged.close()                                  # as after a resume
            os.unlink(staged.path)
            await d.instance.flush()
            await wait_for(lambda: any("file is gone" in line for line in d.logs))

    asyncio.run(run())
    assert d.instance.texts == []
    assert len([line for line in d.logs if "file is gone" in line]) == 1
    assert d.instance.stats()["dropped_records"] == {"chunk_file_gone": 2}
    assert list(buf.iterdir()) == []
