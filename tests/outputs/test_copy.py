"""copy and relabel outputs: every <store> gets the batch, copy_mode isolation, ignore_error."""

from __future__ import annotations

import asyncio

import pytest

from kawa.testing.drivers import OutputDriver


def _run(d: OutputDriver, tag: str, events: list) -> None:
    async def go() -> None:
        async with d.run():
            await d.feed_batch(tag, events)
    asyncio.run(go())


def test_each_store_injects_into_its_own_copy() -> None:
    conf = ("<store>\n@type stdout\n<inject>\ntag_key tag\n</inject>\n</store>\n"
            "<store>\n@type stdout\n<inject>\ntag_key g2\n</inject>\n</store>")
    d = OutputDriver("copy", conf)
    record = {"a": 1}
    _run(d, "app", [(0, record)])
    lines = [line.split(": ", 1)[1] for line in d.log_stream.getvalue().splitlines() if ": {" in line]
    assert lines == ['{"a":1,"tag":"app"}', '{"a":1,"g2":"app"}']
    assert record == {"a": 1}


def test_relabel_store_emits_to_the_bound_emitter() -> None:
    d = OutputDriver("copy", "<store>\n@type relabel\n</store>\n<store>\n@type null\n</store>")
    _run(d, "app", [(1, {"a": 1})])
    assert d.emitter.events == [("app", 1, {"a": 1})]


def test_ignore_error_store_logs_and_continues() -> None:
    d = OutputDriver("copy", "<store ignore_error>\n@type relabel\n</store>\n<store>\n@type relabel\n</store>")
    d.emitter.refuse = RuntimeError("boom")
    with pytest.raises(RuntimeError):
        _run(d, "app", [(1, {"a": 1})])
    assert any("ignore emit error in" in line and 'error="boom"' in line for line in d.logs)


def test_deep_copy_mode_isolates_nested_values() -> None:
    d = OutputDriver("copy", "copy_mode deep\n<store>\n@type relabel\n</store>\n<store>\n@type relabel\n</store>")
    nested = {"k": {"v": 1}}
    _run(d, "app", [(1, nested)])
    first, second = d.emitter.events[0][2], d.emitter.events[1][2]
    assert first == second == nested and first["k"] is not second["k"] is not nested["k"]
