"""out_file and single_value formatters."""

from __future__ import annotations

from kawa.testing.drivers import FormatterDriver

T = 1562746800 * 10**9


def test_out_file_default_line() -> None:
    d = FormatterDriver("out_file", "utc true")
    assert d.format("app", T, {"a": 1, "f": 1e16}) == '2019-07-10T08:20:00Z\tapp\t{"a":1,"f":1.0e+16}\n'


def test_out_file_delimiter_keywords_and_switches() -> None:
    d = FormatterDriver("out_file", "delimiter COMMA\noutput_time false\nnewline crlf")
    assert d.format("app", T, {"a": "x"}) == 'app,{"a":"x"}\r\n'
    assert FormatterDriver("out_file", "delimiter |\noutput_tag false\ntime_type unixtime").format(
        "app", T, {}) == "1562746800\t{}\n"


def test_single_value() -> None:
    d = FormatterDriver("single_value", "")
    assert d.format("t", 0, {"message": "hello"}) == "hello\n"
    assert d.format("t", 0, {}) == "\n"
    assert FormatterDriver("single_value", "message_key n\nadd_newline false").format("t", 0, {"n": 1.0}) == "1.0"
