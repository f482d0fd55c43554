"""kawa's own log: Fluentd's line format, Ruby String#inspect quoting of fields, levels, limited()."""

from __future__ import annotations

import io
import json
import re

import pytest

from kawa.log import LogSink, Logger, ruby_inspect


def test_line_format_with_prefix_and_fields() -> None:
    out = io.StringIO()
    Logger(LogSink(out), prefix="#0 ").warn("pattern not matched", path="/a", n=3, ok=True, x=None)
    line = out.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \[warn\]: #0 pattern not matched "
                        r'path="/a" n=3 ok=true x=nil\n', line), line


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", '"plain"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("a\nb\tc\r", '"a\\nb\\tc\\r"'),
    ("\x1b[0m\x07\x00", '"\\e[0m\\a\\x00"'),
    ("#{ruby}", '"\\#{ruby}"'),
    ("# not code", '"# not code"'),
    ("\x7f", '"\\x7F"'),
    ("caf\u00e9", '"caf\u00e9"'),
    ("raw\udcff", '"raw\\xFF"'),        # a byte kept by surrogateescape
])
def test_ruby_inspect(text: str, expected: str) -> None:
    assert ruby_inspect(text) == expected


def test_levels_and_child_log_level() -> None:
    out = io.StringIO()
    log = Logger(LogSink(out, level="warn"))
    log.info("hidden")
    log.warn("shown")
    log.child(level="debug").debug("plugin debug")       # a plugin's @log_level wins over the sink's
    log.child(level="error").warn("plugin hidden")
    text = out.getvalue()
    assert "hidden" not in text and "[warn]: shown" in text and "[debug]: plugin debug" in text


def test_json_format_is_fluentds() -> None:
    """Fluentd's `<log> format json`: time, level, the message with its fields as in text, and the
    worker's id as `worker_id` instead of the "#0 " prefix (lib/fluent/log.rb)."""
    out = io.StringIO()
    Logger(LogSink(out, fmt="json"), prefix="#0 ").info("hello", worker=0, path="/a b")
    Logger(LogSink(out, fmt="json")).warn("supervisor line")
    first, second = map(json.loads, out.getvalue().splitlines())
    assert list(first) == ["time", "level", "message", "worker_id"]
    assert first["level"] == "info" and first["message"] == 'hello worker=0 path="/a b"' and first["worker_id"] == 0
    assert second == {"time": second["time"], "level": "warn", "message": "supervisor line"}


def test_time_format_takes_rubys_strftime() -> None:
    out = io.StringIO()
    sink = LogSink(out)
    sink.set_time_format("%Y-%m-%dT%H:%M:%S.%L%:z")
    Logger(sink).info("x")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d \[info\]: x$", out.getvalue())


def test_event_hook_sees_only_worker_lines() -> None:
    sink = LogSink(io.StringIO())
    seen: list[tuple[str, str]] = []
    sink.event_hook = lambda level, message, fields: seen.append((level, message))
    Logger(sink).info("supervisor line")
    Logger(sink, prefix="#0 ").info("worker line", worker=0)
    assert seen == [("info", "worker line worker=0")]


def test_limited_caps_lines_per_second_and_reports_suppressed(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("kawa.log.time.monotonic", lambda: now[0])
    out = io.StringIO()
    log = Logger(LogSink(out))
    for i in range(10):
        log.limited("bad line", "warn", f"line {i}", per_second=3)
    assert out.getvalue().count("[warn]: line") == 3
    now[0] += 1.5
    log.limited("bad line", "warn", "after", per_second=3)
    lines = out.getvalue().splitlines()
    assert lines[-2].endswith("[warn]: 7 more 'bad line' messages suppressed in the last second")
    assert lines[-1].endswith("[warn]: after")
