"""out_file: byte-identical to Fluentd 1.18's golden outputs; path templates; append false indexes."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import datetime
from pathlib import Path

import pytest

from kawa.errors import ConfigError
from kawa.plugins.outputs.file import generate_path_template
from kawa.testing.drivers import OutputDriver

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden"

CAPTURE = """
path {path}
append true
<format>
  @type json
</format>
<inject>
  time_key time
  time_type string
  time_format %Y-%m-%dT%H:%M:%S.%N%z
  tag_key tag
</inject>
<buffer>
  flush_mode immediate
</buffer>
"""


def _events_from_golden(path: Path) -> list[tuple[str, int, dict]]:
    """Turn captured lines back into (tag, time_ns, record) as they reached Fluentd's out_file."""
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        record = json.loads(line)
        tag = record.pop("tag")
        stamp = record.pop("time")
        seconds = datetime.strptime(stamp[:19] + stamp[29:], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        out.append((tag, int(seconds) * 1_000_000_000 + int(stamp[20:29]), record))
    return out


@pytest.mark.parametrize("case,name", [("ref_nginx_pipeline", "access"), ("outfile_json_formatter_values", "app")])
def test_out_file_matches_golden(case: str, name: str, tmp_path: Path) -> None:
    expected_dir = GOLDEN / case / "expected" / "out"
    if not expected_dir.is_dir():
        pytest.skip(f"golden case {case} not available at {expected_dir}")
    events = []
    for f in sorted(expected_dir.glob(f"{name}.*.log")):
        events.extend(_events_from_golden(f))
    d = OutputDriver("file", CAPTURE.format(path=tmp_path / "out" / name))

    async def run() -> None:
        async with d.run():
            for i in range(0, len(events), 7):   # several batches, like tail reading blocks
                for tag, t, r in events[i:i + 7]:
                    await d.feed(tag, t, r)
            await d.flush()

    asyncio.run(run())
    produced = sorted(p.name for p in (tmp_path / "out").glob("*.log"))
    assert produced == sorted(p.name for p in expected_dir.glob(f"{name}.*.log"))
    for p in produced:
        assert (tmp_path / "out" / p).read_bytes() == (expected_dir / p).read_bytes(), p
    # the buffer directory stays (empty), as with Fluentd
    assert list((tmp_path / "out" / name).iterdir()) == []


def test_path_templates_as_fluentd() -> None:
    assert generate_path_template("/d/f", 86400, True, False, ".log") == "/d/f.%Y%m%d.log"
    assert generate_path_template("/d/f", 86400, False, False, ".log") == "/d/f.%Y%m%d_**.log"
    assert generate_path_template("/d/f.*.data", 3600, True, False, ".log") == "/d/f.%Y%m%d%H.data"
    assert generate_path_template("/d/f.%Y%m%d", 86400, True, True, ".log") == "/d/f.%Y%m%d.log.gz"
    assert generate_path_template("/d/f", 60, True, False, ".log") == "/d/f.%Y%m%d%H%M.log"
    with pytest.raises(ConfigError, match="insufficient timestamp placeholders"):
        generate_path_template("/d/f.%Y", 86400, True, False, ".log")


def _run(d: OutputDriver, batches: list[tuple[str, int, dict]]) -> None:
    async def go() -> None:
        async with d.run():
            for tag, t, r in batches:
                await d.feed(tag, t, r)
            await d.flush()
    asyncio.run(go())


T0 = 1562803200 * 1_000_000_000   # 2019-07-11 00:00:00 UTC


def test_append_false_writes_indexed_files_per_chunk(tmp_path: Path) -> None:
    conf = f"""
path {tmp_path}/o/app
<format>
  @type json
</format>
<buffer time>
  timekey 1d
  timekey_use_utc true
  flush_mode immediate
</buffer>
"""
    d = OutputDriver("file", conf)
    _run(d, [("a", T0, {"n": 1}), ("a", T0 + 1, {"n": 2})])
    names = sorted(p.name for p in (tmp_path / "o").glob("*.log"))
    assert names == ["app.20190711_0.log", "app.20190711_1.log"]


def test_tag_and_record_key_placeholders_and_gzip(tmp_path: Path) -> None:
    conf = f"""
path {tmp_path}/o/${{tag}}/${{$.k.sub}}/f.*
compress gzip
<format>
  @type json
</format>
<buffer tag,time,$.k.sub>
  path {tmp_path}/buf
  timekey 1h
  timekey_use_utc true
  flush_mode immediate
</buffer>
"""
    d = OutputDriver("file", conf)
    _run(d, [("web", T0, {"k": {"sub": "x"}, "n": 1}), ("db", T0, {"k": {"sub": "y"}, "n": 2})])
    a = tmp_path / "o" / "web" / "x" / "f.2019071100_0.gz"
    assert gzip.decompress(a.read_bytes()) == b'{"k":{"sub":"x"},"n":1}\n'
    assert (tmp_path / "o" / "db" / "y" / "f.2019071100_0.gz").exists()


def test_path_without_tag_placeholder_is_rejected_when_tag_is_a_chunk_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="doesn't have tag placeholder"):
        OutputDriver("file", f"path {tmp_path}/x\n<format>\n@type json\n</format>\n<buffer tag,time>\n</buffer>")
