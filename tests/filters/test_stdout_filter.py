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
