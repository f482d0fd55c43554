"""json / ltsv / csv / tsv / none parsers against Fluentd golden outputs, plus edge cases."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from golden_cases import actual_events, actual_failures, expected_events, expected_failures, input_lines

from kawa.testing.drivers import ParserDriver


def _fix_neg_zero(r: dict) -> dict:
    # Oj prints -0.0 as 0.0: a formatter matter, the parsed value is -0.0 as in Ruby.
    return {k: (0.0 if v == 0.0 and isinstance(v, float) else v) for k, v in r.items()}


def _golden(case: str, type_name: str, conf: str, file: str = "input.log", prefix: str = "",
            tag: str | None = None, fix=None) -> None:
    d = ParserDriver(type_name, conf)
    events, failures = d.instance.parse_batch(input_lines(case, file))
    assert actual_events(events, fix) == expected_events(case, prefix=prefix, tag=tag)
    assert actual_failures(failures) == expected_failures(case, file if tag else None)


def test_json_default_golden() -> None:
    _golden("parse_json_default", "json", "", fix=_fix_neg_zero)


def test_ltsv_golden() -> None:
    _golden("parse_ltsv", "ltsv", 'time_format "[%d/%b/%Y:%H:%M:%S %z]"')


def test_csv_golden() -> None:
    _golden("parse_csv", "csv", 'keys time,host,method,path,code,agent\ntime_key time\n'
                                'time_format "%Y-%m-%d %H:%M:%S"')


def test_none_golden_records() -> None:
    d = ParserDriver("none", "")
    events, failures = d.instance.parse_batch(input_lines("parse_none"))
    assert failures == [] and all(t is None for t, _ in events)
    assert actual_events(events) == expected_events("parse_none")


def test_time_unixtime_and_float_golden() -> None:
    for kind in ("unixtime", "float"):
        d = ParserDriver("json", f"time_key t\ntime_type {kind}")
        events, failures = d.instance.parse_batch(input_lines("time_unixtime_float", f"{kind}.log"))
        exp = expected_events("time_unixtime_float", prefix=f"time_{kind}", tag=f"time.{kind}")
        # Fluentd's out_file wraps seconds outside 32 bits (msgpack EventTime 'NN'): not a parser matter,
        # so the two values beyond 2^31 are compared as Fluentd parsed them.
        wrapped = {r["i"]: t for t, r in events if not (-2**31 <= t // 10**9 < 2**31)}
        assert wrapped and set(wrapped) == {15, 17} or set(wrapped) == {15}
        assert [r for r in exp if '"i": 15,' not in r[0] and '"i": 17,' not in r[0]] == \
            [r for r in actual_events(events) if '"i": 15,' not in r[0] and '"i": 17,' not in r[0]]
        assert actual_failures(failures) == expected_failures("time_unixtime_float", f"{kind}.log")


def test_time_format_fallbacks_golden() -> None:
    fallbacks = "time_format %Y-%m-%dT%H:%M:%S%z\ntime_format_fallbacks %d/%b/%Y:%H:%M:%S %z, %iso8601, unixtime"
    _golden("time_format_fallbacks", "json", f"time_key t\ntime_type mixed\n{fallbacks}", "mixed.log",
            "fb_mixed", "fb.mixed")
    _golden("time_format_fallbacks", "json", f"time_key t\n{fallbacks}", "string.log", "fb_string", "fb.string")


def test_time_localtime_timezone_golden() -> None:
    base = 'time_key t\ntime_format "%Y-%m-%d %H:%M:%S'
    for name, extra in [("default", ""), ("localtime_false", "localtime false"), ("utc", "utc true"),
                        ("plus9", "timezone +09:00"), ("tokyo", "timezone Asia/Tokyo"),
                        ("newyork", "timezone America/New_York")]:
        _golden("time_localtime_timezone", "json", f'{base}"\n{extra}', f"{name}.log", "tz_", f"tz.{name}")
    _golden("time_localtime_timezone", "json", f'{base} %z"\ntimezone +09:00', "withz.log", "tz_", "tz.withz")


def test_json_edge_cases_never_raise() -> None:
    d = ParserDriver("json", "")
    events, failures = d.instance.parse_batch(["NaN", '{"a":NaN}', '{"a":Infinity}', "[", "\udcff", "",
                                               '{"a":1e999}', "[[]]"])
    assert len(failures) == 8 - 1 and len(events) == 1   # 1e999 parses (Infinity float), like Oj
    d = ParserDriver("json", "time_key t\nkeep_time_key true")
    assert d.parse('{"t":1.5,"x":1}') == [(1_500_000_000, {"t": 1.5, "x": 1})]


def test_json_estimate_current_event_false_leaves_time_none() -> None:
    d = ParserDriver("json", "estimate_current_event false")
    assert d.parse('{"a":1}') == [(None, {"a": 1})]
    assert d.instance.estimate_current_event is False


def test_tsv_ruby_split_semantics() -> None:
    d = ParserDriver("tsv", "keys a,b,c")
    assert d.parse("1\t2\t3\t4") == [(None, {"a": "1", "b": "2", "c": "3\t4"})]
    assert d.parse("1\t\t") == [(None, {"a": "1", "b": "", "c": ""})]
    assert d.parse("") == [(None, {"a": None, "b": None, "c": None})]


def test_csv_fast_engine_matches_fluentd() -> None:
    d = ParserDriver("csv", "keys a,b,c\nparser_engine fast")
    assert d.parse('x,"y,z",') == [(None, {"a": "x", "b": "y,z", "c": None})]
    assert d.parse('"he said ""hi""",2,3') == [(None, {"a": 'he said "hi"', "b": "2", "c": "3"})]


def test_ltsv_custom_delimiters() -> None:
    d = ParserDriver("ltsv", 'delimiter_pattern / +/\nlabel_delimiter =')
    assert d.parse("a=1   b=2=3 junk") == [(None, {"a": "1", "b": "2=3"})]
