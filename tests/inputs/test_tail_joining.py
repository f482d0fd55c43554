"""tail with parsers that join lines (multiline, cri, docker): events joined across reads, flush
interval, incomplete lines, and a pos_file that never moves past held lines (stop, crash, restart)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from kawa.testing.drivers import InputDriver

JAVA = ("@type multiline\nformat_firstline /^\\d{4}-\\d{2}-\\d{2}/\n"
        "format1 /^(?<time>\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}) (?<level>\\w+) (?<message>.*)/\n"
        "time_format %Y-%m-%d %H:%M:%S")

TRACE_1 = [
    "2024-03-01 10:00:00 ERROR Request failed",
    "java.lang.IllegalStateException: connection pool exhausted",
    "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:197)",
    "\tat org.example.OrderService.place(OrderService.java:42)",
    "Caused by: java.net.SocketTimeoutException: connect timed out",
    "\tat java.base/java.net.PlainSocketImpl.socketConnect(Native Method)",
    "\t... 12 more",
]
TRACE_2 = [
    "2024-03-01 10:00:05 WARN Retrying order 17",
]
TRACE_3 = [
    "2024-03-01 10:00:09 ERROR Giving up",
    "java.lang.RuntimeException: order 17 lost",
    "\tat org.example.OrderService.retry(OrderService.java:88)",
]


def driver(path: Path, pos: Path | None, parse: str, extra: str = "") -> InputDriver:
    pos_line = f"pos_file {pos}" if pos is not None else ""
    return InputDriver("tail", f"path {path}\ntag t.app\n{pos_line}\nread_from_head true\n{extra}\n"
                               f"<parse>\n{parse}\n</parse>")


def append(path: Path, lines: list[str], *, end: str = "\n") -> None:
    with open(path, "a") as fh:
        fh.write("\n".join(lines) + end)


def pos_of(pos: Path) -> int:
    return int(pos.read_text().split("\t")[1], 16)


def crash(d: InputDriver) -> None:
    """What kill -9 leaves behind: no stop(), no flush, descriptors just gone."""
    sched = d.instance.scheduler
    assert sched is not None and sched.task is not None
    sched.task.cancel()
    if sched.inotify is not None:
        asyncio.get_running_loop().remove_reader(sched.inotify.fd)
        sched.inotify.close()
    for f in sched.all_followers():
        if f.fd is not None:
            os.close(f.fd)
    os.close(d.instance.pf.fd)


def messages(d: InputDriver) -> list[str]:
    return [r["message"] for r in d.records]


def test_java_stack_traces_join_across_reads_and_flush_after_the_interval(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, TRACE_1[:3])                                 # the trace is cut in the middle
    d = driver(log, pos, JAVA, "multiline_flush_interval 0.5")

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: d.instance.scheduler.tails[str(log)].held)
            assert d.records == []
            assert pos_of(pos) == 0                          # held lines are not committed
            append(log, TRACE_1[3:] + TRACE_2)
            await d.wait_for(lambda: len(d.records) == 1)
            assert pos_of(pos) == len("\n".join(TRACE_1)) + 1   # at the first line of the held event
            await d.wait_for(lambda: len(d.records) == 2, timeout=5)   # flushed by the interval
            assert pos_of(pos) == log.stat().st_size
    asyncio.run(scenario())
    assert messages(d) == ["Request failed\n" + "\n".join(TRACE_1[1:]), "Retrying order 17"]
    assert d.records[0]["level"] == "ERROR"
    assert [t for _tag, t, _r in d.events][0] is not None


def test_held_event_is_read_again_after_a_stop_and_a_crash(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    append(log, TRACE_1 + TRACE_3[:2])
    seen: list[str] = []

    async def stopped_run() -> None:
        d = driver(log, pos, JAVA)
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 1)
            await d.wait_for(lambda: d.instance.scheduler.tails[str(log)].held)
        seen.extend(messages(d))                              # a stop with a pos_file keeps it held
        assert pos_of(pos) == len("\n".join(TRACE_1)) + 1

    async def crashed_run() -> None:
        d = driver(log, pos, JAVA)
        await d.instance.start()
        await d.wait_for(lambda: d.instance.scheduler.tails[str(log)].held)
        append(log, TRACE_3[2:])
        await d.wait_for(lambda: d.instance.scheduler.tails[str(log)].lines_fed == 3)
        crash(d)
        seen.extend(messages(d))

    async def last_run() -> None:
        d = driver(log, pos, JAVA)
        async with d.run():
            append(log, TRACE_2)
            await d.wait_for(lambda: len(d.records) == 1)
        seen.extend(messages(d))

    asyncio.run(stopped_run())
    asyncio.run(crashed_run())
    asyncio.run(last_run())
    assert seen == ["Request failed\n" + "\n".join(TRACE_1[1:]), "Giving up\n" + "\n".join(TRACE_3[1:])]


def test_incomplete_lines_before_the_first_line_warn_or_are_emitted(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, ["\tat orphan.Frame(Frame.java:1)"] + TRACE_2)
    quiet = driver(log, None, JAVA)
    loud = driver(log, None, JAVA, "emit_unmatched_lines true")

    async def scenario() -> None:
        for d in (quiet, loud):
            async with d.run():
                await d.wait_for(lambda d=d: d.instance.scheduler.tails[str(log)].held)
    asyncio.run(scenario())
    warning = f'got incomplete line before first line from {log}: "\\tat orphan.Frame(Frame.java:1)"'
    assert any(warning in line for line in quiet.logs)
    assert quiet.records == [{"level": "WARN", "message": "Retrying order 17"}]   # flushed at stop (no pos_file)
    assert loud.records == [{"unmatched_line": "\tat orphan.Frame(Frame.java:1)"},
                            {"level": "WARN", "message": "Retrying order 17"}]
    assert any("pattern not matched" in line for line in loud.logs)


def cri(n: int, stream: str, tag: str, text: str) -> str:
    return f"2023-05-01T10:00:{n:02d}.000000000Z {stream} {tag} {text}"


def test_cri_partials_split_across_reads_and_across_a_restart(tmp_path: Path) -> None:
    log, pos = tmp_path / "pod.log", tmp_path / "pod.pos"
    big = "x" * 70_000                                      # longer than one read block
    append(log, [cri(0, "stdout", "P", big), cri(1, "stderr", "F", "oops")])
    seen: list[dict[str, str]] = []

    async def first() -> None:
        d = driver(log, pos, "@type cri")
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 1)
            append(log, [cri(2, "stdout", "P", "mid-")], end="")        # an unterminated line
            await d.wait_for(lambda: d.instance.scheduler.tails[str(log)].reader.partial)
            append(log, ["", cri(3, "stdout", "P", "more-")])
            await d.wait_for(lambda: d.instance.scheduler.tails[str(log)].lines_fed == 4)
        seen.extend(d.records)
        assert pos_of(pos) == 0                              # the first stdout partial is held

    async def second() -> None:
        d = driver(log, pos, "@type cri")
        async with d.run():
            append(log, [cri(4, "stdout", "F", "end")])
            await d.wait_for(lambda: any(r["stream"] == "stdout" for r in d.records))
            await d.wait_for(lambda: pos_of(pos) == log.stat().st_size)
        seen.extend(d.records)

    asyncio.run(first())
    asyncio.run(second())
    stdout = [r for r in seen if r["stream"] == "stdout"]
    assert stdout == [{"stream": "stdout", "logtag": "F", "message": big + "mid-more-end"}]
    # documented: the stderr line after the held partial is read again after the restart
    assert [r["message"] for r in seen if r["stream"] == "stderr"] == ["oops", "oops"]


def test_docker_json_file_partials_join_and_commit_after_the_final_part(tmp_path: Path) -> None:
    log, pos = tmp_path / "c.log", tmp_path / "c.pos"
    first = '{"log":"part one, ","stream":"stdout","time":"2019-07-10T08:20:09.000000001Z"}'
    append(log, [first])
    d = driver(log, pos, "@type docker", "multiline_flush_interval 30")

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: d.instance.scheduler.tails[str(log)].held)
            append(log, ['{"log":"err\\n","stream":"stderr","time":"2019-07-10T08:20:09.5Z"}'])
            await d.wait_for(lambda: len(d.records) == 1)
            assert pos_of(pos) == 0
            append(log, ['{"log":"part two\\n","stream":"stdout","time":"2019-07-10T08:20:10Z"}'])
            await d.wait_for(lambda: len(d.records) == 2)
            await d.wait_for(lambda: pos_of(pos) == log.stat().st_size)
    asyncio.run(scenario())
    assert d.records == [{"log": "err\n", "stream": "stderr"}, {"log": "part one, part two\n", "stream": "stdout"}]
    assert d.events[1][1] == 1562746809_000000001
