"""json formatter: byte-identical to Fluentd's Oj compat output (golden outfile_json_formatter_values)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kawa.plugins.formatters.json import exact_dumps, json_gem_dumps, oj_dumps
from kawa.testing.drivers import FormatterDriver

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden" / "outfile_json_formatter_values"


def _golden_records() -> tuple[list[dict], list[str]]:
    if not GOLDEN.is_dir():
        pytest.skip("../shared/golden/outfile_json_formatter_values is absent")
    records = []
    for line in (GOLDEN / "input" / "in.log").read_text().split("\n"):
        if line:
            rec = json.loads(line)
            ts = datetime.strptime(rec.pop("time"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            rec["tag"] = "outfile.app"
            rec["time"] = ts.strftime("%Y-%m-%dT%H:%M:%S.000000000+0000")
            records.append(rec)
    expected = []
    for path in sorted((GOLDEN / "expected" / "out").glob("app.*.log")):
        expected.extend(line for line in path.read_text().split("\n") if line)
    return records, expected


def test_golden_values_byte_identical() -> None:
    records, expected = _golden_records()
    d = FormatterDriver("json")
    assert [d.format("outfile.app", 0, r) for r in records] == [e + "\n" for e in expected]


@pytest.mark.parametrize("value,text", [
    (1.0, "1.0"), (0.1, "0.1"), (1e21, "1.0e+21"), (1.5e-7, "1.5e-07"), (-0.0, "0.0"), (0.0, "0.0"),
    (1e15, "1000000000000000.0"), (1e16, "10000000000000000.0"), (1e20, "1.0e+20"), (1e-5, "1.0e-05"),
    (2.5e-5, "2.5e-05"), (0.0001, "0.0001"), (123.456, "123.456"), (-3.0, "-3.0"), (9.3e18, "9.3e+18"),
    (2**64, "18446744073709551616"), (-(2**70), "-1180591620717411303424"),
])
def test_number_spellings(value: object, text: str) -> None:
    assert oj_dumps({"v": value}) == '{"v":' + text + "}"
    assert exact_dumps({"v": value}) == '{"v":' + text + "}"


def test_strings_that_look_like_numbers_take_the_exact_path_and_stay_the_same() -> None:
    rec = {"s": "a,1e5", "t": "[0.00001", "u": ":-0.0}"}
    assert oj_dumps(rec) == '{"s":"a,1e5","t":"[0.00001","u":":-0.0}"}'


def test_raw_bytes_kept_as_surrogates_are_written_back_unchanged() -> None:
    text = oj_dumps({"message": "caf\udce9 \x07"})
    assert text.encode("utf-8", "surrogateescape") == b'{"message":"caf\xe9 \\u0007"}'


def test_non_string_keys_and_tuples_and_bytes() -> None:
    assert oj_dumps({1: (1, 2), "b": b"x"}) == '{"1":[1,2],"b":"x"}'


def test_json_gem_spelling_uses_float_to_s() -> None:
    assert json_gem_dumps({"a": 1e16, "b": -0.0}) == '{"a":1.0e+16,"b":-0.0}'
    assert FormatterDriver("json", "json_parser yajl").format("t", 0, {"a": 1e17}) == '{"a":1.0e+17}\n'


def test_add_newline_false() -> None:
    assert FormatterDriver("json", "add_newline false").format("t", 0, {"a": 1}) == '{"a":1}'


def test_fast_path_matches_the_exact_encoder() -> None:
    # Speed is measured in bench/, never asserted here; this pins that the fast (orjson) path
    # writes exactly what the exact Oj-compatible encoder writes for typical access-log records.
    rec = {"remote": "10.0.0.1", "method": "GET", "path": "/api/v1/users?id=1", "code": "200",
           "size": "5120", "referer": "-", "agent": "Mozilla/5.0 (X11; Linux x86_64)", "n": 3, "f": 0.5,
           "tag": "nginx.access", "time": "2019-07-10T08:20:00.000000000+0000", "u": "caf\u00e9 \u2028"}
    events = [(0, rec)] * 100
    d = FormatterDriver("json")
    assert d.instance.format_batch("t", events) == (exact_dumps(rec) + "\n") * 100
