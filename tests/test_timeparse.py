"""Unit, property and golden tests for kawa.timeparse (Fluentd/Ruby time semantics).
Golden cases read /work/shared/golden (skipped when absent) and must match Fluentd's outputs exactly."""

from __future__ import annotations

import calendar
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings, strategies as st

from kawa.timeformat import TimeFormatter
from kawa.timeparse import (
    NS, TimeParseError, TimeParser, civil_from_days, days_from_civil, resolve_timezone,
)

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"
INJECT = "%Y-%m-%dT%H:%M:%S.%N%z"


@pytest.fixture(autouse=True)
def _tz_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the golden cases ran with TZ=UTC; localtime-dependent results need the same zone
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def utc(*a: int) -> int:
    return calendar.timegm(datetime(*a, tzinfo=timezone.utc).timetuple()) * NS


# ------------------------------------------------------------------ calendar

@given(st.integers(min_value=-1_000_000, max_value=3_000_000))
def test_civil_roundtrip(days: int) -> None:
    y, m, d = civil_from_days(days)
    assert days_from_civil(y, m, d) == days
    if 1 <= y <= 9999:
        assert (datetime(y, m, d) - datetime(1970, 1, 1)).days == days


# ------------------------------------------------------------------ strptime gem path

def test_nginx_format() -> None:
    p = TimeParser("%d/%b/%Y:%H:%M:%S %z")
    assert p.parse("10/Jul/2019:08:20:10 +0000") == utc(2019, 7, 10, 8, 20, 10)
    assert p.parse("10/Jul/2019:08:20:18 -0700") == utc(2019, 7, 10, 15, 20, 18)
    assert p.parse("10/Jul/2019:14:22:02 +0530") == utc(2019, 7, 10, 8, 52, 2)
    assert p.parse("10/jul/2019:08:20:10 +0000") == utc(2019, 7, 10, 8, 20, 10)  # names are case-insensitive
    assert p.parse("10/July/2019:08:20:10 +0000") == utc(2019, 7, 10, 8, 20, 10)


def test_day_overflow_normalizes_like_ruby() -> None:
    # strptime gem checks 1..31 only; timegm then rolls Feb 31 into March
    p = TimeParser("%d/%b/%Y:%H:%M:%S %z")
    assert p.parse("31/Feb/2019:10:00:00 +0000") == utc(2019, 3, 3, 10)
    assert p.parse("31/Feb/2020:10:00:00 +0000") == utc(2020, 3, 2, 10)


@pytest.mark.parametrize("value", ["10/Foo/2019:10:00:00 +0000", "", "32/Jul/2019:10:00:00 +0000",
                                   "10/Jul/2019:24:00:00 +0000", "10/Jul/2019:08:60:00 +0000",
                                   "10/Jul/2019:08:00:00"])
def test_gem_rejects(value: str) -> None:
    with pytest.raises(TimeParseError) as ei:
        TimeParser("%d/%b/%Y:%H:%M:%S %z").parse(value)
    assert str(ei.value) == (f"invalid time format: value = {value}, error_class = ArgumentError, "
                             "error = string doesn't match")


def test_trailing_text_is_ignored() -> None:
    p = TimeParser("%Y-%m-%d %H:%M:%S")
    assert p.parse("2019-07-10 08:20:09 +0200") == utc(2019, 7, 10, 8, 20, 9)


def test_z_forms() -> None:
    p = TimeParser("%Y-%m-%dT%H:%M:%S%z")
    assert p.parse("2019-07-10T08:20:17Z") == utc(2019, 7, 10, 8, 20, 17)
    assert p.parse("2019-07-10T08:20:17+09:00") == utc(2019, 7, 9, 23, 20, 17)
    assert p.parse("2019-07-10T08:20:17+09") == utc(2019, 7, 9, 23, 20, 17)
    assert p.parse("2019-07-10T08:20:17-0130") == utc(2019, 7, 10, 9, 50, 17)


