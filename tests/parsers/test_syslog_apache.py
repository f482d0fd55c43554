"""syslog (rfc3164 / rfc5424 / auto) and apache parsers against Fluentd golden outputs + real lines."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from golden_cases import actual_events, actual_failures, expected_events, expected_failures, input_lines

from kawa.testing.drivers import ParserDriver

# RFC 3164 has no year: Fluentd (and kawa) use the current one. The goldens were made in 2026.
GOLDEN_YEAR = "2026-"


def _this_year(rows: list) -> list:
    year = time.strftime("%Y-", time.gmtime())
    return sorted(((r, t.replace(GOLDEN_YEAR, year, 1) if t and t.startswith(GOLDEN_YEAR) else t) for r, t in rows),
                  key=lambda row: (row[1] or "", row[0]))


def _golden(case: str, type_name: str, conf: str) -> None:
    d = ParserDriver(type_name, conf)
    events, failures = d.instance.parse_batch(input_lines(case))
    assert actual_events(events) == _this_year(expected_events(case))
    assert actual_failures(failures) == expected_failures(case)


def test_syslog_rfc3164_pri_golden() -> None:
    _golden("parse_syslog_rfc3164_pri", "syslog", "with_priority true")


def test_syslog_rfc5424_golden() -> None:
    _golden("parse_syslog_rfc5424", "syslog", "message_format rfc5424\nwith_priority true")


def test_syslog_auto_golden() -> None:
    _golden("parse_syslog_auto", "syslog", "message_format auto\nwith_priority true")


def test_apache2_golden() -> None:
    _golden("parse_apache2", "apache2", "")


def test_syslog_rfc3164_without_priority_real_lines() -> None:
    d = ParserDriver("syslog", "")
    [(t, rec)] = d.parse("Feb  5 17:32:18 ubuntu-host systemd[1]: Started Session 12 of user alice.")
    assert rec == {"host": "ubuntu-host", "ident": "systemd", "pid": "1",
                   "message": "Started Session 12 of user alice."}
    assert time.strftime("%m-%d %H:%M:%S", time.gmtime(t // 10**9)) == "02-05 17:32:18"
    d.parse("short")
    assert d.failures[0].kind == "invalid"


def test_syslog_keep_time_key() -> None:
    d = ParserDriver("syslog", "message_format rfc5424\nkeep_time_key true")
    # without with_priority the line starts at the timestamp (no "<pri>1 " header)
    [(t, rec)] = d.parse("2019-07-10T08:20:09.003Z host app 12 ID - hi")
    assert rec["time"] == "2019-07-10T08:20:09.003Z" and rec["message"] == "hi"
    assert t == 1562746809_003_000_000


def test_apache_error_real_line() -> None:
    d = ParserDriver("apache_error", "")
    line = "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/home"
    assert d.parse(line) == [(971274772 * 10**9, {"level": "error", "client": "127.0.0.1",
                                                  "message": "client denied by server configuration: /export/home"})]


def test_apache_regexp_parser_real_line() -> None:
    d = ParserDriver("apache", "")
    line = '192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0"'
    assert d.parse(line) == [(1362020400 * 10**9, {"host": "192.168.0.1", "user": "-", "method": "GET",
                                                   "path": "/", "code": "200", "size": "777", "referer": "-",
                                                   "agent": "Opera/12.0"})]
