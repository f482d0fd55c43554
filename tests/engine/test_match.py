"""Tag patterns route exactly as Fluentd's GlobMatchPattern (lib/fluent/match.rb) and its tests.

Also checks every tag of the route_patterns golden case lands in the file Fluentd wrote it to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kawa.engine.match import TagPattern, compile_pattern

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden" / "route_patterns"

# (pattern, tag, matches?) -- the behaviour Fluentd 1.18's test_match.rb pins down
FLUENTD_CASES = [
    ("a", "a", True), ("a.b", "a.b", True), ("a", "b", False), ("a.b", "aab", False),
    ("a*", "a", True), ("a*", "ab", True), ("*a", "cba", True), ("*a*", "bac", True),
    ("a*", "a.b", False), ("a*", "ab.c", False), ("a*", "ba", False), ("*a", "ab", False),
    ("a.*", "a.b", True), ("a.*", "ab", False), ("a.*.c", "a.b.c", True), ("a.*.c", "a.c", False),
    ("a.**", "a", True), ("a.**", "ab", False), ("a.**", "a.b", True), ("a.**", "ab.c", False),
    ("a.**", "ab.d.e", False), ("a.**", "a.b.c.d", True),
    ("a**", "a", True), ("a**", "ab", True), ("a**", "a.b", True), ("a**", "ab.d.e", True),
    ("**.a", "a", True), ("**.a", "ba", False), ("**.a", "c.ba", False), ("**.a", "b.a", True),
    ("**.a", "d.e.a", True), ("**a", "a", True), ("**a", "c.ba", True), ("**a", "d.e.a", True),
    ("a.{b,c}", "a.b", True), ("a.{b,c}", "a.c", True), ("a.{b,c}", "a.d", False),
    ("a.{b,c}.**", "a.b", True), ("a.{b,c}.**", "a.c.x", True), ("a.{b,c}.**", "a.cd", False),
    ("a.{b.**,c}", "a.b", True), ("a.{b.**,c}", "a.b.c", True), ("a.{b.**,c}", "a.c", True),
    ("a.{b.**,c}", "a.c.d", False),
    ("/a/", "a", True), ("/a/", "abc", False), ("/a.*/", "abc", True), ("/b.*/", "abc", False),
    (r"/a\..*/", "a.b.c", True), (r"/(?!a\.).*/", "a.b.c", False), (r"/(?!a\.).*/", "b.b.c", True),
]

# Edge cases where a naive glob translation differs from Fluentd's rules
EDGE_CASES = [
    ("a.**.b", "a.b", True), ("a.**.b", "a.x.y.b", True), ("a.**.b", "ab", False),
    ("a**.b", "ab", False),            # `**.` may be empty only at the start of the tag
    ("a**.b", "ax.b", True),
    ("a.**b", "ab", False),            # after `.**` the `a` must end a part
    ("a.**b", "a.xb", True),
    ("{a,{b,c}}.x", "c.x", True),      # nested braces
    ("{a,{b,c}}.x", "d.x", False),
    ("a.", "a", True),                 # Fluentd drops a trailing dot
    ("a\\*b", "a*b", True), ("a\\*b", "axb", False),
    ("a?", "a?", True), ("a?", "ab", False),   # `?` is a literal in Fluentd 1.x
    ("a,b", "a,b", True), ("a}", "a}", True),
    ("{a,b", "b", True),               # unclosed brace: alternatives become literals
    ("{a*,b", "ax", False),
    ("App.Web", "app.web", False),     # case-sensitive
    ("**", "", True), ("*", "a.b", False),
]


@pytest.mark.parametrize(("pattern", "tag", "expected"), FLUENTD_CASES + EDGE_CASES)
def test_glob_rules(pattern: str, tag: str, expected: bool) -> None:
    assert TagPattern(pattern).match(tag) is expected


@pytest.mark.parametrize(("pattern", "tag", "expected"), [
    ("a.b a.c", "a.c", True), ("a.b a.c", "a.d", False),
    ("a.b.** a.c.**", "a.b", True), ("a.b.** a.c.**", "a.cd", False),
    ("a.b.** a.c", "a.b.c", True), ("a.b.** a.c", "a.c.d", False),
    ("a.b\t  a.c", "a.c", True),       # any whitespace separates patterns
])
def test_several_patterns_in_one_match(pattern: str, tag: str, expected: bool) -> None:
    assert TagPattern(pattern).match(tag) is expected


def test_empty_pattern_matches_everything() -> None:
    assert TagPattern("").match("any.tag.at.all")


def test_regex_pattern_must_be_closed() -> None:
    with pytest.raises(ValueError, match="invalid match - regex"):
        TagPattern("/abc")


def test_compile_pattern_is_cached() -> None:
    assert compile_pattern("x.**") is compile_pattern("x.**")


def _golden_routes() -> dict[str, str]:
    """orig_tag -> output file name (without date) in the golden case."""
    out: dict[str, str] = {}
    for path in sorted((GOLDEN / "expected" / "out").glob("*.20190710.log")):
        for line in path.read_text().splitlines():
            out[json.loads(line)["orig_tag"]] = path.name.split(".")[0]
    return out


def test_golden_route_patterns_first_match_wins() -> None:
    if not GOLDEN.is_dir():
        pytest.skip("shared/golden/route_patterns not available")
    # the <match> directives of the golden fluent.conf, in order, with their out/ file name
    matches = [("app.web", "exact"), ("**.access", "suffix"), ("app.*", "star"), ("app.**", "dstar"),
               ("{db,cache}.** metrics", "brace_multi"), ("sys.*", "sys"), ("**", "rest")]
    expected = _golden_routes()
    assert len(expected) == 18
    for tag, file in expected.items():
        routed = next(name for pattern, name in matches if TagPattern(pattern).match(tag))
        assert routed == file, tag
