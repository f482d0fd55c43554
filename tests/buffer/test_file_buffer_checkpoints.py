"""File buffer + input checkpoints (kawa.delivery): a kill -9 between an emit's append and its commit
neither doubles nor loses the emit's events. The append is recorded as pending in the chunk's .meta
before the data is written; at resume an uncommitted pending range is cut out (the input reads those
lines again from its own position) and a committed one is kept (the input resumes past it)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from kawa import buffer_tool, delivery
from kawa.buffer.buffer import DeliveryAck
from kawa.errors import BufferOverflowError
from kawa.testing.drivers import OutputDriver

sys.path.insert(0, str(Path(__file__).parent))
from test_buffer import T0, RecordingOutput  # noqa: E402,F401  (registers the test output)

KEY = "in_tail\t/state/access.pos\t42"
HOUR = 3600 * 10**9


@pytest.fixture(autouse=True)
def _fresh_recovered_checkpoints() -> Iterator[None]:
    # the registry is per process (one kawa run); each simulated restart below starts it empty
    delivery._recovered.clear()
    yield
    delivery._recovered.clear()


def _driver(buf: Path, extra: str = "") -> OutputDriver:
    keys = " time" if "timekey" in extra else ""
    return OutputDriver("test_recording_buffered",
                        f"<buffer{keys}>\n@type file\npath {buf}\nflush_interval 1h\nflush_at_shutdown false\n{extra}\n</buffer>")


async def _emit(d: OutputDriver, offset: int, events: list[tuple[int, dict[str, Any]]]) -> None:
    """What tail does for one batch: emit under a ticket whose checkpoint is the batch's end."""
    ticket = delivery.Ticket((KEY, offset))
    with delivery.tracking(ticket):
        await d.instance.emit("app", events)
    ticket.seal()
    await asyncio.wait_for(ticket.stored, 5)


def _appended_not_committed(d: OutputDriver, offset: int, events: list[tuple[int, dict[str, Any]]]) -> list[Any]:
    """The state a kill -9 leaves right after an emit's data append, before Buffer.sync commits it."""
    groups = d.instance.chunker.split("app", events)
    fmt = d.instance.format_events if d.instance.formatted else None
    return d.instance.buffer.write("app", groups, format_fn=fmt, enqueue=False, checkpoint=(KEY, offset)).touched


def _resume(buf: Path, extra: str = "") -> list[int]:
    """Start the output on the buffer directory, flush, and return the records it wrote."""
    delivery._recovered.clear()
    d = _driver(buf, extra)

    async def run() -> None:
        async with d.run():
            await d.flush()
    asyncio.run(run())
    return [r["n"] for _, evs in d.instance.written for _, r in evs]


def _events(first: int, count: int, t: int = T0) -> list[tuple[int, dict[str, Any]]]:
    return [(t, {"n": n}) for n in range(first, first + count)]


def _killed_after_an_uncommitted_emit(buf: Path) -> None:
    """Records 0-2 emitted and committed (checkpoint 100), 3-4 appended under checkpoint 200 and
    not committed: the state a kill -9 between the append and Buffer.sync leaves."""
    d = _driver(buf)

    async def killed() -> None:
        async with d.run():
            await _emit(d, 100, _events(0, 3))
            _appended_not_committed(d, 200, _events(3, 2))
            meta = next(buf.glob("*.meta")).read_bytes()
            assert b"pending" in meta               # written before the data
    asyncio.run(killed())


