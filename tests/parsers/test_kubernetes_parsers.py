"""The `kubernetes` and `multiline_kubernetes` parsers of the fluent/fluentd-kubernetes-daemonset images:
glog lines of the node components, the year taken from the clock, expression and time format fixed."""

from __future__ import annotations

import time

from kawa.testing.drivers import ParserDriver

LINE = "I0204 07:32:30.020537    3368 server.go:1048] POST /stats/container/: (13.972191ms) 200"


def _expected_time(month_day: str, clock: str, nanos: int) -> int:
    year = time.localtime().tm_year
    return int(time.mktime(time.strptime(f"{year}{month_day} {clock}", "%Y%m%d %H:%M:%S"))) * 10**9 + nanos


def test_glog_line() -> None:
    [(t, record)] = ParserDriver("kubernetes", "").parse(LINE)
    assert record == {"severity": "I", "pid": "3368", "source": "server.go:1048",
                      "message": "POST /stats/container/: (13.972191ms) 200"}
    assert t == _expected_time("0204", "07:32:30", 20537000)


def test_expression_and_time_format_are_fixed_as_in_the_image() -> None:
    d = ParserDriver("kubernetes", "expression /^(?<whole>.*)$/\ntime_format %s")
    [(_t, record)] = d.parse(LINE)
    assert record["severity"] == "I" and "whole" not in record


def test_lines_that_are_not_glog_do_not_match() -> None:
    d = ParserDriver("kubernetes", "")
    assert d.parse("plain text") == []
    assert d.failures and d.failures[0].text == "plain text"


def test_multiline_kubernetes_joins_what_follows_a_glog_line() -> None:
    d = ParserDriver("multiline_kubernetes", "")
    got = d.parse(LINE, "goroutine 1 [running]:", "main.main()",
                  "W0204 07:32:31.000001 1 a.go:1] next")
    assert [r["message"] for _t, r in got] == [
        "POST /stats/container/: (13.972191ms) 200\ngoroutine 1 [running]:\nmain.main()"]
    assert got[0][1]["severity"] == "I"
