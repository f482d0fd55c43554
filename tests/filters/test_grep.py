"""grep filter: golden cases (sections, and/or, record_accessor), deprecated params, config errors, speed path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kawa.errors import ConfigError
from kawa.event import StrValueEvents
from kawa.testing.drivers import FilterDriver

CASE_CONF = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden"


def _filter_body(case_dir: Path, tag: str) -> str:
    """The body of `<filter TAG>` in the golden fluent.conf (without @type)."""
    text = (case_dir / "fluent.conf").read_text()
    m = re.search(rf"<filter {re.escape(tag)}>\n(.*?)\n</filter>", text, re.S)
    assert m, f"no <filter {tag}> in {case_dir}"
    return "\n".join(line for line in m.group(1).split("\n") if "@type" not in line)


@pytest.mark.parametrize("case,variant", [
    ("grep_sections", "sections"), ("grep_sections", "flags"), ("grep_sections", "missing"),
    ("grep_sections", "types"), ("grep_and_or", "or_and"), ("grep_and_or", "and_or"),
    ("grep_and_or", "mixed"), ("grep_record_accessor", "dot"), ("grep_record_accessor", "bracket"),
    ("grep_record_accessor", "array"), ("grep_record_accessor", "literal"),
])
def test_golden_output_lines(golden, standard_output, case: str, variant: str) -> None:
    g = golden(case)
    tag = f"grep.{variant}"
    d = FilterDriver("grep", _filter_body(g.dir, tag))
    d.feed_batch(tag, g.json_events())
    kept = [(t, r) for _, t, r in d.filtered_events]
    assert standard_output(tag, kept) == g.expected_lines(variant)


def test_record_accessor_type_errors_keep_record_and_warn_like_fluentd(golden) -> None:
    g = golden("grep_record_accessor")
    d = FilterDriver("grep", _filter_body(g.dir, "grep.dot"))
    d.feed_batch("grep.dot", g.json_events())
    warns = [line for line in d.logs if "failed to grep events" in line]
    expected = [line for line in g.log_lines() if "failed to grep events" in line
                and line.startswith("[warn]")]
    # the golden log holds the warnings of all four variants; dot's are those of its records
    assert warns and set(warns) <= set(expected)
    assert warns[0] == '[warn]: #0 failed to grep events error_class=TypeError error="String does not have #dig method"'


def test_top_level_multiple_sections_log_info_lines() -> None:
    d = FilterDriver("grep", "<regexp>\nkey a\npattern /x/\n</regexp>\n<regexp>\nkey b\npattern /y/\n</regexp>\n"
                             "<exclude>\nkey c\npattern /z/\n</exclude>\n<exclude>\nkey d\npattern /w/\n</exclude>")
    assert d.logs == ["[info]: #0 Top level multiple <regexp> is interpreted as 'and' condition",
                      "[info]: #0 Top level multiple <exclude> is interpreted as 'or' condition"]


def test_deprecated_exclude1_reference_pipeline() -> None:
    d = FilterDriver("grep", "exclude1 path /healthcheck")
    assert [str(w.message) for w in d.warnings] == ["'exclude1' parameter is deprecated: Use <exclude> section"]
    events = [(1, {"path": "/healthcheck", "code": 200}), (2, {"path": "/api/v1/users", "code": 200}),
              (3, {"code": 200}), (4, {"path": "/healthcheck?full=1"}), (5, {"path": 42})]
    d.feed_batch("nginx.access", events)
    assert [t for _, t, _ in d.filtered_events] == [2, 3, 5]


def test_grep_passes_a_str_value_events_on_as_one() -> None:
    d = FilterDriver("grep", "exclude1 path /healthcheck")
    events = StrValueEvents([(1, {"path": "/healthcheck"}), (2, {"path": "/api"})])
    kept = d.instance.filter_batch("nginx.access", events)
    assert type(kept) is StrValueEvents and kept == [(2, {"path": "/api"})]
    assert d.instance.keeps_str_values
    assert type(d.instance.filter_batch("nginx.access", [(2, {"path": "/api"})])) is list


def test_deprecated_regexp_n_is_a_raw_pattern_and_ands_with_sections() -> None:
    d = FilterDriver("grep", "regexp1 level ^(ERROR|WARN)$\n<regexp>\nkey svc\npattern /api/\n</regexp>")
    d.feed_batch("t", [(1, {"level": "ERROR", "svc": "api"}), (2, {"level": "ERROR", "svc": "web"}),
                       (3, {"level": "INFO", "svc": "api"}), (4, {"level": "WARN", "svc": "api-2"})])
    assert [t for _, t, _ in d.filtered_events] == [1, 4]


@pytest.mark.parametrize("conf,message", [
    ("regexp1 level", "regexp1 does not contain 2 parameters"),
    ("exclude3 path", "exclude3 does not contain 2 parameters"),
    ("regexp1 a x\nregexp2 a y", "regexp2 contains a duplicated key, a"),
    ("regexp1 a x\n<regexp>\nkey a\npattern /y/\n</regexp>", "Duplicate key: a"),
    ("<and>\n<regexp>\nkey a\npattern /x/\n</regexp>\n<exclude>\nkey b\npattern /x/\n</exclude>\n</and>",
     "Do not specify both <regexp> and <exclude> in <and>"),
    ("<or>\n<regexp>\nkey a\npattern /x/\n</regexp>\n<regexp>\nkey a\npattern /y/\n</regexp>\n</or>",
     "Duplicate key in <or>: a"),
    ("<regexp>\nkey $.\npattern /x/\n</regexp>", "empty keys in dot notation"),
    ("<regexp>\nkey $['a\npattern /x/\n</regexp>", "Incomplete bracket. Invalid syntax: $['a"),
])
def test_config_errors_use_fluentd_messages(conf: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        FilterDriver("grep", conf)
    assert message in str(err.value)


def test_values_are_matched_on_their_ruby_to_s() -> None:
    d = FilterDriver("grep", "<regexp>\nkey v\npattern /^(1\\.0e\\+20|true|\\[1, \"a\"\\]|\\{\"k\"=>nil\\}|)$/\n</regexp>")
    records = [{"v": 1e20}, {"v": True}, {"v": [1, "a"]}, {"v": {"k": None}}, {"v": None}, {}, {"v": 1.5}, {"v": False}]
    d.feed_batch("t", [(i, r) for i, r in enumerate(records)])
    assert [t for _, t, _ in d.filtered_events] == [0, 1, 2, 3, 4, 5]


def test_or_of_excludes_and_and_of_excludes() -> None:
    d = FilterDriver("grep", "<and>\n<exclude>\nkey env\npattern /^dev$/\n</exclude>\n<exclude>\nkey svc\n"
                             "pattern /^test-/\n</exclude>\n</and>")
    d.feed_batch("t", [(1, {"env": "dev", "svc": "test-a"}), (2, {"env": "dev", "svc": "api"}),
                       (3, {"env": "prod", "svc": "test-a"})])
    assert [t for _, t, _ in d.filtered_events] == [2, 3]


def test_invalid_utf8_kept_as_surrogates_is_matched_without_error() -> None:
    d = FilterDriver("grep", "exclude1 message ^bad")
    d.feed_batch("t", [(1, {"message": "bad \udcff byte"}), (2, {"message": "ok \udcff"})])
    assert [t for _, t, _ in d.filtered_events] == [2]


@pytest.mark.parametrize("conf,literal", [
    ("exclude1 path /healthcheck", "/healthcheck"),
    ("<regexp>\nkey path\npattern /a\\.b/\n</regexp>", "a.b"),
    ("<regexp>\nkey path\npattern /a.b/\n</regexp>", None),        # . is any character
    ("<regexp>\nkey path\npattern /health/i\n</regexp>", None),     # case folding
    ("<regexp>\nkey path\npattern /^health/\n</regexp>", None),     # anchored
])
def test_plain_literal_patterns_are_searched_as_text(conf: str, literal: str | None) -> None:
    d = FilterDriver("grep", conf)
    assert d.instance._single[3] == literal


@pytest.mark.parametrize("is_exclude", [True, False])
def test_literal_search_on_values_that_are_not_strings_uses_ruby_to_s(is_exclude: bool) -> None:
    section = "exclude" if is_exclude else "regexp"
    d = FilterDriver("grep", f"<{section}>\nkey v\npattern /1/\n</{section}>")
    records = [{"v": "a1"}, {"v": ["a1"]}, {"v": {"k": 1}}, {"v": 1}, {"v": "b"}, {"v": ["x"]}, {}]
    for i, record in enumerate(records):      # one batch each: no other value may send it the slow way
        d.feed_batch("t", [(i, record), (-1, {"v": "zz"} if is_exclude else {"v": "z1"})])
    matched = [0, 1, 2, 3]        # ["a1"].to_s is '["a1"]', {"k"=>1}.to_s holds 1, 1.to_s is "1"
    expected = [i for i in range(len(records)) if (i in matched) != is_exclude]
    assert [t for _, t, _ in d.filtered_events if t >= 0] == expected
