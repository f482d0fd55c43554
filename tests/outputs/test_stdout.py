"""stdout and null outputs: golden stdout_default_format lines, inject, use_logger, output_type."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kawa.testing.drivers import OutputDriver

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden" / "stdout_default_format"


def _run(driver: OutputDriver, tag: str, events: list) -> str:
    async def go() -> None:
        async with driver.run():
            await driver.feed_batch(tag, events)
    asyncio.run(go())
    return driver.log_stream.getvalue()


def test_golden_default_format_lines() -> None:
    if not GOLDEN.is_dir():
        pytest.skip("../shared/golden/stdout_default_format is absent")
    events = []
    for line in (GOLDEN / "input" / "in.log").read_text().split("\n"):
        if line:
            rec = json.loads(line)
            ts = datetime.strptime(rec.pop("time"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            events.append((int(ts.timestamp()) * 10**9, rec))
    expected = [line for line in (GOLDEN / "expected" / "fluentd.log").read_text().split("\n")
                if line.startswith("2019-")]
    got = _run(OutputDriver("stdout", ""), "outfile.app", events)
    # the driver's log stream holds only the event lines (no plugin logs at start)
    assert got.split("\n")[:-1] == expected


def test_inject_and_compat_include_tag_key() -> None:
    d = OutputDriver("stdout", "<inject>\ntag_key t\ntime_key ts\ntime_type unixtime\n</inject>")
    got = _run(d, "app", [(1562746800_123456789, {"a": 1})])
    assert got.endswith('app: {"a":1,"t":"app","ts":1562746800}\n')
    d = OutputDriver("stdout", "include_tag_key true")
    assert _run(d, "app", [(1562746800 * 10**9, {"a": 1})]).endswith('app: {"a":1,"tag":"app"}\n')


def test_output_type_and_time_format() -> None:
    d = OutputDriver("stdout", "<format>\n@type stdout\noutput_type json\ntime_format %s\n</format>")
    assert _run(d, "x", [(1562746800 * 10**9, {"k": "v"})]) == '1562746800 x: {"k":"v"}\n'


@pytest.mark.parametrize("output_type,record", [("json", '{"k":"v"}'), ("hash", '{"k"=>"v"}'), ("ltsv", "k:v")])
def test_v012_output_type_moves_into_the_stdout_format(output_type: str, record: str) -> None:
    # Fluentd's compat_parameters: `output_type` written in the plugin goes into <format> (@type stdout)
    d = OutputDriver("stdout", f"output_type {output_type}")
    assert _run(d, "x", [(1562746800 * 10**9, {"k": "v"})]).endswith(f" x: {record}\n")


def test_use_logger_false_writes_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    d = OutputDriver("stdout", "use_logger false")
    assert _run(d, "x", [(0, {"k": "v"})]) == ""
    assert capsys.readouterr().out.endswith('x: {"k":"v"}\n')


def test_null_drops_everything() -> None:
    d = OutputDriver("null", "")
    _run(d, "x", [(0, {"k": "v"})] * 3)
    assert d.instance.stats() == {"dropped_records": 3}
