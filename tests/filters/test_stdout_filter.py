"""stdout filter: prints events in the stdout format (with <inject>, other <format>s) and passes them on."""

from __future__ import annotations

from kawa.testing.drivers import FilterDriver

T = 1562746800_123456789


def _printed(d: FilterDriver) -> list[str]:
    return [line for line in d.log_stream.getvalue().split("\n") if line]


def test_prints_stdout_format_and_passes_events_unchanged() -> None:
    d = FilterDriver("stdout", "")
    record = {"a": 1, "s": "x"}
    d.feed_batch("app.x", [(T, record), (T + 1, {"b": None})])
    assert d.filtered_events == [("app.x", T, {"a": 1, "s": "x"}), ("app.x", T + 1, {"b": None})]
    assert d.filtered_events[0][2] is record
    lines = _printed(d)
    assert len(lines) == 2
    assert lines[0].endswith(' app.x: {"a":1,"s":"x"}') and lines[1].endswith(' app.x: {"b":null}')
    assert ".123456789 " in lines[0]


def test_inject_changes_only_the_printed_copy() -> None:
    d = FilterDriver("stdout", "<inject>\ntag_key t\ntime_key ts\ntime_type unixtime\n</inject>")
    d.feed("app", T, {"a": 1})
    assert d.filtered_records == [{"a": 1}]
    assert _printed(d)[0].endswith('app: {"a":1,"t":"app","ts":1562746800}')


def test_other_formats() -> None:
    d = FilterDriver("stdout", "<format>\n@type ltsv\n</format>")
    d.feed("app", T, {"a": 1, "b": "x"})
    assert _printed(d) == ["a:1\tb:x"]
    d = FilterDriver("stdout", "<format>\n@type stdout\noutput_type hash\n</format>")
    d.feed("app", T, {"a": 1})
    assert _printed(d)[0].endswith(' app: {"a"=>1}')


# The stdout/null outputs with <buffer> live here too (tests/outputs/test_stdout.py belongs to a colleague).
def test_outputs_with_buffer_section_are_buffered() -> None:
    import asyncio

    from kawa.buffer.output import BufferedOutput
    from kawa.testing.drivers import OutputDriver

    async def go() -> None:
        d = OutputDriver("stdout", "<buffer>\nflush_mode interval\nflush_interval 60s\n</buffer>")
        assert isinstance(d.instance, BufferedOutput)
        async with d.run():
            await d.feed("app", T, {"a": 1})
            assert d.log_stream.getvalue() == ""           # held in the buffer until flushed
            await d.flush()
            assert d.log_stream.getvalue().endswith(' app: {"a":1}\n')
        n = OutputDriver("null", "<buffer>\nflush_mode immediate\n</buffer>")
        assert isinstance(n.instance, BufferedOutput)
        async with n.run():
            await n.feed_batch("app", [(T, {"a": 1}), (T, {"a": 2})])
            await n.flush()
            for _ in range(500):
                if n.instance.stats()["dropped_records"] == 2:
                    break
                await asyncio.sleep(0.01)
            assert n.instance.stats()["dropped_records"] == 2
        assert not isinstance(OutputDriver("null", "").instance, BufferedOutput)
        assert not isinstance(OutputDriver("stdout", "").instance, BufferedOutput)

    asyncio.run(go())
