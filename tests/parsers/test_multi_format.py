"""multi_format: first <pattern> that parses wins, in input order; `format /re/`; nothing matched."""

from __future__ import annotations

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import ParserDriver

CONF = """
<pattern>
  format json
  time_key timestamp
</pattern>
<pattern>
  format regexp
  expression /^(?<host>[^ ]*) (?<level>[A-Z]+) (?<msg>.*)$/
</pattern>
<pattern>
  format /^(?<time>\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z) (?<word>\\w+)$/
  time_format %Y-%m-%dT%H:%M:%SZ
</pattern>
"""


def test_first_matching_pattern_wins_and_order_is_kept() -> None:
    p = ParserDriver("multi_format", CONF).instance
    events, failures = p.parse_batch([
        '{"timestamp": 1700000000, "a": 1}',
        "web1 INFO started",
        "2024-01-02T03:04:05Z hello",
        '{"a": 2}',
        "???",
    ])
    assert events == [
        (1700000000 * 10**9, {"a": 1}),
        (None, {"host": "web1", "level": "INFO", "msg": "started"}),
        (1704164645 * 10**9, {"word": "hello"}),
        (None, {"a": 2}),
    ]
    assert [(f.text, f.reason, f.kind) for f in failures] == [("???", "pattern not matched", "unmatched")]


def test_all_lines_of_the_first_pattern_take_the_batch_path() -> None:
    p = ParserDriver("multi_format", CONF).instance
    events, failures = p.parse_batch(['{"a": %d}' % i for i in range(5)])
    assert [r["a"] for _t, r in events] == list(range(5)) and failures == []


def test_a_pattern_without_time_does_not_match_when_time_is_not_estimated() -> None:
    conf = ("<pattern>\nformat json\nestimate_current_event false\n</pattern>\n"
            "<pattern>\nformat none\n</pattern>")
    p = ParserDriver("multi_format", conf).instance
    events, _ = p.parse_batch(['{"a": 1}', '{"a": 2}'])
    assert events == [(None, {"message": '{"a": 1}'}), (None, {"message": '{"a": 2}'})]


def test_time_parse_error_falls_through_to_the_next_pattern() -> None:
    conf = ("<pattern>\nformat json\ntime_key t\ntime_format %Y\n</pattern>\n"
            "<pattern>\nformat none\n</pattern>")
    p = ParserDriver("multi_format", conf).instance
    events, failures = p.parse_batch(['{"t": "not a year"}'])
    assert events == [(None, {"message": '{"t": "not a year"}'})] and failures == []


def test_needs_a_pattern_and_rejects_joining_parsers() -> None:
    with pytest.raises(ConfigError):
        ParserDriver("multi_format", "")
    with pytest.raises(ConfigError):
        ParserDriver("multi_format", "<pattern>\nformat cri\n</pattern>")
