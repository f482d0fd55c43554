"""tail across rename rotation, copytruncate, deletion, restarts and back-pressure: every line once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from kawa.errors import BufferOverflowError
from kawa.testing.drivers import InputDriver


def driver(path: Path | str, pos: Path, extra: str = "", tag: str = "t.app") -> InputDriver:
    return InputDriver("tail", f"path {path}\ntag {tag}\npos_file {pos}\nread_from_head true\n"
                               f"{extra}\n<parse>\n@type none\n</parse>")


def append(path: Path, lines: range | list[str]) -> None:
    with open(path, "a") as fh:
        fh.write("".join(f"{x}\n" for x in lines))


def numbers(d: InputDriver) -> list[int]:
    return [int(r["message"]) for r in d.records]


def test_rename_rotation_copytruncate_and_restart_emit_each_line_once(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(0, 10))
    seen: list[int] = []

    async def first_run() -> None:
        d = driver(log, pos, extra="rotate_wait 1")
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 10)
            append(log, range(10, 15))
            await d.wait_for(lambda: len(d.records) == 15)
            os.rename(log, tmp_path / "app.log.1")                 # rotation by rename
            append(tmp_path / "app.log.1", range(15, 18))          # late writes to the old file
            append(log, range(18, 25))                              # the new file
            await d.wait_for(lambda: len(d.records) == 25)
            await d.wait_for(lambda: not d.instance.scheduler.draining, timeout=5)
        seen.extend(numbers(d))
        assert any("detected rotation of" in line and "waiting 1 seconds" in line for line in d.logs)

    asyncio.run(first_run())
    append(log, range(25, 30))                                      # written while kawa is down

    async def second_run() -> None:
        d = driver(log, pos)
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 5)
            with open(log, "r+") as fh:                             # copytruncate
                fh.truncate(0)
            append(log, range(30, 33))
            await d.wait_for(lambda: len(d.records) == 8)
            append(log, range(33, 35))
            await d.wait_for(lambda: len(d.records) == 10)
        seen.extend(numbers(d))

    asyncio.run(second_run())
    assert sorted(seen) == list(range(35))
    assert len(seen) == len(set(seen))


def test_glob_matching_rotated_names_does_not_read_twice(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(0, 5))
    d = driver(f"{tmp_path}/app.log*", pos, extra="rotate_wait 30\nrefresh_interval 0.2")

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 5)
            os.rename(log, tmp_path / "app.log.1")
            append(tmp_path / "app.log.1", range(5, 8))
            append(log, range(8, 10))
            await d.wait_for(lambda: len(d.records) == 10)
            await d.wait_for(lambda: str(tmp_path / "app.log.1") in d.instance.scheduler.tails)
            append(tmp_path / "app.log.1", range(10, 12))
            await d.wait_for(lambda: len(d.records) == 12)
    asyncio.run(scenario())
    assert sorted(numbers(d)) == list(range(12))
    entries = {line.split("\t")[0]: int(line.split("\t")[1], 16) for line in pos.read_text().splitlines()}
    assert entries[str(tmp_path / "app.log.1")] == (tmp_path / "app.log.1").stat().st_size


def test_deleted_file_is_released_and_recreated_file_read_from_head(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(0, 3))
    d = driver(log, pos, extra="rotate_wait 0.2")
    fds_before = len(os.listdir("/proc/self/fd"))

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 3)
            opened = len(os.listdir("/proc/self/fd"))
            log.unlink()
            await d.wait_for(lambda: not d.instance.scheduler.draining and not d.instance.scheduler.tails)
            await d.wait_for(lambda: len(os.listdir("/proc/self/fd")) < opened)
            append(log, range(3, 5))
            await d.wait_for(lambda: len(d.records) == 5)
    asyncio.run(scenario())
    assert numbers(d) == list(range(5))
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 1


def test_back_pressure_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(0, 3000))
    d = driver(log, pos, extra="read_lines_limit 100")

    async def scenario() -> None:
        d.emitter.refuse = BufferOverflowError("buffer space has too many data")
        async with d.run():
            await d.wait_for(lambda: sum(f["refused"] for f in d.instance.stats()["files"].values()) >= 2)
            assert d.records == []
            assert int(pos.read_text().split("\t")[1], 16) == 0      # nothing accepted, nothing committed
            append(log, range(3000, 3010))
            d.emitter.refuse = None
            await d.wait_for(lambda: len(d.records) == 3010, timeout=15)
    asyncio.run(scenario())
    assert numbers(d) == list(range(3010))
    assert int(pos.read_text().split("\t")[1], 16) == log.stat().st_size


def test_rotated_file_is_kept_until_read_even_under_back_pressure(tmp_path: Path) -> None:
    """Better than Fluentd: rotate_wait does not let go of a rotated file with unread lines."""
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(0, 5))
    d = driver(log, pos, extra="rotate_wait 0.1")

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 5)
            d.emitter.refuse = BufferOverflowError("full")
            append(log, range(5, 10))
            await d.wait_for(lambda: any(f["refused"] for f in d.instance.stats()["files"].values()))
            os.rename(log, tmp_path / "app.log.1")
            append(log, range(10, 12))
            await d.wait_for(lambda: len(d.instance.scheduler.draining) == 1)
            await asyncio.sleep(0.3)      # longer than rotate_wait: the point is what did NOT happen
            assert len(d.instance.scheduler.draining) == 1
            d.emitter.refuse = None
            await d.wait_for(lambda: len(d.records) == 12, timeout=10)
    asyncio.run(scenario())
    assert sorted(numbers(d)) == list(range(12))


def test_copytruncate_drops_the_checkpoints_buffered_for_the_old_content(tmp_path: Path, monkeypatch) -> None:
    """Offsets of the content before a truncation in place mean nothing after it: tail asks the
    buffers to forget its checkpoint key (kawa.delivery.forget) before its position goes back to 0."""
    from kawa import delivery

    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(0, 5))
    forgotten: list[tuple[str, int]] = []
    monkeypatch.setattr(delivery, "forget", lambda key: forgotten.append((key, pos_of(pos))))

    async def scenario() -> None:
        d = driver(log, pos)
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 5)
            assert not forgotten
            with open(log, "r+") as fh:                             # copytruncate
                fh.truncate(0)
            append(log, range(5, 7))
            await d.wait_for(lambda: len(d.records) == 7)
    asyncio.run(scenario())
    key = f"in_tail\t{os.path.abspath(pos)}\t{os.stat(log).st_ino}"
    assert forgotten == [(key, 10)]          # forgotten while the pos_file still held the old end


def pos_of(pos: Path) -> int:
    return int(pos.read_text().split("\t")[1], 16)


def test_a_truncation_while_stopped_also_forgets_the_old_checkpoints(tmp_path: Path, monkeypatch) -> None:
    from kawa import delivery

    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(100, 110))

    async def run(expected: int) -> list[int]:
        d = driver(log, pos)
        async with d.run():
            await d.wait_for(lambda: len(d.records) == expected)
        return numbers(d)

    assert asyncio.run(run(10)) == list(range(100, 110))
    forgotten: list[str] = []
    monkeypatch.setattr(delivery, "forget", forgotten.append)
    with open(log, "r+") as fh:                                     # copytruncate while kawa is down
        fh.truncate(0)
    append(log, [1])
    assert asyncio.run(run(1)) == [1]
    assert forgotten == [f"in_tail\t{os.path.abspath(pos)}\t{os.stat(log).st_ino}"]


# -- truncated and written again while kawa was stopped (offset marks) ---------------------------

def test_a_file_rewritten_past_its_position_while_stopped_is_read_from_the_start(tmp_path: Path) -> None:
    """copytruncate while kawa is down, then more written than was read before: inode and size say
    nothing changed, the bytes before the saved position do (`.kawa-marks`)."""
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(100, 110))                                    # 40 bytes read

    async def run(expected: int) -> tuple[list[int], list[str]]:
        d = driver(log, pos)
        async with d.run():
            await d.wait_for(lambda: len(d.records) >= expected)
            await asyncio.sleep(0.3)                                # nothing more comes
        return numbers(d), d.logs

    assert asyncio.run(run(10))[0] == list(range(100, 110))
    assert (tmp_path / "app.pos.kawa-marks").exists()
    with open(log, "r+") as fh:                                     # copytruncate while kawa is down
        fh.truncate(0)
    append(log, [f"{n:03d}" for n in range(9)] + [f"{n:03d}" for n in range(9, 20)])
    assert log.read_bytes()[39:40] == b"\n"                         # a line end at the old position too
    got, logs = asyncio.run(run(20))
    assert got == list(range(20))
    assert any("was truncated and written again while it was not read" in line for line in logs)


def test_lines_appended_while_stopped_resume_at_the_saved_position(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(10))

    async def run(expected: int) -> list[int]:
        d = driver(log, pos)
        async with d.run():
            await d.wait_for(lambda: len(d.records) >= expected)
            await asyncio.sleep(0.3)
        return numbers(d)

    assert asyncio.run(run(10)) == list(range(10))
    append(log, range(10, 15))
    assert asyncio.run(run(5)) == list(range(10, 15))


def test_a_position_saved_mid_line_is_no_rewrite(tmp_path: Path) -> None:
    """Tail from the end of a file whose last line is unfinished saves a position mid-line (as
    Fluentd does); the next start resumes there, it does not take the file for a rewritten one."""
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    log.write_text("1\n2\nunfinish")

    async def run(then: Any = None) -> list[str]:
        d = InputDriver("tail", f"path {log}\ntag t.app\npos_file {pos}\n<parse>\n@type none\n</parse>")
        async with d.run():
            await d.wait_for(lambda: str(log) in d.instance.scheduler.tails)
            if then is not None:
                then()
                await d.wait_for(lambda: len(d.records) >= 1)
            await asyncio.sleep(0.3)
        return [r["message"] for r in d.records]

    assert asyncio.run(run()) == []
    assert asyncio.run(run(lambda: append(log, ["ed", "3"]))) == ["ed", "3"]


def test_a_truncation_while_read_drops_the_files_mark_at_once(tmp_path: Path) -> None:
    """Its mark names the old content: a kill -9 before the next save must not leave it behind, or
    the next start would take the file for a rewritten one and read the new lines twice."""
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    marks = tmp_path / "app.pos.kawa-marks"
    append(log, range(100, 110))

    async def first() -> None:
        d = driver(log, pos)
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 10)

    async def second() -> None:
        d = driver(log, pos)
        async with d.run():
            await asyncio.sleep(0.3)
            assert str(log).encode() in marks.read_bytes()
            with open(log, "r+") as fh:                             # copytruncate while kawa reads
                fh.truncate(0)
            append(log, range(3))
            await d.wait_for(lambda: len(d.records) == 3)
            assert str(log).encode() not in marks.read_bytes()      # gone before the position moved back

    asyncio.run(first())
    asyncio.run(second())


def test_a_rotated_file_whose_inode_was_reused_is_not_resumed(tmp_path: Path) -> None:
    """kawa stopped while draining app.log.1 (inode X, read to 40); meanwhile app.log.1 was deleted
    (kubelet gzips rotated logs) and the new app.log got inode X. Found by inode alone, app.log would
    be taken for the rotated file and read from 40 on: its first 40 bytes lost. The mark says the
    bytes before 40 are not the ones read."""
    import zlib

    from kawa.plugins.inputs._tail.offset_marks import rotated_key

    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(100, 120))                                    # the new file, inode X
    st = os.stat(log)
    old_ino = st.st_ino + 1000                                      # the app.log of before the rotation
    pos.write_bytes(b"%s\t%016x\t%016x\n" % (os.fsencode(str(log)), 400, old_ino))
    Path(f"{pos}.kawa-rotated").write_bytes(b"%016x\t%016x\t%016x\t%s\t%s\n" % (
        st.st_dev, st.st_ino, 40, os.fsencode(str(log)), os.fsencode(str(tmp_path / "app.log.1"))))
    old_bytes = "".join(f"{n}\n" for n in range(50, 60)).encode()[-40:]   # what was read from app.log.1
    Path(f"{pos}.kawa-marks").write_bytes(b"%016x\t%016x\t%08x\t%s\n" % (
        st.st_ino, 40, zlib.crc32(old_bytes), rotated_key(st.st_dev, st.st_ino).encode()))

    async def run() -> tuple[list[int], list[str]]:
        d = driver(log, pos)
        async with d.run():
            await d.wait_for(lambda: len(d.records) >= 20)
            await asyncio.sleep(0.3)
        return numbers(d), d.logs

    got, logs = asyncio.run(run())
    assert got == list(range(100, 120))
    assert any("has that inode now, with other content" in line for line in logs)


def test_a_rotated_file_being_drained_has_a_mark(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(10))
    ino = os.stat(log).st_ino

    async def scenario() -> bytes:
        d = driver(log, pos, extra="rotate_wait 30")
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 10)
            os.rename(log, tmp_path / "app.log.1")
            append(log, range(10, 12))
            await d.wait_for(lambda: len(d.records) == 12 and bool(d.instance.scheduler.draining))
            d.instance.save_marks()
            return Path(f"{pos}.kawa-marks").read_bytes()

    marks = asyncio.run(scenario())
    assert b"\trotated %x:%x\n" % (os.stat(tmp_path / "app.log.1").st_dev, ino) in marks


def test_a_truncation_found_at_start_drops_the_files_mark_at_once(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    marks = tmp_path / "app.pos.kawa-marks"
    append(log, range(100, 110))

    async def run(expected: int, during: Any = None) -> None:
        d = driver(log, pos)
        async with d.run():
            await d.wait_for(lambda: len(d.records) == expected)
            if during is not None:
                during()

    asyncio.run(run(10))
    assert str(log).encode() in marks.read_bytes()
    with open(log, "r+") as fh:                                     # copytruncate while kawa is down
        fh.truncate(0)
    append(log, [1])
    asyncio.run(run(1, lambda: assert_no_mark(marks, log)))


def assert_no_mark(marks: Path, log: Path) -> None:
    assert str(log).encode() not in marks.read_bytes()


def test_a_rotated_file_waiting_for_delivery_does_not_spin_the_loop(tmp_path: Path) -> None:
    """Past rotate_wait, a rotated file whose lines are not delivered yet (a CloudWatch outage) is
    kept; the loop must sleep meanwhile (it spun at 100 % of a core: the expired rotate_wait stayed
    its next deadline), and release the file as soon as its last line is delivered."""
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, range(0, 5))
    d = driver(log, pos, extra="rotate_wait 0.1")
    d.emitter.store_after = 2.5                     # lines count as delivered 2.5 s after their emit
    rounds: list[float] = []

    async def scenario() -> None:
        async with d.run():
            sched = d.instance.scheduler
            service = sched._service

            async def counted(now: float) -> None:
                rounds.append(now)
                await service(now)

            sched._service = counted
            await d.wait_for(lambda: len(d.records) == 5)
            os.rename(log, tmp_path / "app.log.1")
            append(log, range(5, 7))
            await d.wait_for(lambda: len(sched.draining) == 1)
            await asyncio.sleep(0.3)                  # past rotate_wait, still undelivered
            assert len(sched.draining) == 1
            before = len(rounds)
            await asyncio.sleep(1.0)
            idle_rounds = len(rounds) - before
            assert idle_rounds <= 5, f"{idle_rounds} loop rounds in 1 s while waiting for delivery"
            await d.wait_for(lambda: not sched.draining, timeout=5)
    asyncio.run(scenario())
    assert sorted(numbers(d)) == list(range(7))
