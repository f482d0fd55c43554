"""exec input: `command cat file.jsonl` feeds parsed records (as the golden cases use it), <extract> tag_key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import InputDriver


def _run(d: InputDriver, n: int) -> None:
    async def go() -> None:
        async with d.run(expect_records=n):
            pass
    asyncio.run(go())


def test_cat_jsonl_with_time_key_and_current_time_fallback(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"a":1,"t":1562746800.5}\n{"a":2}\n')
    d = InputDriver("exec", f"command cat {src}\ntag x\n<parse>\n@type json\ntime_key t\n</parse>")
    _run(d, 2)
    assert d.records == [{"a": 1}, {"a": 2}]
    assert d.events[0][1] == 1562746800_500000000
    assert {tag for tag, _, _ in d.events} == {"x"}


def test_extract_tag_key(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"a":1,"tg":"one"}\n{"a":2,"tg":"two"}\n')
    d = InputDriver("exec", f"command cat {src}\n<parse>\n@type json\n</parse>\n<extract>\ntag_key tg\n</extract>")
    _run(d, 2)
    assert sorted((tag, r["a"]) for tag, _, r in d.events) == [("one", 1), ("two", 2)]


def test_tag_or_tag_key_required() -> None:
    with pytest.raises(ConfigError, match="'tag' or 'tag_key' option is required on exec input"):
        InputDriver("exec", "command true\n<parse>\n@type json\n</parse>")
