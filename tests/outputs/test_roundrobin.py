"""roundrobin: batches take turns over the <store>s, in proportion to their weights."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import OutputDriver


def test_batches_take_turns_by_weight(tmp_path: Path) -> None:
    conf = "".join(f"<store>\n@type file\npath {tmp_path}/{name}\nweight {w}\n<format>\n@type single_value\n"
                   "</format>\n<buffer>\nflush_mode immediate\n</buffer>\n</store>\n"
                   for name, w in (("a", 1), ("b", 3)))
    d = OutputDriver("roundrobin", conf)

    async def go() -> None:
        async with d.run():
            for i in range(8):
                await d.feed("t", {"message": f"m{i}"})
            await d.flush()
    asyncio.run(go())
    lines = {name: sum((p.read_text().splitlines() for p in tmp_path.glob(f"{name}*.log")), [])
             for name in ("a", "b")}
    assert Counter({k: len(v) for k, v in lines.items()}) == Counter({"a": 2, "b": 6})
    assert sorted(lines["a"] + lines["b"]) == sorted(f"m{i}" for i in range(8))


def test_weight_must_be_a_positive_integer() -> None:
    with pytest.raises(ConfigError, match="weight: must be 1 or more"):
        OutputDriver("roundrobin", "<store>\n@type null\nweight 0\n</store>")