def test_fraction_and_cache() -> None:
    p = TimeParser("%Y-%m-%dT%H:%M:%S.%N%z")
    base = utc(2019, 7, 10, 8, 20, 9)
    assert p.parse("2019-07-10T08:20:09.5+0000") == base + 500_000_000
    assert p.parse("2019-07-10T08:20:09.000000001+0000") == base + 1
    assert p.parse("2019-07-10T08:20:09.123456789+0000") == base + 123_456_789
    assert p.parse("2019-07-10T08:20:09.123456789+0100") == base + 123_456_789 - 3600 * NS


def test_non_string_in_string_mode() -> None:
    with pytest.raises(TimeParseError, match="^value must be string: 1562746813$"):
        TimeParser("%Y").parse(1562746813)


def test_whitespace_in_format_matches_any_run() -> None:
    p = TimeParser("%b %d %H:%M:%S %Y")
    assert p.parse("Jul  1 08:00:00 2019") == utc(2019, 7, 1, 8)
    assert p.parse("Jul 1 08:00:00\t2019") == utc(2019, 7, 1, 8)


def test_year_less_format_uses_current_year() -> None:
    p = TimeParser("%b %d %H:%M:%S")
    now = datetime.now(timezone.utc)
    got = p.parse("Jan 02 03:04:05")
    assert got == utc(now.year, 1, 2, 3, 4, 5)


# ------------------------------------------------------------------ Ruby Time.strptime path

def test_ruby_path_directives() -> None:
    assert TimeParser("%F %T").parse("2019-07-10 08:20:09") == utc(2019, 7, 10, 8, 20, 9)
    assert TimeParser("%Y-%m-%dT%H:%M:%S.%L%:z").parse("2019-07-10T08:20:09.123+02:00") == \
        utc(2019, 7, 10, 6, 20, 9) + 123_000_000
    assert TimeParser("%s").parse("1562746809") == 1562746809 * NS
    assert TimeParser("%d/%m/%Y %I:%M %p").parse("10/07/2019 08:20 PM") == utc(2019, 7, 10, 20, 20)
    assert TimeParser("%d/%m/%Y %I:%M %p").parse("10/07/2019 12:20 am") == utc(2019, 7, 10, 0, 20)
    assert TimeParser("%Y %j").parse("2019 191") == utc(2019, 7, 10)
    assert TimeParser("%a, %d %b %Y %H:%M:%S %Z").parse("Wed, 10 Jul 2019 08:20:09 GMT") == \
        utc(2019, 7, 10, 8, 20, 9)
    assert TimeParser("%Y%%%m").parse("2019%07") == utc(2019, 7, 1)


def test_ruby_path_error_message() -> None:
    with pytest.raises(TimeParseError) as ei:
        TimeParser("%F %T").parse("nope")
    assert "error = invalid date or strptime format - `nope' `%F %T'" in str(ei.value)


def test_unsupported_directive_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="%U"):
        TimeParser("%Y %U")


# ------------------------------------------------------------------ zones

def test_zones() -> None:
    fmt = "%Y-%m-%d %H:%M:%S"
    v = "2019-07-10 08:20:09"
    assert TimeParser(fmt).parse(v) == utc(2019, 7, 10, 8, 20, 9)
    assert TimeParser(fmt, timezone="+09:00").parse(v) == utc(2019, 7, 9, 23, 20, 9)
    assert TimeParser(fmt, timezone="-0700").parse(v) == utc(2019, 7, 10, 15, 20, 9)
    assert TimeParser(fmt, timezone="Asia/Tokyo").parse(v) == utc(2019, 7, 9, 23, 20, 9)
    # DST gap and overlap: Fluentd looks the offset up at the wall clock read as a UTC instant
    ny = TimeParser(fmt, timezone="America/New_York")
    assert ny.parse("2019-03-10 02:30:00") == utc(2019, 3, 10, 7, 30)
    assert ny.parse("2019-11-03 01:30:00") == utc(2019, 11, 3, 5, 30)
    # the offset in a %z format wins over timezone
    assert TimeParser(fmt + " %z", timezone="+09:00").parse(v + " +0200") == utc(2019, 7, 10, 6, 20, 9)


def test_local_tz_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    assert TimeParser("%Y-%m-%d %H:%M:%S").parse("2019-07-10 09:00:00") == utc(2019, 7, 10)
    assert TimeParser("%Y-%m-%d %H:%M:%S", localtime=False).parse("2019-07-10 09:00:00") == utc(2019, 7, 10, 9)
    assert TimeFormatter("%H:%M %z").format(utc(2019, 7, 10)) == "09:00 +0900"


