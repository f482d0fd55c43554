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


def test_regexp_keeps_empty_groups_and_drops_unset_ones_in_one_record() -> None:
    d = ParserDriver("regexp", "expression /^(?<a>[^ ]*) (?:(?<b>x+) )?(?<c>.*)$/")
    assert d.parse(" y") == [(None, {"a": "", "c": "y"})]           # "" kept, the unset group absent
    assert d.parse("a xx ") == [(None, {"a": "a", "b": "xx", "c": ""})]
    assert d.parse("a b") == [(None, {"a": "a", "c": "b"})]


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


SEED_REGEXP = ('expression /^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \\[(?<time>[^\\]]*)\\] "(?<method>\\S+)'
               '(?: +(?<path>[^ ]*) +\\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\\"]*)" '
               '"(?<agent>[^\\"]*)" "(?<forwarder>[^\\"]*)")?/\ntime_format %d/%b/%Y:%H:%M:%S %z')
SEED_LINES = [
    '10.0.0.1 - - [10/Jul/2019:08:50:51 +0000] "GET /a HTTP/1.1" 200 3 "-" "curl/8" "-"',
    '10.0.0.2 - bob [10/Jul/2019:08:50:52 +0900] "POST /b HTTP/1.1" 500 0 "http://r/" "Mozilla" "1.2.3.4"',
    '10.0.0.3 - - [10/Jul/2019:08:50:51 +0000] "-" 400 0',          # optional groups unset
    '10.0.0.4 - - [10/Jul/2019:08:50:53 +0000] "GET /c HTTP/1.1" 200 3 "" "" ""',   # set, empty
]


def test_regexp_whole_batch_equals_line_by_line() -> None:
    """A failing line in the batch changes nothing for the others (optional groups unset vs empty)."""
    d = ParserDriver("regexp", SEED_REGEXP)
    batch, failures = d.instance.parse_batch(SEED_LINES)
    assert failures == []
    mixed, mixed_failures = d.instance.parse_batch(SEED_LINES + ["not an access log line"])
    assert [f.kind for f in mixed_failures] == ["unmatched"]
    assert batch == mixed
    assert "path" not in batch[2][1] and "referer" not in batch[2][1]
    assert batch[3][1]["referer"] == "" and "time" not in batch[0][1]
    assert batch[1][0] == 1562716252 * 10**9


def test_regexp_invalid_time_in_a_matched_batch_fails_only_that_line_in_order() -> None:
    d = ParserDriver("regexp", "expression /^(?<time>[^ ]+) (?<msg>.*)$/\ntime_format %Y-%m-%dT%H:%M:%S%z\n"
                               "keep_time_key true")
    events, failures = d.instance.parse_batch(["2019-07-10T08:22:00+0000 a", "yesterday b", "tomorrow c",
                                               "2019-07-10T08:22:00+0000 d"])
    assert [r["msg"] for _, r in events] == ["a", "d"]
    assert events[0] == (T_2019_07_10_082200, {"time": "2019-07-10T08:22:00+0000", "msg": "a"})
    assert [f.text for f in failures] == ["yesterday b", "tomorrow c"]
    assert all(f.kind == "invalid" for f in failures)


def test_regexp_types_apply_to_each_line_of_a_batch() -> None:
    d = ParserDriver("regexp", "expression /^(?<n>\\d+) (?<f>\\S+)$/\ntypes n:integer,f:float")
    assert d.parse("1 2.5", "3 x") == [(None, {"n": 1, "f": 2.5}), (None, {"n": 3, "f": 0.0})]


def test_regexp_keep_time_key_keeps_the_string() -> None:
    d = ParserDriver("regexp", "expression /^(?<time>[^ ]+) (?<msg>.*)$/\ntime_format %Y-%m-%dT%H:%M:%S%z\n"
                               "keep_time_key true")
    assert d.parse("2019-07-10T08:22:00+0000 a") == \
        [(T_2019_07_10_082200, {"time": "2019-07-10T08:22:00+0000", "msg": "a"})]
