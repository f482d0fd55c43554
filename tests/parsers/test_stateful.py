"""msgpack (golden), and the line-joining parsers multiline / cri / docker with their stream state."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from golden_cases import actual_events, case_dir, expected_events

from kawa.testing.drivers import ParserDriver


def test_msgpack_golden_fed_in_two_pieces() -> None:
    d = ParserDriver("msgpack", "time_key t\ntime_type float")   # in_exec's parse default: float
    data = (case_dir("parse_msgpack") / "input" / "input.msgpack").read_bytes()
    e1, f1 = d.instance.parse_bytes(data[:37])
    e2, f2 = d.instance.parse_bytes(data[37:])
    fix = lambda r: {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in r.items()}  # noqa: E731
    got = actual_events(e1 + e2, fix)
    exp = expected_events("parse_msgpack")
    # the binary value is rendered by the JSON formatter (invalid UTF-8 -> U+FFFD); compare the rest exactly
    assert [r for r in got if "binary value" not in r[0]] == [r for r in exp if "binary value" not in r[0]]
    assert [f.reason for f in f1 + f2] == ["pattern not matched"]


JAVA_TRACE = [
    "2019-07-10 08:20:09 ERROR boom",
    "java.lang.IllegalStateException: bad",
    "\tat com.example.App.main(App.java:10)",
    "2019-07-10 08:20:10 INFO ok",
]
MULTILINE_CONF = """
format_firstline /^\\d{4}-\\d{2}-\\d{2}/
format1 /^(?<time>\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}) (?<level>\\w+) (?<message>.*)/
time_format %Y-%m-%d %H:%M:%S
"""


def test_multiline_firstline_joins_and_flushes_per_stream() -> None:
    p = ParserDriver("multiline", MULTILINE_CONF).instance
    events, failures = p.parse_batch(["orphan line"] + JAVA_TRACE[:2], stream="a.log")
    assert events == [] and [f.kind for f in failures] == ["incomplete"]
    events, _ = p.parse_batch(JAVA_TRACE[2:], stream="a.log")
    assert events == [(1562746809 * 10**9, {"level": "ERROR", "message":
                       "boom\njava.lang.IllegalStateException: bad\n\tat com.example.App.main(App.java:10)"})]
    assert p.pending_streams() == ["a.log"]
    events, _ = p.flush_pending("a.log")
    assert events == [(1562746810 * 10**9, {"level": "INFO", "message": "ok"})]
    assert p.pending_streams() == []


def test_multiline_streams_do_not_mix() -> None:
    p = ParserDriver("multiline", MULTILINE_CONF).instance
    p.parse_batch(JAVA_TRACE[:1], stream=1)
    p.parse_batch(JAVA_TRACE[3:], stream=2)
    p.parse_batch(JAVA_TRACE[1:2], stream=1)
    e1, _ = p.flush_pending(1)
    assert e1[0][1]["message"] == "boom\njava.lang.IllegalStateException: bad"


def test_cri_partial_lines_are_joined() -> None:
    p = ParserDriver("cri", "").instance
    lines = [
        "2023-05-01T10:00:00.123456789Z stdout P first half ",
        "2023-05-01T10:00:00.223456789Z stderr F an error line",
        "2023-05-01T10:00:00.323456789Z stdout F second half",
        "not a cri line",
    ]
    events, failures = p.parse_batch(lines, stream="pod.log")
    assert events == [
        (1682935200_223456789, {"stream": "stderr", "logtag": "F", "message": "an error line"}),
        (1682935200_123456789, {"stream": "stdout", "logtag": "F", "message": "first half second half"}),
    ]
    assert [f.reason for f in failures] == ["pattern not matched"]
    p.parse_batch(["2023-05-01T10:00:01.000000000+00:00 stdout P dangling"], stream="pod.log")
    assert p.flush_pending("pod.log")[0] == [(1682935201 * 10**9, {"stream": "stdout", "logtag": "P",
                                                                  "message": "dangling"})]


def test_docker_json_file_partials_are_joined() -> None:
    p = ParserDriver("docker", "").instance
    lines = [
        '{"log":"part one, ","stream":"stdout","time":"2019-07-10T08:20:09.000000001Z"}',
        '{"log":"err\\n","stream":"stderr","time":"2019-07-10T08:20:09.5Z"}',
        '{"log":"part two\\n","stream":"stdout","time":"2019-07-10T08:20:09.000000002Z"}',
        "{broken",
    ]
    events, failures = p.parse_batch(lines, stream="c1")
    assert events == [(1562746809_500000000, {"log": "err\n", "stream": "stderr"}),
                      (1562746809_000000001, {"log": "part one, part two\n", "stream": "stdout"})]
    assert len(failures) == 1