@pytest.mark.parametrize("tz", ["JST", "UTC", "+9", "Mars/Olympus", "+09:00:00"])
def test_bad_timezones(tz: str) -> None:
    with pytest.raises(ValueError, match="Unsupported timezone"):
        resolve_timezone(tz)


def test_timezone_requires_format() -> None:
    with pytest.raises(ValueError, match="requires time format"):
        TimeParser(None, timezone="+09:00")
    with pytest.raises(ValueError, match="requires time format"):
        TimeParser(None, utc=True)


# ------------------------------------------------------------------ special formats

def test_iso8601() -> None:
    p = TimeParser("%iso8601")
    assert p.parse("2019-07-10T08:20:14.123+02:00") == utc(2019, 7, 10, 6, 20, 14) + 123_000_000
    assert p.parse("2019-07-10T08:20:17Z") == utc(2019, 7, 10, 8, 20, 17)
    assert p.parse("2019-07-10") == utc(2019, 7, 10)
    with pytest.raises(TimeParseError, match='invalid xmlschema format: "2019-07-10 08:20:15"'):
        p.parse("2019-07-10 08:20:15")


def test_no_format_is_time_parse_like() -> None:
    p = TimeParser(None)
    assert p.parse("2019-07-10T08:20:09Z") == utc(2019, 7, 10, 8, 20, 9)
    assert p.parse("2019-07-10 08:20:09.5 +0900") == utc(2019, 7, 9, 23, 20, 9) + NS // 2
    assert p.parse("Wed, 10 Jul 2019 08:20:09 +0000") == utc(2019, 7, 10, 8, 20, 9)
    assert p.parse("10/Jul/2019:08:20:09 +0000") == utc(2019, 7, 10, 8, 20, 9)
    with pytest.raises(TimeParseError, match='no time information in "garbage"'):
        p.parse("garbage")


def test_numeric_types() -> None:
    u = TimeParser(time_type="unixtime")
    f = TimeParser(time_type="float")
    assert u.parse("1562746809.987") == 1562746809 * NS
    assert u.parse(-1562746809.25) == -1562746809 * NS
    assert u.parse("abc") == 0
    assert f.parse("1562746809.5e3") == 1562746809 * NS + 5
    assert f.parse("1562746809.1234567891") == 1562746809 * NS + 1_234_567_891
    assert f.parse(1562746809.123456789) == 1562746809 * NS + 123_456_700
    with pytest.raises(TimeParseError, match=r"^value must be a string or a number: \(NilClass\)$"):
        f.parse(None)
    with pytest.raises(TimeParseError, match=r"^value must be a string or a number: true\(TrueClass\)$"):
        u.parse(True)


def test_mixed() -> None:
    p = TimeParser("%Y-%m-%dT%H:%M:%S%z", time_type="mixed",
                   fallbacks=["%d/%b/%Y:%H:%M:%S %z", "%iso8601", "unixtime"])
    assert p.parse("1562746812.5") == 1562746812 * NS + NS // 2  # "unixtime" fallback keeps fractions
    assert p.parse(1562746813) == 1562746813 * NS
    with pytest.raises(TimeParseError) as ei:
        p.parse("garbage")
    assert str(ei.value) == ("invalid time format: value = garbage, even though fallbacks: "
                             "Fluent::TimeParser,Fluent::TimeParser,Fluent::TimeParser,Fluent::NumericTimeParser")
    with pytest.raises(ValueError):
        TimeParser(None, time_type="mixed")


# ------------------------------------------------------------------ formatter

