"""sample / dummy input: rate x size events per second, auto_increment_key, config errors."""

from __future__ import annotations

import asyncio

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import FakeClock, InputDriver


def test_dummy_alias_and_auto_increment() -> None:
    d = InputDriver("dummy", 'tag t\ndummy [{"a":1},{"b":2}]\nauto_increment_key id\nrate 2\nsize 2')

    async def go() -> None:
        async with d.run(expect_records=4):
            pass
    asyncio.run(go())
    assert d.records[:4] == [{"a": 1, "id": 0}, {"b": 2, "id": 1}, {"a": 1, "id": 2}, {"b": 2, "id": 3}]
    assert {tag for tag, _, _ in d.events} == {"t"}


def test_default_sample_record_and_clock_time() -> None:
    clock = FakeClock()
    d = InputDriver("sample", "tag demo", clock=clock)
    batch = d.instance.next_batch()
    assert batch == [(clock.now, {"message": "sample"})]
    batch[0][1]["x"] = 1        # emitted records are copies: filters may change them
    assert d.instance.next_batch()[0][1] == {"message": "sample"}


@pytest.mark.parametrize("conf,message", [
    ("tag t\nsample [1]", "0th element of sample, 1, is not a hash"),
    ("tag t\nsample {\"a\":", "JSON"),
])
def test_bad_sample(conf: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InputDriver("sample", conf)
