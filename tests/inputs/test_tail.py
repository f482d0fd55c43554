"""tail input on real files: reading, pos_file bytes, partial lines, encodings, limits, warnings."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kawa.errors import BufferOverflowError, ConfigError
from kawa.event import StrValueEvents
from kawa.plugins.inputs._tail.follower import GROUP_COMMIT_BYTES, GROUP_COMMIT_READS
from kawa.testing.drivers import InputDriver

REGEXP = "@type regexp\nexpression /^(?<time>\\S+) (?<message>.*)$/\ntime_format %Y-%m-%dT%H:%M:%SZ"


def driver(path: Path | str, *, parse: str = "@type none", extra: str = "", pos: Path | None = None,
           tag: str = "t.app") -> InputDriver:
    pos_line = f"pos_file {pos}" if pos is not None else ""
    return InputDriver("tail", f"path {path}\ntag {tag}\n{pos_line}\n{extra}\n<parse>\n{parse}\n</parse>")


def append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def pos_entries(pos: Path) -> list[tuple[str, int, int]]:
    out = []
    for line in pos.read_text().splitlines():
        p, off, ino = line.split("\t")
        out.append((p, int(off, 16), int(ino, 16)))
    return out


def test_reads_from_head_and_follows_appends_with_fluentd_pos_file(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "work" / "app.pos"
    log.write_text("one\ntwo\n")
    d = driver(log, extra="read_from_head true", pos=pos)

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 2)
            append(log, "three\n")
            await d.wait_for(lambda: len(d.records) == 3)
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == ["one", "two", "three"]
    assert pos.read_bytes() == f"{log}\t{14:016x}\t{log.stat().st_ino:016x}\n".encode()
    assert f"[info]: #0 following tail of {log}" in d.logs
    assert {tag for tag, _, _ in d.events} == {"t.app"}


def test_without_read_from_head_starts_at_the_end(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old\n")
    d = driver(log, pos=tmp_path / "p.pos")

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: bool(d.instance.stats()["files"]))
            append(log, "new\n")
            await d.wait_for(lambda: len(d.records) == 1)
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == ["new"]


def test_missing_pos_file_warns_like_fluentd(tmp_path: Path) -> None:
    d = driver(tmp_path / "x.log")
    assert d.logs[:2] == ["[warn]: #0 'pos_file PATH' parameter is not set to a 'tail' source.",
                          "[warn]: #0 this parameter is highly recommended to save the position to resume tailing."]


@pytest.mark.parametrize("extra, message", [
    ("path_timezone +09:00", "path_timezone"),
    ("from_encoding ISO-8859-1", "'from_encoding' parameter must be specified with 'encoding' parameter."),
    ("encoding no-such-enc", "unknown encoding name - no-such-enc"),
    ("enable_watch_timer false\nenable_stat_watcher false", "either of enable_watch_timer or enable_stat_watcher"),
    ("path_delimiter *", "are reserved words"),
    ("follow_inodes true", "Can't follow inodes without pos_file"),
    ("<group>\n</group>", "<group>"),
])
def test_unsupported_or_invalid_options_are_config_errors(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("*", r"\*")):
        driver(tmp_path / "x.log", extra=extra)


def test_parse_section_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="<parse>"):
        InputDriver("tail", f"path {tmp_path}/x.log\ntag t")


def test_v012_format_parameter_becomes_the_parse_section(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("2019-07-10T08:40:00Z hello\n")
    d = InputDriver("tail", f"path {log}\ntag t\nread_from_head true\npos_file {tmp_path}/p.pos\n"
                            "format /^(?<time>\\S+) (?<message>.*)$/\ntime_format %Y-%m-%dT%H:%M:%SZ")

    async def scenario() -> None:
        async with d.run(expect_records=1):
            pass
    asyncio.run(scenario())
    assert d.events == [("t", 1562748000 * 10**9, {"message": "hello"})]


def test_unterminated_last_line_is_held_until_its_newline(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    log.write_text("a\nb\npart")
    d = driver(log, extra="read_from_head true", pos=pos)

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 2)
            await d.wait_for(lambda: pos_entries(pos)[0][1] == 4)
            append(log, "ial\nc\n")
            await d.wait_for(lambda: len(d.records) == 4)
            append(log, "pending")
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == ["a", "b", "partial", "c"]
    assert pos_entries(pos)[0][1] == len("a\nb\npartial\nc\n")


def test_multiline_flush_interval_flushes_a_held_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a\nno newline")
    d = driver(log, extra="read_from_head true\nmultiline_flush_interval 0.2", pos=tmp_path / "p.pos")

    async def scenario() -> None:
        async with d.run(expect_records=2):
            pass
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == ["a", "no newline"]


def test_crlf_is_chomped_like_ruby(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"dos\r\nunix\ncr\r\r\n\n")
    d = driver(log, extra="read_from_head true", pos=tmp_path / "p.pos")

    async def scenario() -> None:
        async with d.run(expect_records=4):
            pass
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == ["dos", "unix", "cr\r", ""]


def test_max_line_size_skips_long_lines_and_advances(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "p.pos"
    log.write_text("short\n" + "x" * 50 + "\nok\n" + "y" * 40)
    d = driver(log, extra="read_from_head true\nmax_line_size 20", pos=pos)

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 2)
            append(log, "yyyy\nafter\n")
            await d.wait_for(lambda: len(d.records) == 3)
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == ["short", "ok", "after"]
    assert d.logs.count("[warn]: #0 received line length is longer than 20") == 2
    assert pos_entries(pos)[0][1] == log.stat().st_size
    files = d.instance.stats()["files"]
    assert files == {} or next(iter(files.values()))["skipped_long"] == 2


def test_unmatched_and_invalid_lines_are_logged_like_fluentd(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text('2019-07-10T08:40:00Z good\nno"match\nbad-time rest\n')
    d = driver(log, parse=REGEXP, extra="read_from_head true", pos=tmp_path / "p.pos")

    async def scenario() -> None:
        async with d.run(expect_records=1):
            await d.wait_for(lambda: d.instance.unmatched == 1 and d.instance.invalid == 1)
    asyncio.run(scenario())
    assert d.records == [{"message": "good"}]
    assert '[warn]: #0 pattern not matched: "no\\"match"' in d.logs
    assert (f'[warn]: #0 invalid line found file="{log}" line="bad-time rest" error="invalid time format: '
            "value = bad-time, error_class = ArgumentError, error = string doesn't match\"") in d.logs


def test_emit_unmatched_lines_with_path_key(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("2019-07-10T08:40:00Z good\nnomatch\n")
    clock_now = 1_800_000_000 * 10**9
    d = InputDriver("tail", f"path {log}\ntag t\npos_file {tmp_path}/p.pos\nread_from_head true\n"
                            f"path_key src\nemit_unmatched_lines true\n<parse>\n{REGEXP}\n</parse>",
                    clock=lambda: clock_now)

    async def scenario() -> None:
        async with d.run(expect_records=2):
            pass
    asyncio.run(scenario())
    assert sorted(d.events, key=lambda e: e[1]) == [
        ("t", 1562748000 * 10**9, {"message": "good", "src": str(log)}),
        ("t", clock_now, {"unmatched_line": "nomatch", "src": str(log)}),
    ]


def test_none_parser_times_come_from_the_context_clock(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("x\n")
    d = InputDriver("tail", f"path {log}\ntag t\npos_file {tmp_path}/p.pos\nread_from_head true\n"
                            "<parse>\n@type none\n</parse>", clock=lambda: 42)

    async def scenario() -> None:
        async with d.run(expect_records=1):
            pass
    asyncio.run(scenario())
    assert d.events == [("t", 42, {"message": "x"})]


def test_fd_count_stays_bounded_with_1000_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(1000):
        (logs / f"f{i:04}.log").write_text(f"line {i}\n")
    d = driver(f"{logs}/*.log", extra="read_from_head true\nmax_open_files 100", pos=tmp_path / "p.pos")
    fds_before = len(os.listdir("/proc/self/fd"))

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 1000, timeout=30)
            await d.wait_for(lambda: len(os.listdir("/proc/self/fd")) - fds_before <= 110, timeout=10)
            append(logs / "f0007.log", "more\n")
            await d.wait_for(lambda: len(d.records) == 1001)
            cpu0 = os.times()
            await asyncio.sleep(1.5)    # measuring idle cost needs a span of time, not a condition
            cpu1 = os.times()
            idle_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            assert idle_cpu < 0.5, idle_cpu
    asyncio.run(scenario())
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    assert sorted(r["message"] for r in d.records)[-1] == "more"
    assert len({r["message"] for r in d.records}) == 1001


@pytest.mark.parametrize("extra", ["enable_stat_watcher false", "open_on_every_update true",
                                   "follow_inodes true", "read_bytes_limit_per_second 8192"])
def test_modes_follow_appends(tmp_path: Path, extra: str) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    log.write_text("".join(f"{i} {'x' * 100}\n" for i in range(200)))
    d = driver(log, extra=f"read_from_head true\n{extra}", pos=pos)

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 200)
            append(log, "tail\n")
            await d.wait_for(lambda: len(d.records) == 201)
    asyncio.run(scenario())
    assert [r["message"].split()[0] for r in d.records] == [str(i) for i in range(200)] + ["tail"]
    assert pos_entries(pos) == [(str(log), log.stat().st_size, log.stat().st_ino)]


# Group commit in these tests: lines of ~1 KB and read_lines_limit 100, so a read (64 KiB blocks
# until 100 lines) is 128 lines. Reads are joined while the emit holds at most (GROUP_COMMIT_READS
# - 1) * read_lines_limit lines (8 reads: 640 <= 700 lines, so a sixth read makes 768), far below
# GROUP_COMMIT_BYTES and the 8 reads of one pump.
JOINED_READS = (GROUP_COMMIT_READS - 1) * 100 // 128 + 1
assert JOINED_READS * 128 * 1024 < GROUP_COMMIT_BYTES and JOINED_READS < 8


def _kilobyte_lines(tmp_path: Path, count: int) -> tuple[Path, Path, list[str]]:
    """A log of `count` numbered lines of 1 KB each ("\\n" included), its pos_file path, its lines."""
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    lines = [f"{i:05d} " + "x" * 1017 for i in range(count)]
    log.write_text("".join(line + "\n" for line in lines))
    return log, pos, lines


@pytest.mark.parametrize("durable", [True, False])
def test_a_backlog_goes_out_in_fewer_emits_when_each_emit_is_made_durable(tmp_path: Path, durable: bool) -> None:
    # Group commit: an emit that is stored when it returns (a file buffer fsyncs a chunk per emit)
    # lets the next emits of a backlog carry several reads; one stored later (a memory buffer)
    # keeps one read an emit. Lines of ~1 KB: a read (64 KiB blocks until 100 lines) is 128 lines.
    log, pos, lines = _kilobyte_lines(tmp_path, 2000)
    d = driver(log, extra="read_from_head true\nread_lines_limit 100", pos=pos)
    d.emitter.store_after = None if durable else 0.001

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == len(lines) and pos_entries(pos)[0][1] == log.stat().st_size)
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == lines            # each line once, in order
    sizes = d.emitter.sizes
    if durable:
        assert sizes[0] == 128                                   # no emit stored yet: one read
        assert max(sizes) == JOINED_READS * 128                  # then reads joined into one emit
        assert len(sizes) < 2000 / 128 / 2
    else:
        assert set(sizes) == {128, 2000 % 128}


def test_a_refused_group_commit_emit_is_offered_again_whole(tmp_path: Path) -> None:
    log, pos, lines = _kilobyte_lines(tmp_path, 1000)
    d = driver(log, extra="read_from_head true\nread_lines_limit 100", pos=pos)
    recording = d.emitter.emit
    calls = []

    async def refuse_the_second(tag: str, events: list) -> None:
        calls.append(len(events))
        if len(calls) == 2:           # the first emit of several reads
            raise BufferOverflowError("buffer space has too many data")
        await recording(tag, events)
    d.emitter.emit = refuse_the_second

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == len(lines) and pos_entries(pos)[0][1] == log.stat().st_size)
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == lines            # nothing lost, nothing twice
    assert calls[1] == calls[2] == JOINED_READS * 128            # the same events, offered again


def test_a_group_commit_emit_of_regexp_parsed_reads_still_promises_str_values(tmp_path: Path) -> None:
    # the regexp parser's batches are StrValueEvents (the json formatter then skips its number
    # search); the reads that group commit joins into one emit must stay one
    log, pos, lines = _kilobyte_lines(tmp_path, 1000)
    d = driver(log, parse="@type regexp\nexpression /^(?<n>\\d+) (?<x>x+)$/", pos=pos,
               extra="read_from_head true\nread_lines_limit 100")
    recording = d.emitter.emit
    kinds = []

    async def note_type(tag: str, events: list) -> None:
        kinds.append((type(events), len(events)))
        await recording(tag, events)
    d.emitter.emit = note_type

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == len(lines))
    asyncio.run(scenario())
    assert [r["n"] for r in d.records] == [f"{i:05d}" for i in range(1000)]
    assert max(n for _, n in kinds) == JOINED_READS * 128                   # reads were joined
    assert {kind for kind, _ in kinds} == {StrValueEvents}
