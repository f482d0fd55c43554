"""filter_parser: golden cases (json in docker logs, nested regexp, reserve options), error events,
option semantics, and that a batch is parsed with one parse_batch call."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import FakeClock, FilterDriver, ParserDriver

NOW = FakeClock().now
T0 = 1562746800 * 10**9


def _filter_body(case_dir: Path, tag: str) -> str:
    text = (case_dir / "fluent.conf").read_text()
    m = re.search(rf"<filter {re.escape(tag)}>\n(.*?)\n</filter>", text, re.S)
    assert m, f"no <filter {tag}> in {case_dir}"
    return "\n".join(line for line in m.group(1).split("\n") if not line.strip().startswith("@type parser"))


def _tail_events(case_dir: Path, file: str) -> list[tuple[int, dict[str, Any]]]:
    """The input as the golden <source> (json, time_key time, %NZ format) read it, in UTC."""
    d = ParserDriver("json", "time_key time\ntime_format %Y-%m-%dT%H:%M:%S.%NZ\nutc true")
    lines = [line for line in (case_dir / "input" / file).read_text().split("\n") if line]
    events = d.parse(*lines)
    assert not d.failures and len(events) == len(lines)
    return events  # type: ignore[return-value]


def _expected(case_dir: Path, name: str) -> list[str]:
    """Dated files in name order; a file of 'now' events is read in its @NOW@-normalized form."""
    lines: list[str] = []
    for path in sorted((case_dir / "expected" / "out").glob(f"{name}.*.log")):
        normalized = path.with_name(path.name + ".normalized")
        lines.extend(x for x in (normalized if normalized.exists() else path).read_text().split("\n") if x)
    return lines


def _actual(standard_output, tag: str, events: list[tuple[str, int, dict[str, Any]]]) -> list[str]:
    dated = [(t, r) for _, t, r in events if t != NOW]
    now = [(t, r) for _, t, r in events if t == NOW]
    now_lines = [re.sub(r'"time":"[^"]*"}$', '"time":"@NOW@"}', line) for line in standard_output(tag, now)]
    return standard_output(tag, dated) + now_lines


@pytest.mark.parametrize("case,tag,name,file", [
    ("fparser_basic", "fp.default", "fp_default", "docker.log"),
    ("fparser_basic", "fp.noerror", "fp_noerror", "docker.log"),
    ("fparser_reserve", "fpr.reserve", "fpr_reserve", "docker.log"),
    ("fparser_reserve", "fpr.reserve_remove", "fpr_reserve_remove", "docker.log"),
    ("fparser_reserve", "fpr.reserve_time", "fpr_reserve_time", "docker.log"),
    ("fparser_nested_regexp", "k8s.nginx", "nginx", "k8s.log"),
])
def test_golden_output_lines(golden, standard_output, case: str, tag: str, name: str, file: str) -> None:
    g = golden(case)
    d = FilterDriver("parser", _filter_body(g.dir, tag), clock=FakeClock())
    d.feed_batch(tag, _tail_events(g.dir, file))
    assert _actual(standard_output, tag, d.filtered_events) == _expected(g.dir, name)


class ErrorKeeper:
    """An emitter that keeps the error event exceptions themselves (class names are compared too)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, int, dict[str, Any], BaseException | str]] = []

    async def emit(self, tag: str, events: list) -> None:  # type: ignore[type-arg]
        raise AssertionError("a filter does not emit")

    def emit_error_event(self, tag: str, time: int, record: dict[str, Any], error: BaseException | str) -> None:
        self.errors.append((tag, time, record, error))


def _driver(body: str, **kw: Any) -> tuple[FilterDriver, ErrorKeeper]:
    d = FilterDriver("parser", body, clock=FakeClock(), **kw)
    keeper = ErrorKeeper()
    d.instance.ctx.emitter = keeper
    return d, keeper


def _described(keeper: ErrorKeeper) -> list[tuple[str, str, str]]:
    from kawa.engine.router import _ruby_hash, describe_error

    return [(*describe_error(err), str(_ruby_hash(rec))) for _, _, rec, err in keeper.errors]


@pytest.mark.parametrize("case,tag,file", [
    ("fparser_basic", "fp.default", "docker.log"),
    ("fparser_reserve", "fpr.reserve_time", "docker.log"),
    ("fparser_nested_regexp", "k8s.nginx", "k8s.log"),
])
def test_golden_error_events(golden, case: str, tag: str, file: str) -> None:
    """Same error class, message and record as Fluentd's `dump an error event` lines."""
    g = golden(case)
    d, keeper = _driver(_filter_body(g.dir, tag))
    d.feed_batch(tag, _tail_events(g.dir, file))
    theirs = []
    for line in g.log_lines():
        m = re.match(r'\[warn\]: #0 dump an error event: error_class=(\S+) error="(.*)" location=.* '
                     r'tag="([^"]+)" time=.* record=(.*)$', line)
        if m and m.group(3) == tag:
            message = m.group(2).replace('\\"', '"').replace("\\n", "\n")
            theirs.append((m.group(1), message, m.group(4)))
    assert theirs and _described(keeper) == theirs