def test_an_emit_killed_before_its_commit_is_cut_out_and_read_again(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    _killed_after_an_uncommitted_emit(buf)
    (info,) = [buffer_tool.load_chunk(str(p)) for p in buf.glob("*.log")]
    # what `kawa buffer inspect` shows: the pending records are not counted as the chunk's
    assert (info.records, info.pending_records) == (3, 2) and info.pending_bytes > 0
    # the restart: only the committed emit is kept, and the input resumes where it ended
    delivery._recovered.clear()
    d2 = _driver(buf)

    async def restart() -> None:
        async with d2.run():
            assert delivery.recovered_checkpoint(KEY) == 100
            await d2.flush()
    asyncio.run(restart())
    assert [r["n"] for _, evs in d2.instance.written for _, r in evs] == [0, 1, 2]


def test_a_committed_emit_keeps_its_events_and_its_checkpoint(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = _driver(buf)

    async def run() -> None:
        async with d.run():
            await _emit(d, 100, _events(0, 3))
            await _emit(d, 200, _events(3, 2))
            assert b"pending" not in next(buf.glob("*.meta")).read_bytes()
    asyncio.run(run())
    delivery._recovered.clear()
    assert _resume(buf) == [0, 1, 2, 3, 4]
    # resumed once more (nothing flushed): the checkpoint is the last emit's
    assert delivery.recovered_checkpoint(KEY) == 200


def test_replay_leaves_out_the_appends_kawa_would_cut_unless_asked(tmp_path: Path, capsys: Any) -> None:
    """Replayed, the uncommitted lines would come twice: once from the replay, once from tail at
    kawa's next start. --include-pending takes them when tail will not (the node is gone)."""
    buf = tmp_path / "buf"
    _killed_after_an_uncommitted_emit(buf)
    shutil.copytree(buf, tmp_path / "copy")
    conf = tmp_path / "out.conf"
    conf.write_text(f"<match app.**>\n@type file\npath {tmp_path}/out/app\nappend true\n<format>\n@type json\n"
                    f"</format>\n<buffer>\n@type file\npath {tmp_path}/outbuf\n</buffer>\n</match>\n")

    def delivered() -> list[int]:
        return [json.loads(line)["n"] for f in (tmp_path / "out").glob("*") for line in f.read_text().splitlines()]
    assert buffer_tool.main(["replay", str(buf), "-c", str(conf), "--tag", "app.x"]) == 0
    assert "replayed 3 records from 1 chunks" in capsys.readouterr().out
    assert sorted(delivered()) == [0, 1, 2]
    shutil.rmtree(tmp_path / "out")
    assert buffer_tool.main(["replay", str(tmp_path / "copy"), "-c", str(conf), "--tag", "app.x",
                             "--include-pending"]) == 0
    assert sorted(delivered()) == [0, 1, 2, 3, 4]


def test_an_emit_over_two_chunks_is_kept_whole_once_one_chunk_committed_it(tmp_path: Path) -> None:
    """Buffer.sync commits the chunks one .meta at a time: a kill between two leaves one committed
    and one pending; both parts stay (cutting one would lose it, the input resumes past the emit)."""
    buf = tmp_path / "buf"
    d = _driver(buf, "timekey 1h\ntimekey_wait 0")

    async def killed() -> None:
        async with d.run():
            touched = _appended_not_committed(d, 300, _events(0, 2) + _events(2, 2, T0 + HOUR))
            assert len(touched) == 2                # chunked by hour: one chunk per hour
            first = touched[0]
            assert first.commit(KEY, 300)
            first.write_meta()
    asyncio.run(killed())
    assert sorted(_resume(buf, "timekey 1h\ntimekey_wait 0")) == [0, 1, 2, 3]


def test_an_emit_over_two_chunks_committed_in_none_is_cut_from_both(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    d = _driver(buf, "timekey 1h\ntimekey_wait 0")

    async def killed() -> None:
        async with d.run():
            await _emit(d, 100, _events(0, 1) + _events(1, 1, T0 + HOUR))
            assert len(_appended_not_committed(d, 300, _events(2, 2) + _events(4, 2, T0 + HOUR))) == 2
    asyncio.run(killed())
    assert sorted(_resume(buf, "timekey 1h\ntimekey_wait 0")) == [0, 1]


def test_a_queued_chunk_created_by_an_uncommitted_emit_is_dropped(tmp_path: Path) -> None:
    """flush_mode immediate writes the .meta then the data of a new queued chunk: with the checkpoint
    in it as pending, a kill before the commit neither skips the lines nor keeps them twice."""
    buf = tmp_path / "buf"
    d = OutputDriver("test_recording_buffered", f"<buffer>\n@type file\npath {buf}\nflush_mode immediate\n"
                                                f"flush_thread_count 1\nflush_at_shutdown false\n</buffer>")

    async def killed() -> None:
        async with d.run():
            groups = d.instance.chunker.split("app", _events(0, 2))
            for chunk in d.instance.buffer.write("app", groups, format_fn=None, enqueue=True,
                                                 checkpoint=(KEY, 100)).touched:
                chunk.syncing += 1                 # the emit's sync in flight: the flusher leaves it
    asyncio.run(killed())
    assert list(buf.glob("*.q*.log"))
    assert _resume(buf) == []
    assert delivery.recovered_checkpoint(KEY) is None
    assert not list(buf.glob("*.log"))


def test_a_chunk_enqueued_while_its_emit_fsyncs_is_still_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flusher may enqueue a chunk (rename, close its descriptor) while the emit's fsync runs in a
    thread: the thread syncs a duplicate descriptor. It used the chunk's own, and failed with EBADF
    (the emit then failed after its data was appended: tail offered the batch again, doubled)."""
    import threading

    started, release = threading.Event(), threading.Event()
    synced: list[int] = []
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        started.set()
        release.wait(10)
        real_fdatasync(fd)
        synced.append(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    buf = tmp_path / "buf"
    d = _driver(buf)

    async def run() -> None:
        async with d.run():
            emit = asyncio.ensure_future(_emit(d, 100, _events(0, 3)))
            assert await asyncio.to_thread(started.wait, 10)
            d.instance.buffer.enqueue_all(force=True)      # renamed to .q and closed meanwhile
            release.set()
            await emit
            await d.flush()
    asyncio.run(run())
    assert synced
    assert [r["n"] for _, evs in d.instance.written for _, r in evs] == [0, 1, 2]


def test_a_commit_whose_meta_a_kill_left_under_the_staged_name_still_counts(tmp_path: Path) -> None:
    """enqueue renames the data file, then its .meta: a kill between the two leaves the committed
    .meta under the `.b` name. It still commits the emit, so the other chunk's part stays."""
    buf = tmp_path / "buf"
    d = _driver(buf, "timekey 1h\ntimekey_wait 0")

    async def killed() -> None:
        async with d.run():
            first, second = _appended_not_committed(d, 300, _events(0, 2) + _events(2, 2, T0 + HOUR))
            assert first.commit(KEY, 300)
            first.write_meta()
            first.close()
            os.replace(first.path, first.path.replace(".b", ".q", 1))   # the data renamed, the .meta not
    asyncio.run(killed())
    assert sorted(_resume(buf, "timekey 1h\ntimekey_wait 0")) == [0, 1, 2, 3]
    assert delivery.recovered_checkpoint(KEY) == 300


# -- a write that fails part-way (disk full) is undone, so the input's retry is not buffered twice --

def _full_disk_driver(buf: Path, full: dict[str, bool], extra: str) -> OutputDriver:
    """New chunk data files open on /dev/full while full["on"]: writes to them fail with ENOSPC;
    chunks opened before keep their descriptors and take appends."""
    def opener(path: str, flags: int, mode: int = 0o644) -> int:
        if full["on"] and not path.endswith((".meta", ".tmp")):
            return os.open("/dev/full", os.O_WRONLY)
        return os.open(path, flags, mode)

    return OutputDriver("test_recording_buffered",
                        f"<buffer time>\n@type file\npath {buf}\ntimekey 1h\ntimekey_wait 3650d\n"
                        f"flush_at_shutdown false\n{extra}\n</buffer>", extras={"buffer_file_opener": opener})


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full simulates ENOSPC")
def test_an_emit_failing_in_its_second_chunk_leaves_the_first_as_it_was(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    full = {"on": False}
    d = _full_disk_driver(buf, full, "")
    retry = _events(1, 1) + _events(2, 1, T0 + HOUR)     # hour 0 goes to the open chunk, hour 1 to a new one

    async def run() -> None:
        async with d.run():
            await _emit(d, 100, _events(0, 1))
            (first,) = d.instance.buffer.stage.values()
            size, stage_size = os.path.getsize(first.path), d.instance.buffer.stage_size
            full["on"] = True
            for _attempt in range(3):                      # tail retries while the disk stays full
                with pytest.raises(BufferOverflowError, match="No space left"):
                    _appended_not_committed(d, 200, retry)
            assert os.path.getsize(first.path) == size and first.record_count == 1
            assert d.instance.buffer.stage_size == stage_size and list(d.instance.buffer.stage.values()) == [first]
            assert b"pending" not in Path(first.meta_path).read_bytes()
            full["on"] = False
            await _emit(d, 200, retry)
            await d.flush()
    asyncio.run(run())
    assert sorted(r["n"] for _, evs in d.instance.written for _, r in evs) == [0, 1, 2]
    assert not list(buf.glob("*"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full simulates ENOSPC")
def test_an_immediate_emit_failing_in_its_second_chunk_removes_the_first(tmp_path: Path) -> None:
    """flush_mode immediate: the emit's first piece is a new queued chunk; it goes with the failure."""
    buf = tmp_path / "buf"
    full = {"on": False}
    d = _full_disk_driver(buf, full, "flush_mode immediate\nflush_thread_count 1")
    ticket_ack = DeliveryAck(lambda: None)

    async def run() -> None:
        async with d.run():
            groups = d.instance.chunker.split("app", _events(0, 1) + _events(1, 1, T0 + HOUR))
            real_new = d.instance.buffer.new_queued_chunk
            made = []

            def second_fails(*args: Any, **kwargs: Any) -> Any:
                full["on"] = bool(made)                   # the disk fills after the first chunk
                made.append(real_new(*args, **kwargs))
                return made[-1]
            d.instance.buffer.new_queued_chunk = second_fails
            with pytest.raises(BufferOverflowError, match="No space left"):
                d.instance.buffer.write("app", groups, format_fn=None, enqueue=True, ack=ticket_ack,
                                        checkpoint=(KEY, 100))
            assert len(made) == 1 and made[0].state == "purged"
            assert not d.instance.buffer.queue and d.instance.buffer.queue_size == 0
            assert ticket_ack.pending == 0 and not ticket_ack.settled
    asyncio.run(run())
    assert not list(buf.glob("*.log")) and not list(buf.glob("*.meta"))


# -- an fsync that fails after the append (EIO): the write is taken back, the retry is not doubled --

def _failing_fsync(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """os.fdatasync and os.fsync raise EIO the next `failures` times (a disk that lost the pages),
    then work. (A staged chunk is synced through its descriptor, a queued one by path.)"""
    import errno

    calls: list[int] = []

    def failing(real: Any) -> Any:
        def sync(fd: int) -> None:
            calls.append(fd)
            if len(calls) <= failures:
                raise OSError(errno.EIO, "Input/output error")
            real(fd)
        return sync
    monkeypatch.setattr(os, "fdatasync", failing(os.fdatasync))
    monkeypatch.setattr(os, "fsync", failing(os.fsync))
    return calls


@pytest.mark.parametrize("immediate", [False, True])
def test_an_emit_whose_fsync_fails_is_undone_and_its_retry_buffered_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, immediate: bool) -> None:
    buf = tmp_path / "buf"
    d = _driver(buf) if not immediate else OutputDriver(
        "test_recording_buffered", f"<buffer>\n@type file\npath {buf}\nflush_mode immediate\n"
                                   "flush_thread_count 1\nflush_at_shutdown false\n</buffer>")

    async def run() -> None:
        async with d.run():
            await _emit(d, 100, _events(0, 2))
            calls = _failing_fsync(monkeypatch, 1)
            with pytest.raises(BufferOverflowError, match="Input/output error"):
                await _emit(d, 200, _events(2, 3))       # appended, committed, then the fsync fails
            assert calls
            if not immediate:                            # the staged chunk is back as it was
                (chunk,) = d.instance.buffer.stage.values()
                assert chunk.record_count == 2 and chunk.checkpoints == {KEY: 100}
            await _emit(d, 200, _events(2, 3))           # tail's retry of the same batch
            await d.flush()
    asyncio.run(run())
    assert sorted(r["n"] for _, evs in d.instance.written for _, r in evs) == [0, 1, 2, 3, 4]


def test_a_restart_after_an_undone_emit_does_not_skip_its_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failed sync had committed the emit in the .meta: the undo takes the commit back with the
    data, so a restart resumes at the earlier checkpoint (tail reads those lines again)."""
    buf = tmp_path / "buf"
    d = _driver(buf)

    async def killed() -> None:
        async with d.run():
            await _emit(d, 100, _events(0, 2))
            _failing_fsync(monkeypatch, 1)
            with pytest.raises(BufferOverflowError):
                await _emit(d, 200, _events(2, 3))
            for chunk in d.instance.buffer.chunks():
                chunk.close()
            monkeypatch.undo()
    asyncio.run(killed())
    assert sorted(_resume(buf)) == [0, 1]
    assert delivery.recovered_checkpoint(KEY) == 100


# -- a file truncated in place (copytruncate): its old offsets are forgotten --

def test_forgotten_checkpoints_neither_resume_nor_commit_the_new_content(tmp_path: Path) -> None:
    """Before the truncation the emits committed up to 1,000,000; after it, an append under offset
    5,000 was not committed when the kill came. Without forget, the old 1,000,000 judged it
    committed (kept, and tail read it again: doubled) and was offered to tail as where to resume
    (past lines of the new content never read: lost, once the file regrew past it)."""
    buf = tmp_path / "buf"
    d = _driver(buf)

    async def killed() -> None:
        async with d.run():
            await _emit(d, 1_000_000, _events(0, 3))
            delivery.forget(KEY)                           # tail saw the truncation
            (chunk,) = d.instance.buffer.stage.values()
            assert chunk.checkpoints is None and b"checkpoints" not in Path(chunk.meta_path).read_bytes()
            _appended_not_committed(d, 5_000, _events(3, 2))
            chunk.close()
    asyncio.run(killed())
    assert sorted(_resume(buf)) == [0, 1, 2]               # the uncommitted append is cut
    assert delivery.recovered_checkpoint(KEY) is None


def test_a_stopped_buffer_is_not_asked_to_forget(tmp_path: Path) -> None:
    d = _driver(tmp_path / "buf")

    async def run() -> None:
        async with d.run():
            assert d.instance.buffer in delivery._stores
        assert d.instance.buffer not in delivery._stores
        delivery.forget(KEY)
    asyncio.run(run())
