"""regexp / nginx parsers against Fluentd golden outputs and real log lines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from golden_cases import actual_events, actual_failures, expected_events, expected_failures, input_lines

from kawa.errors import ConfigError
from kawa.testing.drivers import ParserDriver

T_2019_07_10_082200 = 1562746920 * 10**9


def test_nginx_golden() -> None:
    d = ParserDriver("nginx", "")
    events, failures = d.instance.parse_batch(input_lines("parse_nginx"))
    assert actual_events(events) == expected_events("parse_nginx")
    assert actual_failures(failures) == expected_failures("parse_nginx")
    assert all(f.kind == "unmatched" for f in failures)


def test_nginx_absent_groups_are_absent_keys() -> None:
    d = ParserDriver("nginx", "")
    [(t, rec)] = d.parse('198.51.100.23 - - [10/Jul/2019:08:50:51 +0000] "GET /common-log-format HTTP/1.0" 200 3')
    assert rec == {"remote": "198.51.100.23", "host": "-", "user": "-", "method": "GET",
                   "path": "/common-log-format", "code": "200", "size": "3"}
    assert t == 1562748651 * 10**9


def test_regexp_types_golden() -> None:
    conf = """
    expression /^(?<time>\\S+ \\S+ \\S+) (?<method>\\S+) (?<path>\\S+) (?<code>\\S+) (?<size>\\S+) (?<rt>\\S+) (?<ok>\\S+) ?(?<tags>.*)$/
    time_format %Y-%m-%d %H:%M:%S %z
    types code:integer,size:integer,rt:float,ok:bool,tags:array
    keep_time_key true
    """
    d = ParserDriver("regexp", conf)
    events, failures = d.instance.parse_batch(input_lines("parse_regexp_types"))
    assert actual_events(events) == expected_events("parse_regexp_types", time_key="fluentd_time",
                                                    tag_key="fluentd_tag")
    assert actual_failures(failures) == expected_failures("parse_regexp_types")


def test_regexp_is_unanchored_and_line_anchors_work() -> None:
    d = ParserDriver("regexp", "expression /level=(?<level>\\w+)/")
    assert d.parse("ts=1 level=warn msg=x") == [(None, {"level": "warn"})]
    d = ParserDriver("regexp", "expression /^b=(?<b>\\w+)$/")
    # Ruby's ^ and $ are line anchors: the second line of a text may match
    assert d.parse("a=1\nb=2") == [(None, {"b": "2"})]
    assert d.parse("xb=2") == []
    assert d.failures[0].reason == "pattern not matched"


def test_regexp_time_error_is_invalid_with_fluentd_message() -> None:
    d = ParserDriver("regexp", "expression /^(?<time>[^ ]+) (?<msg>.*)$/\ntime_format %Y-%m-%dT%H:%M:%S%z")
    assert d.parse("yesterday hello") == []
    [f] = d.failures
    assert f.kind == "invalid"
    assert f.reason == ("invalid time format: value = yesterday, error_class = ArgumentError, "
                        "error = string doesn't match")


def test_regexp_without_named_capture_is_config_error() -> None:
    with pytest.raises(ConfigError):
        ParserDriver("regexp", "expression /^\\d+$/")


def test_regexp_null_value_pattern_and_empty_string() -> None:
    d = ParserDriver("regexp", "expression /^(?<a>[^,]*),(?<b>[^,]*)$/\nnull_value_pattern /^-$/\n"
                               "null_empty_string true")
    assert d.parse("-,") == [(None, {"a": None, "b": None})]


def test_regexp_time_key_absent_gives_none_time() -> None:
    d = ParserDriver("regexp", "expression /^(?<msg>.*)$/")
    assert d.parse("hello") == [(None, {"msg": "hello"})]
    assert d.instance.estimate_current_event is True


def test_regexp_bad_input_never_raises() -> None:
    d = ParserDriver("nginx", "")
    events, failures = d.instance.parse_batch(["", "\x00\xff", "a" * 100_000, "\udcff"])
    assert events == [] and len(failures) == 4