def test_one_parse_batch_call_per_batch() -> None:
    d, keeper = _driver("key_name log\n<parse>\n@type regexp\nexpression /^(?<a>\\w+) (?<b>\\d+)$/\n</parse>")
    calls: list[int] = []
    inner = d.instance.parser.parse_batch
    d.instance.parser.parse_batch = lambda texts: (calls.append(len(texts)), inner(texts))[1]
    d.feed_batch("t", [(T0 + i, {"log": f"x {i}" if i % 3 else "nope"}) for i in range(30)])
    assert calls == [30]
    assert len(d.filtered_records) == 20 and d.filtered_records[0] == {"a": "x", "b": "1"}
    assert len(keeper.errors) == 10
    assert {t for _, t, _ in d.filtered_events} == {NOW}     # no time in the text: estimate_current_event
    d, _ = _driver("key_name log\nreserve_time true\n<parse>\n@type json\n</parse>")
    d.feed_batch("t", [(T0, {"log": '{"time": 5}'}), (T0 + 1, {"log": '{}'})])
    assert [t for _, t, _ in d.filtered_events] == [T0, T0 + 1]


def test_prefix_hash_value_field_and_remove_key() -> None:
    d, _ = _driver("key_name log\nreserve_data true\ninject_key_prefix p_\nhash_value_field parsed\n"
                   "remove_key_name_field true\n<parse>\n@type json\n</parse>")
    d.feed_batch("t", [(T0, {"log": '{"a":1,"time":1.5}', "k": "v"}), (T0, {"log": "bad", "k": "w"})])
    assert d.filtered_events == [
        ("t", 1_500_000_000, {"k": "v", "parsed": {"p_a": 1}}),
        ("t", T0, {"log": "bad", "k": "w", "parsed": {}}),      # failure: key kept, empty hash
    ]


def test_time_errors_drop_the_record_even_with_reserve_data() -> None:
    d, keeper = _driver("key_name log\nreserve_data true\n<parse>\n@type regexp\n"
                        "expression /^(?<time>\\S+) (?<m>.*)$/\ntime_format %Y-%m-%d\n</parse>")
    d.feed_batch("t", [(T0, {"log": "2019-07-10 ok"}), (T0, {"log": "yesterday bad"})])
    assert [r["m"] for r in d.filtered_records] == ["ok"]
    (cls, message, _), = _described(keeper)
    assert cls == "Fluent::Plugin::Parser::ParserError"
    assert message.startswith('invalid time format: value = yesterday')


def test_non_string_values_fail_like_fluentd_parsers() -> None:
    d, keeper = _driver("key_name log\n<parse>\n@type regexp\nexpression /(?<a>.)/\n</parse>")
    d.feed_batch("t", [(T0, {"log": 12}), (T0, {"log": {"x": 1}})])
    assert d.filtered_records == []
    assert [m for _, m, _ in _described(keeper)] == [
        "parse failed no implicit conversion of Integer into String",
        "parse failed no implicit conversion of Hash into String"]
    d, _ = _driver("key_name log\n<parse>\n@type none\n</parse>")
    d.feed("t", T0, {"log": 12})
    assert d.filtered_events == [("t", NOW, {"message": 12})]


def test_invalid_utf8_error_or_scrub() -> None:
    bad = b"caf\xc3 \xff\xfe x".decode("utf-8", "surrogateescape")
    body = "key_name log\n<parse>\n@type regexp\nexpression /^(?<all>.*)$/\n</parse>"
    d, keeper = _driver(body)
    d.feed("t", T0, {"log": bad})
    assert d.filtered_records == [] and _described(keeper)[0][:2] == ("ArgumentError",
                                                                      "invalid byte sequence in UTF-8")
    d, keeper = _driver("replace_invalid_sequence true\n" + body)
    d.feed("t", T0, {"log": bad})
    assert d.filtered_records == [{"all": "caf? ?? x"}] and not keeper.errors


def test_emit_invalid_record_to_error_false_is_silent() -> None:
    d, keeper = _driver("key_name $.a.b\nemit_invalid_record_to_error false\nreserve_data true\n"
                        "<parse>\n@type json\n</parse>")
    d.feed_batch("t", [(T0, {"a": "str"}), (T0, {"a": {}}), (T0, {"a": {"b": "x"}})])
    assert d.filtered_records == [{"a": {}}, {"a": {"b": "x"}}] and not keeper.errors


def test_v012_format_parameter_and_config_errors() -> None:
    d, _ = _driver("key_name log\nformat json")
    d.feed("t", T0, {"log": '{"a":"b"}'})
    assert d.filtered_records == [{"a": "b"}]
    with pytest.raises(ConfigError):
        FilterDriver("parser", "<parse>\n@type json\n</parse>")           # key_name is required
    with pytest.raises(ConfigError):
        FilterDriver("parser", "key_name log")                             # no parser at all