def test_formatter_gem_and_ruby() -> None:
    t = utc(2019, 7, 10, 8, 20, 9) + 123_456_789
    assert TimeFormatter(INJECT).format(t) == "2019-07-10T08:20:09.123456789+0000"
    assert TimeFormatter(INJECT, timezone="+09:00").format(t) == "2019-07-10T17:20:09.123456789+0900"
    assert TimeFormatter("%Y-%m-%dT%H:%M:%S.%3N%:z", timezone="Asia/Tokyo").format(t) == \
        "2019-07-10T17:20:09.123+09:00"
    assert TimeFormatter("%d/%b/%Y:%H:%M:%S.%L").format(t) == "10/Jul/2019:08:20:09.123"
    assert TimeFormatter("%s %12N %a %A %B %j %-m %e %I%p %Z").format(t) == \
        "1562746809 123456789000 Wed Wednesday July 191 7 10 08AM UTC"
    assert TimeFormatter().format(t) == "2019-07-10T08:20:09+00:00"
    assert TimeFormatter(utc=True).format(t) == "2019-07-10T08:20:09Z"


def test_formatter_gem_year_quirk() -> None:
    # the strftime gem maps 1900-1968 to 2000-2068 and keeps four digits (golden time_unixtime_float)
    assert TimeFormatter(INJECT).format(-1562746809 * NS + 250_000_000) == "2020-06-24T15:39:51.250000000+0000"
    assert TimeFormatter(INJECT).format(1562746809123 * NS) == "1491-06-23T07:52:03.000000000+0000"
    assert TimeFormatter("%Y-%m-%d %H").format(-1562746809 * NS) == "2020-06-24 15"
    assert TimeFormatter("%F").format(-1562746809 * NS) == "1920-06-24"  # Ruby strftime is exact


def test_formatter_numeric() -> None:
    t = 1562746809 * NS + 123_456_789
    assert TimeFormatter(time_type="unixtime").format(t) == 1562746809
    assert TimeFormatter(time_type="float").format(t) == 1562746809.123456
    assert TimeFormatter(time_type="unixtime_millis").format(t) == 1562746809123
    assert TimeFormatter(time_type="unixtime_nanos").format(t) == t


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=utc(2100, 1, 1) - 1),
       st.sampled_from(["+00:00", "+09:00", "-07:00", "+05:30", "Asia/Tokyo", "America/New_York"]))
def test_roundtrip(ns: int, tz: str) -> None:
    f = TimeFormatter(INJECT, timezone=tz)
    assert TimeParser(INJECT).parse(f.format(ns)) == ns


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31)),
       st.sampled_from([("%d/%b/%Y:%H:%M:%S", None), ("%Y-%m-%d %H:%M:%S", None),
                        ("%Y-%m-%dT%H:%M:%S.%N", "%Y-%m-%dT%H:%M:%S.%f"), ("%b %d %Y %H:%M:%S", None),
                        ("%F %T", "%Y-%m-%d %H:%M:%S"), ("%d/%m/%y %I:%M:%S %p", None),
                        ("%A %B %d %Y %H:%M:%S.%L", "%A %B %d %Y %H:%M:%S.%f")]))
def test_strptime_matches_datetime(dt: datetime, fmts: tuple[str, str | None]) -> None:
    fmt, py = fmts[0], fmts[1] or fmts[0]
    text = dt.strftime(py)
    want = datetime.strptime(text, py).replace(tzinfo=timezone.utc)
    got = TimeParser(fmt, localtime=False).parse(text)
    if "%L" in fmt:  # %L reads all digits Python printed (microseconds)
        pass
    assert got == int(want.timestamp()) * NS + want.microsecond * 1000


# ------------------------------------------------------------------ golden cases

def _golden(case: str) -> Path:
    d = GOLDEN / case
    if not d.is_dir():
        pytest.skip(f"golden case {case} not available at {d}")
    return d


