"""Tests for kawa.rubyregex: Ruby/Onigmo syntax translated to Python re.
Covers named groups, anchors, shorthand classes, POSIX brackets, inline flags and rejections."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from kawa.rubyregex import compile_ruby_regexp, parse_slash_regexp, translate_ruby_regexp


def test_named_groups_and_backrefs() -> None:
    p = compile_ruby_regexp(r"(?<a>\w+)-(?'b'\d+) \k<a>")
    m = p.search("xy-12 xy")
    assert m and m.group("a") == "xy" and m.group("b") == "12"


def test_lookbehind_untouched() -> None:
    assert translate_ruby_regexp(r"(?<=a)b(?<!c)") == r"(?<=a)b(?<!c)"


def test_escaped_paren_and_class_content_not_groups() -> None:
    assert translate_ruby_regexp(r"\(?<x") == r"\(?<x"
    assert translate_ruby_regexp(r"[(?<]a") == r"[(?<]a"


def test_anchors() -> None:
    assert compile_ruby_regexp(r"a\z").search("a\n") is None
    assert compile_ruby_regexp(r"a\Z").search("a\n")
    assert compile_ruby_regexp(r"a\Z").search("a\nb") is None
    assert compile_ruby_regexp(r"\Aa").search("b\na") is None
    # ^ and $ are line anchors in Ruby
    assert compile_ruby_regexp(r"^b$").search("a\nb\nc")


def test_shorthands_are_ascii() -> None:
    assert compile_ruby_regexp(r"^\d$").search("٣") is None
    assert compile_ruby_regexp(r"^\w+$").search("é") is None
    assert compile_ruby_regexp(r"^\h+$").search("DeadBeef")
    assert compile_ruby_regexp(r"^\H$").search("g")
    assert compile_ruby_regexp(r"^[\h-]+$").search("ab-12")


def test_posix_brackets() -> None:
    assert compile_ruby_regexp(r"^[[:alpha:]]+$").search("abcXYZ")
    assert compile_ruby_regexp(r"^[[:digit:][:space:]]+$").search("1 2\t3")
    assert compile_ruby_regexp(r"^[[:^digit:]]+$").search("abc")
    assert compile_ruby_regexp(r"^[[:punct:]]+$").search("!-/[]{}~")


def test_flags() -> None:
    assert compile_ruby_regexp("a.b", "m").search("a\nb")
    assert compile_ruby_regexp("a.b").search("a\nb") is None
    assert compile_ruby_regexp("AB", "i").search("ab")
    assert compile_ruby_regexp("a b # comment (\n c", "x").search("abc")


def test_inline_flags_mid_pattern() -> None:
    p = compile_ruby_regexp("a(?i)b")
    assert p.search("aB") and not p.search("AB")
    p = compile_ruby_regexp("(x(?i)y)Z")
    assert p.search("xYZ") and not p.search("xYz")
    assert compile_ruby_regexp("(?m:a.b)").search("a\nb")


@pytest.mark.parametrize("src, what", [
    (r"a\Kb", r"\K"), (r"(?<n>a)(?<n>b)", "duplicate group name 'n'"), (r"\p{Alpha}", r"\p"),
    (r"[a-z&&[^aeiou]]", "&&"), (r"\g<1>", r"\g"), (r"[a[bc]]", "nested character class"),
])
def test_unsupported(src: str, what: str) -> None:
    with pytest.raises(ValueError, match=re.escape(what)):
        compile_ruby_regexp(src)


def test_parse_slash_regexp() -> None:
    assert parse_slash_regexp("/a\\/b/im") == ("a\\/b", "im")
    assert parse_slash_regexp("/x/") == ("x", "")
    with pytest.raises(ValueError):
        parse_slash_regexp("/x/q")
    with pytest.raises(ValueError):
        parse_slash_regexp("x")


def test_fluentd_nginx_regexp() -> None:
    src = (r'^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)'
           r'(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" '
           r'"(?<agent>[^\"]*)")?$')
    m = compile_ruby_regexp(src).search('1.2.3.4 - - [10/Jul/2019:08:22:26 +0000] "GET /a HTTP/1.1" 200 3 "-" "curl"')
    assert m and m.groupdict()["agent"] == "curl" and m.group("time") == "10/Jul/2019:08:22:26 +0000"


@given(st.text(alphabet="abc.-_ 09", max_size=12))
def test_plain_literals_behave_like_python(s: str) -> None:
    src = re.escape(s)
    assert bool(compile_ruby_regexp(src).search(s))
