"""secondary_file: the chunks a primary gave up on, written as Fluentd writes them (msgpack
[EventTime, record]) so its tools and `kawa buffer replay` read them; Fluentd's configuration errors."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kawa.errors import ConfigError
from kawa.testing.cwl_server import free_port
from kawa.testing.drivers import OutputDriver

NS = 1_000_000_000
T = 1_700_000_000 * NS + 5


def failing_forward(tmp_path: Path, secondary: str) -> OutputDriver:
    """A forward output whose only server is down and that gives up after one retry."""
    return OutputDriver("forward", f"<server>\nhost 127.0.0.1\nport {free_port()}\n</server>\n"
                                   "<buffer>\nretry_max_times 1\nretry_wait 0.1\n</buffer>\n"
                                   f"<secondary>\n@type secondary_file\ndirectory {tmp_path}/failed\n{secondary}\n"
                                   "</secondary>")


def run(d: OutputDriver, tmp_path: Path, files: int) -> list[Path]:
    async def go() -> None:
        async with d.run():
            await d.feed_batch("app.web", [(T, {"n": 1}), (T + 1, {"n": 2})])
            for _ in range(100):
                await d.flush()
                if len(list((tmp_path / "failed").glob("*"))) >= files:
                    return
                await asyncio.sleep(0.1)
    asyncio.run(go())
    return sorted((tmp_path / "failed").glob("*"))


def test_chunks_the_primary_gave_up_on_are_written_as_fluentd_msgpack(tmp_path: Path) -> None:
    d = failing_forward(tmp_path, "basename ${tag}.bin")
    [path] = run(d, tmp_path, 1)
    assert path.name == "app.web.bin.0"
    events = []
    unpacker = msgpack.Unpacker(raw=False, ext_hook=lambda code, b: msgpack.ExtType(code, b))
    unpacker.feed(path.read_bytes())
    for time, record in unpacker:
        seconds, nanos = int.from_bytes(time.data[:4], "big"), int.from_bytes(time.data[4:], "big")
        events.append((seconds * NS + nanos, record))
    assert events == [(T, {"n": 1}), (T + 1, {"n": 2})]


def test_gzip_and_append(tmp_path: Path) -> None:
    d = failing_forward(tmp_path, "compress gzip\nappend true")
    [path] = run(d, tmp_path, 1)
    assert path.name == "dump.bin.gz"
    assert len(gzip.decompress(path.read_bytes())) > 10


@pytest.mark.parametrize("conf, message", [
    ("basename a/b", "basename should not include `/`"),
    ("basename dump.%Y%m%d", "remove time formats, like `%Y%m%d`, from basename or directory"),
    ("basename ${host}", "incompatible placeholder host, remove variable placeholder"),
])
def test_configuration_errors(tmp_path: Path, conf: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        failing_forward(tmp_path, conf)
    assert message in str(info.value)


def test_only_in_a_secondary_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="This plugin can only be used in the <secondary> section"):
        OutputDriver("secondary_file", f"directory {tmp_path}")





def test_a_cloudwatch_logs_chunk_is_written_as_its_records(tmp_path: Path, cw_output: Any, cwl_proxy: Any,
                                                           clock: Any) -> None:
    """cloudwatch_logs keeps messages in its chunks: secondary_file gets the records back."""
    cwl_proxy.faults.unavailable(50)
    d = cw_output("log_group_name g\nlog_stream_name s\nauto_create_stream true\n"
                  "<buffer>\nretry_max_times 1\nretry_wait 0.1\n</buffer>\n"
                  f"<secondary>\n@type secondary_file\ndirectory {tmp_path}/failed\n</secondary>")
    now = int(clock() * NS)

    async def go() -> None:
        async with d.run():
            await d.feed_batch("app", [(now, {"n": 1, "msg": "é"}), (now + 1, {"n": 2})])
            for _ in range(100):
                await d.flush()
                if list((tmp_path / "failed").glob("*")):
                    return
                await asyncio.sleep(0.1)
    asyncio.run(go())
    [path] = sorted((tmp_path / "failed").glob("*"))
    unpacker = msgpack.Unpacker(raw=False, ext_hook=lambda code, b: msgpack.ExtType(code, b))
    unpacker.feed(path.read_bytes())
    got = [(int.from_bytes(t.data[:4], "big") * NS + int.from_bytes(t.data[4:], "big"), r) for t, r in unpacker]
    assert got == [(now, {"n": 1, "msg": "é"}), (now + 1, {"n": 2})]