def _expected_by_i(d: Path, prefix: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for f in sorted((d / "expected" / "out").glob(prefix + ".*.log")):
        for line in filter(None, f.read_text().split("\n")):
            rec = json.loads(line)
            out[rec["i"]] = rec["time"]
    return out


def _check(d: Path, input_name: str, prefix: str, parser: TimeParser) -> None:
    expected = _expected_by_i(d, prefix)
    fmt = TimeFormatter(INJECT)
    for line in filter(None, (d / "input" / input_name).read_text().split("\n")):
        rec = json.loads(line)
        i = rec["i"]
        if i in expected:
            assert fmt.format(parser.parse(rec["t"])) == expected[i], (input_name, rec)
        else:
            with pytest.raises(TimeParseError):
                parser.parse(rec["t"])


def test_golden_time_localtime_timezone() -> None:
    d = _golden("time_localtime_timezone")
    fmt = "%Y-%m-%d %H:%M:%S"
    _check(d, "default.log", "tz_default", TimeParser(fmt))
    _check(d, "localtime_false.log", "tz_localtime_false", TimeParser(fmt, localtime=False))
    _check(d, "utc.log", "tz_utc", TimeParser(fmt, utc=True))
    _check(d, "plus9.log", "tz_plus9", TimeParser(fmt, timezone="+09:00"))
    _check(d, "tokyo.log", "tz_tokyo", TimeParser(fmt, timezone="Asia/Tokyo"))
    _check(d, "newyork.log", "tz_newyork", TimeParser(fmt, timezone="America/New_York"))
    _check(d, "withz.log", "tz_withz", TimeParser(fmt + " %z", timezone="+09:00"))


def test_golden_time_format_fallbacks() -> None:
    d = _golden("time_format_fallbacks")
    fb = ["%d/%b/%Y:%H:%M:%S %z", "%iso8601", "unixtime"]
    _check(d, "mixed.log", "fb_mixed", TimeParser("%Y-%m-%dT%H:%M:%S%z", time_type="mixed", fallbacks=fb))
    _check(d, "string.log", "fb_string", TimeParser("%Y-%m-%dT%H:%M:%S%z", fallbacks=fb))
    log = (d / "expected" / "fluentd.log.normalized").read_text()
    p = TimeParser("%Y-%m-%dT%H:%M:%S%z")
    for v in ("garbage", "", "1562746811"):
        with pytest.raises(TimeParseError) as ei:
            p.parse(v)
        assert f'error="{ei.value}"' in log


def test_golden_time_unixtime_float() -> None:
    d = _golden("time_unixtime_float")
    _check(d, "unixtime.log", "time_unixtime", TimeParser(time_type="unixtime"))
    _check(d, "float.log", "time_float", TimeParser(time_type="float"))


def test_golden_parse_json_default() -> None:
    d = _golden("parse_json_default")

    def key(rec: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in rec.items() if k not in ("time", "tag")}, sort_keys=True)

    expected: dict[str, list[str]] = {}
    for f in (d / "expected" / "out").glob("json_default.*.log"):
        for line in filter(None, f.read_text().split("\n")):
            rec = json.loads(line)
            if rec["time"][:4] != "2026":  # events stamped with "now" by Fluentd
                expected.setdefault(key(rec), []).append(rec["time"])
    parser = TimeParser(time_type="float")
    fmt = TimeFormatter(INJECT)
    got: dict[str, list[str]] = {}
    for line in (d / "input" / "input.log").read_text().split("\n"):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        for rec in doc if isinstance(doc, list) else [doc]:
            if not isinstance(rec, dict) or "time" not in rec:
                continue
            k = key(rec).replace("-0.0", "0.0")
            if k in expected:
                got.setdefault(k, []).append(fmt.format(parser.parse(rec["time"])))
            elif rec["time"] is None:
                with pytest.raises(TimeParseError, match=r"\(NilClass\)"):
                    parser.parse(None)
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}


def test_golden_ref_nginx_pipeline() -> None:
    d = _golden("ref_nginx_pipeline")
    from kawa.rubyregex import compile_ruby_regexp
    conf = (d / "fluent.conf").read_text()
    src = conf.split("format /", 1)[1].split("\n", 1)[0].rstrip()
    rx = compile_ruby_regexp(src[:-1])
    p = TimeParser("%d/%b/%Y:%H:%M:%S %z")
    fmt = TimeFormatter(INJECT)
    want = sorted(json.loads(l)["time"] for f in (d / "expected" / "out").glob("access.*.log")
                  for l in filter(None, f.read_text().split("\n")))
    got = []
    for line in (d / "input" / "access.log").read_text(encoding="utf-8").split("\n"):
        m = rx.search(line.rstrip("\r"))
        if not m or "/healthcheck" in (m.group("path") or ""):
            continue
        try:
            got.append(fmt.format(p.parse(m.group("time"))))
        except TimeParseError:
            pass
    assert sorted(got) == want
