"""out_file with Fluentd v0.12 parameters written in the plugin (format, buffer_type, buffer_path,
include_time_key, time_slice_format ...), moved into <format>/<buffer>/<inject> as Fluentd's compat does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import OutputDriver

T0 = 1562803200 * 1_000_000_000   # 2019-07-11 00:00:00 UTC


def _run(d: OutputDriver, batches: list[tuple[str, int, dict]]) -> None:
    async def go() -> None:
        async with d.run():
            for tag, t, r in batches:
                await d.feed(tag, t, r)
            await d.flush()
    asyncio.run(go())


def test_v012_format_buffer_inject_and_time_slice(tmp_path: Path) -> None:
    d = OutputDriver("file", f"""
path {tmp_path}/o/app
format json
include_time_key true
include_tag_key true
buffer_type file
buffer_path {tmp_path}/buf
time_slice_format %Y%m%d%H
time_slice_wait 10m
utc
append true
""")
    s = d.instance.buffer_settings
    assert (d.instance.chunk_keys.time, s.timekey, s.timekey_wait) == (True, 3600, 600)
    assert type(d.instance.buffer).__module__.endswith("buffers.file")
    _run(d, [("a", T0, {"n": 1}), ("a", T0 + 3600 * 10**9, {"n": 2})])
    names = sorted(p.name for p in (tmp_path / "o").glob("*.log"))
    assert names == ["app.2019071100.log", "app.2019071101.log"]
    line = json.loads((tmp_path / "o" / "app.2019071100.log").read_text())
    assert line == {"n": 1, "tag": "a", "time": "2019-07-11T00:00:00Z"}
    assert d.instance.buffer.options.path == f"{tmp_path}/buf"   # buffer_path is the file buffer path


def test_v012_memory_buffer_keeps_the_daily_default(tmp_path: Path) -> None:
    # the corpus out_copy example: `format json` + `buffer_type memory`, no time_slice_format
    d = OutputDriver("file", f"path {tmp_path}/o/x\nformat json\nbuffer_type memory\nappend false")
    assert type(d.instance.buffer).__module__.endswith("buffers.memory")
    assert (d.instance.chunk_keys.time, d.instance.buffer_settings.timekey) == (True, 86400)


@pytest.mark.parametrize("extra,message", [
    ("time_slice_format %Y%m", "time_slice_format only with %Y or %m is too long"),
    ("time_slice_format %Y%m%d\nutc\nlocaltime", "both of utc and localtime are specified"),
])
def test_v012_time_slice_errors(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OutputDriver("file", f"path {tmp_path}/o/x\n{extra}")
