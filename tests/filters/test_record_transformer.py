"""record_transformer: golden rt_placeholders / rt_enable_ruby / rt_renew_time_key, errors, config checks."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import FilterDriver


def _filter_body(case_dir: Path, tag: str) -> str:
    text = (case_dir / "fluent.conf").read_text()
    m = re.search(rf"<filter {re.escape(tag)}>\n(.*?)\n</filter>", text, re.S)
    assert m, f"no <filter {tag}> in {case_dir}"
    return "\n".join(line for line in m.group(1).split("\n") if "@type" not in line)


@pytest.mark.parametrize("case,tag,out", [
    ("rt_placeholders", "app.web.access", "app_web_access"),
    ("rt_enable_ruby", "ruby.app.v2", "ruby_app_v2"),
    ("rt_enable_ruby", "ruby.notypecast.x", "ruby_notypecast_x"),
    ("rt_renew_time_key", "rt.renew_time", "rt_renew_time"),
    ("rt_renew_time_key", "rt.renew_time_from_record", "rt_renew_time_from_record"),
])
def test_golden_output_lines(golden, standard_output, case: str, tag: str, out: str) -> None:
    g = golden(case)
    d = FilterDriver("record_transformer", _filter_body(g.dir, tag))
    d.feed_batch(tag, g.json_events())
    kept = [(t, r) for _, t, r in d.filtered_events]
    got = [line.replace(socket.gethostname(), "@HOSTNAME@")
           for line in standard_output(tag, kept, time_key="fluentd_time", tag_key="fluentd_tag")]
    assert sorted(got) == sorted(g.expected_lines(out))


def test_placeholder_warnings_match_golden(golden) -> None:
    g = golden("rt_placeholders")
    d = FilterDriver("record_transformer", _filter_body(g.dir, "app.web.access"))
    d.feed_batch("app.web.access", g.json_events())
    expected = sorted(line for line in g.log_lines() if "unknown placeholder" in line)
    assert sorted(line for line in d.logs if "unknown placeholder" in line) == expected


def test_ruby_runtime_error_becomes_error_event_and_record_is_dropped(golden) -> None:
    g = golden("rt_enable_ruby")
    d = FilterDriver("record_transformer", _filter_body(g.dir, "ruby.app.v2"))
    events = g.json_events()
    d.feed_batch("ruby.app.v2", events)
    missing_msg = [r["id"] for _, r in events if "msg" not in r]
    assert [r["id"] for _, _, r, _ in d.error_events] == missing_msg
    assert d.error_events[0][3] == ("failed to expand `record[\"msg\"].upcase` : error = undefined method "
                                    "`upcase' for nil:NilClass")


@pytest.mark.parametrize("expr,value", [
    ('record["a"].to_s.gsub(/-/, "_")', "x_y"), ("record['n'].to_f / 4", 0.75), ("record['n'] / 2", 1),
    ('record["a"].split("-").length', 2), ('record["a"].include?("y") && !record["z"].nil?', False),
    ('record["a"].start_with?("x") || false', True), ('ENV["KAWA_RT_TEST"]', "env-value"),
    ('record["h"]["k"][1]', 2), ('record["a"] =~ /y/ ? "has y" : "no"', "has y"),
    ('Time.at(time).to_i + 1', 2), ('record["a"].sub("x", "z").upcase', "Z-Y"), ('tag_suffix[1]', "b"),
])
def test_ruby_expressions(monkeypatch: pytest.MonkeyPatch, expr: str, value: object) -> None:
    monkeypatch.setenv("KAWA_RT_TEST", "env-value")
    d = FilterDriver("record_transformer", f"enable_ruby true\n<record>\nout ${{{expr}}}\n</record>")
    d.feed("a.b", 1_000_000_000, {"a": "x-y", "n": 3, "h": {"k": [1, 2]}})
    assert d.filtered_records[0]["out"] == value


@pytest.mark.parametrize("expr,name", [("system('ls')", "system"), ("record.instance_eval('x')", "instance_eval"),
                                       ("`ls`", "`"), ("File.read('x')", "File")])
def test_unsupported_ruby_is_a_config_error(expr: str, name: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(name)):
        FilterDriver("record_transformer", f"enable_ruby true\n<record>\nout ${{{expr}}}\n</record>")


def test_undefined_name_fails_each_record_like_fluentd() -> None:
    # fluentd's example/v0_12_filter.conf: `name` is no variable of the cleanroom, so Fluentd starts and
    # every record raises NameError (an error event); record['name'] is what works.
    d = FilterDriver("record_transformer", "enable_ruby true\n<record>\nname ${name.downcase}\n</record>")
    d.feed("foo.bar", 1_000_000_000, {"name": "SADA"})
    assert d.filtered_records == []
    assert [e[3] for e in d.error_events] == [
        "failed to expand `name.downcase` : error = undefined local variable or method `name'"]
    d = FilterDriver("record_transformer", "enable_ruby true\n<record>\nname ${record['name'].downcase}\n</record>")
    d.feed("foo.bar", 1_000_000_000, {"name": "SADA"})
    assert d.filtered_records == [{"name": "sada"}]


@pytest.mark.parametrize("expr", ["rand", "self", "sleep 1", "format('%d', 1)"])
def test_kernel_methods_and_keywords_stay_unsupported(expr: str) -> None:
    with pytest.raises(ConfigError):
        FilterDriver("record_transformer", f"enable_ruby true\n<record>\nout ${{{expr}}}\n</record>")


def test_remove_keys_keep_keys_renew_record() -> None:
    d = FilterDriver("record_transformer", "renew_record true\nkeep_keys a,b\n<record>\nc ${tag}\n</record>")
    d.feed("t", {"a": 1, "x": 2})
    assert d.filtered_records == [{"a": 1, "c": "t"}]
    d = FilterDriver("record_transformer", "remove_keys $.k.s,password")
    d.feed("t", {"k": {"s": 1, "t": 2}, "password": "p", "z": 0})
    assert d.filtered_records == [{"k": {"t": 2}, "z": 0}]
    with pytest.raises(ConfigError, match="`renew_record` must be true to use `keep_keys`"):
        FilterDriver("record_transformer", "keep_keys a")
