"""The regexp parser's two speed-ups give exactly what the plain way gives.

- possessive_variant: the pattern it matches with finds the same matches (spans, groups) as the
  configured one, and leaves alone the repeats where giving characters back can matter.
- the whole-batch path of parse_with: the same events as the per-line loop, and it steps aside
  (None) for every batch the loop must handle line by line.
"""

from __future__ import annotations

import re

import pytest

from kawa.event import StrValueEvents
from kawa.plugins.parsers._possessive import possessive_variant
from kawa.plugins.parsers.regexp import (_parse_whole_batch, optional_groups, parse_each, record_builder,
                                         unset_witnesses)
from kawa.rubyregex import compile_ruby_regexp
from kawa.testing import nginx_log
from kawa.testing.drivers import ParserDriver

SEED = (r'^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)'
        r'(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" '
        r'"(?<agent>[^\"]*)" "(?<forwarder>[^\"]*)")?')

TEXTS = [
    *nginx_log.lines(40, seed=3),
    '1.2.3.4 - - [10/Oct/2020:13:55:36 +0000] "GET" 200 5',                 # no path: optional part unset
    '1.2.3.4 - - [10/Oct/2020:13:55:36 +0000] "GET /a"b HTTP/1.1" 200 5 "-" "x" "-"',
    '1.2.3.4 - - [10/Oct/2020:13:55:36 +0000] "GET"" 200 5',                 # \S+ must give a quote back
    '1.2.3.4  - [] "" 200 5',
    "", " ", '"', "a b c", "x" * 300,
    '"abc"', '"a"b"', 'key=value other=thing', "[x] [y]", "aaa:bbb", "tab\there",
]


@pytest.mark.parametrize("source", [
    SEED,
    r'^"(?<m>\S*)"',                        # \S takes the quote: must not become possessive
    r'(?<a>[^ ]*) (?<b>.*)',
    r'^(?<k>[a-z]*)=(?<v>[^ ]*)(?: (?<rest>.*))?$',
    r'(?<x>[^\]]*)\]',                      # unanchored: searched at every position
    r'^(?<a>a*)a(?<b>b*)',                  # a* before a literal it matches: must give one back
    r'^(?:(?<w>[^ ]*) )+(?<last>\w+)',      # a repeated group: what follows its body is unknown
    r'^(?<a>[^:]*):(?<b>[^:]+|x)(?<c>[0-9]{0,3})',
    r'\[(?<p>[^\]]{0,2})\]',                # a bounded repeat
    r'^(?<t>[^\t]*)\t(?<u>[^\t]*)$',
])
def test_possessive_variant_finds_the_same_matches(source: str) -> None:
    pattern = compile_ruby_regexp(source)
    variant, _changed = possessive_variant(pattern)
    for search in (False, True):
        for text in TEXTS:
            want = (pattern.search if search else pattern.match)(text)
            got = (variant.search if search else variant.match)(text)
            assert (want is None) == (got is None), (source, text)
            if want is not None:
                assert got is not None
                assert got.span() == want.span() and got.groupdict() == want.groupdict(), (source, text)


def test_possessive_variant_changes_only_the_safe_repeats() -> None:
    # nine of the seed's [^X]* runs are followed by X; `size` by an optional part (not a certain
    # literal), \S+ / \S* by an optional part or a quote that \S takes
    variant, changed = possessive_variant(compile_ruby_regexp(SEED))
    assert changed == 9
    assert variant is not compile_ruby_regexp(SEED)
    for unsafe in (r'^"(?<m>\S*)"', r'^(?<a>a*)a', r'^(?:(?<w>[^ ]*)x)*y', r'(?<a>[^ ]*)(?<b>.)'):
        pattern = compile_ruby_regexp(unsafe)
        assert possessive_variant(pattern) == (pattern, 0), unsafe
    # case-insensitive: a literal then matches two characters, left as written
    folded = re.compile(r"(?P<a>[^x]*)X", re.IGNORECASE)
    assert possessive_variant(folded) == (folded, 0)


def test_regexp_parser_matches_with_the_variant() -> None:
    parser = ParserDriver("regexp", f"expression /{SEED}/\ntime_format %d/%b/%Y:%H:%M:%S %z").instance
    line = next(iter(nginx_log.lines(1, seed=1)))
    assert parser._match(line).re is not parser.expression      # the possessive pattern matched
    assert parser.expression.pattern.count("*+") == 0               # what kawa shows stays as written


def _parser(extra: str = "", source: str = SEED) -> object:
    return ParserDriver("regexp", f"expression /{source}/\ntime_format %d/%b/%Y:%H:%M:%S %z\n{extra}").instance


@pytest.mark.parametrize("extra,source", [
    ("", SEED),
    ("keep_time_key true", SEED),
    ("types size:integer,code:integer", SEED),
    ("null_value_pattern /^-$/", SEED),
    ("time_key nothing_named_so", SEED),
    ("", r'^(?<remote>[^ ]*) (?<rest>.*)$'),          # no time group at all
])
def test_whole_batch_path_equals_the_per_line_loop(extra: str, source: str) -> None:
    parser = _parser(extra, source)
    texts = [*nginx_log.lines(300, seed=5), '1.2.3.4 - - [10/Oct/2020:13:55:36 +0000] "GET" 200 5']
    loop_events, loop_failures = parse_each(parser, texts, list(map(parser._match, texts)), None, parser._time_group)
    assert not loop_failures
    fresh = _parser(extra, source)      # its own records: the loop above may have converted values
    whole = _parse_whole_batch(fresh, list(map(fresh._match, texts)), None, fresh._time_group)
    assert whole == loop_events
    assert fresh.parse_batch(texts) == (loop_events, [])
    # parse_batch builds records from groups() (record_builder): the same keys in the same order
    # (json output bytes depend on it) as groupdict's, whole batch or line by line
    assert fresh._build is not None
    built = _parser(extra, source)
    by_line, _ = parse_each(built, texts, list(map(built._match, texts)), None, built._time_group, built._build)
    for got in (_parser(extra, source).parse_batch(texts)[0], by_line):
        assert _items(got) == _items(loop_events)
    # a batch of named groups only (no type conversion) promises str values, and keeps it
    converted = "types" in extra or "null_value" in extra
    assert (type(whole) is StrValueEvents) is not converted
    if not converted:
        assert all(type(v) is str for _, record in whole for v in record.values())


def _items(events: list) -> list:
    return [(time, list(record.items())) for time, record in events]


@pytest.mark.parametrize("source", [
    SEED,
    r'^(?<k>[a-z]*)=(?<v>[^ ]*)(?: (?<rest>.*))?$',
    r'^(\w+) (?<b>\w+)(?: (\w+))? (?<a>\w+)?',        # unnamed groups between named ones
    r'(?<x>a)|(?<y>b)|(c)',
    r'^(?:(?<w>[^ ]*) )+(?<last>\w+)',
])
def test_record_builder_gives_groupdict_in_its_key_order(source: str) -> None:
    pattern = compile_ruby_regexp(source)
    for candidate in (pattern, possessive_variant(pattern)[0], possessive_variant(pattern, "b")[0]):
        build = record_builder(candidate)
        assert build is not None
        matched = 0
        for text in [*TEXTS, "ab cd ef gh", "ab cd  gh", "b", "c", "a=b"]:          # a=b: `rest` unset
            m = candidate.search(text)
            if m is not None:
                matched += 1
                assert list(build(*m.groups()).items()) == list(m.groupdict().items()), (source, text)
        assert matched >= 2, source                          # the comparison above did run


def test_record_builder_needs_named_groups() -> None:
    assert record_builder(re.compile(r"(a)(b)")) is None
    assert record_builder(re.compile(r"(?P<n>a)"))("x") == {"n": "x"}


def test_a_batch_with_a_failure_is_a_plain_list() -> None:
    parser = _parser()
    events, failures = parser.parse_batch([*nginx_log.lines(5, seed=2), "not an access log line"])
    assert len(events) == 5 and len(failures) == 1 and type(events) is list


@pytest.mark.parametrize("extra,unnamed", [("", True), ("keep_time_key true", False),
                                           ("time_key nothing_named_so", False)])
def test_the_time_group_is_matched_unnamed_only_when_it_leaves_every_record(extra: str, unnamed: bool) -> None:
    # The events are those of the pattern as written: groupdict, None left out, the time key popped.
    parser = _parser(extra)
    assert (parser._time_group is not None) == unnamed
    texts = [*nginx_log.lines(50, seed=8), '1.2.3.4 - - [10/Oct/2020:13:55:36 +0000] "GET" 200 5',
             '1.2.3.4 - - [] "GET / HTTP/1.1" 200 5']      # an empty time string: a failure, either way
    key = parser.time_key
    expected, bad = [], []
    for text in texts:
        record = {k: v for k, v in parser.expression.match(text).groupdict().items() if v is not None}
        source = record[key] if parser.keep_time_key else record.pop(key, None)
        try:
            time = parser.time_parser.parse(source) if source is not None else None
        except parser._time_error:
            bad.append(text)
            continue
        expected.append((time, record))
    events, failures = parser.parse_batch(texts)
    assert _items(events) == _items(expected)
    assert [f.text for f in failures] == bad == (texts[-1:] if key != "nothing_named_so" else [])


def test_an_optional_time_group_stays_named() -> None:
    parser = _parser(source=r'^(?<remote>[^ ]*)(?: \[(?<time>[^\]]*)\])?')
    assert parser._time_group is None


@pytest.mark.parametrize("bad", [
    "not an access log line",
    '1.2.3.4 - - [32/Foo/2020:99:55:36 +0000] "GET / HTTP/1.1" 200 5',     # a time that does not parse
])
def test_whole_batch_path_leaves_failing_batches_to_the_loop(bad: str) -> None:
    parser = _parser()
    texts = [*nginx_log.lines(20, seed=6), bad, *nginx_log.lines(5, seed=7)]
    assert _parse_whole_batch(parser, list(map(parser._match, texts)), None, parser._time_group) is None
    events, failures = parser.parse_batch(texts)
    assert [f.text for f in failures] == [bad]
    assert len(events) == 25


def test_whole_batch_path_leaves_mixed_time_presence_to_the_loop() -> None:
    parser = _parser(source=r'^(?<remote>[^ ]*)(?: \[(?<time>[^\]]*)\])?')
    texts = ["1.1.1.1 [10/Oct/2020:13:55:36 +0000]", "2.2.2.2"]
    assert _parse_whole_batch(parser, list(map(parser._match, texts)), None, parser._time_group) is None
    events, failures = parser.parse_batch(texts)
    assert not failures
    assert events[0][0] is not None and events[1] == (None, {"remote": "2.2.2.2"})


@pytest.mark.parametrize("source,optional", [
    (SEED, ("path", "referer", "agent", "forwarder")),
    (r"(?P<a>x)(?P<b>y)?", ("b",)),
    (r"(?P<a>x)|(?P<b>y)", ("a", "b")),                  # an alternative
    (r"(?P<a>x(?P<b>y)*)+", ("b",)),                     # a repeat that may run zero times
    (r"(?P<a>x){1,3}(?P<b>y){0,3}", ("b",)),
    (r"(?=(?P<a>x))(?P<b>.)", ("a",)),                   # a lookaround
    (r"(?P<a>x)?(?(a)(?P<b>y)|z)", ("a", "b")),          # a conditional
    (r"(?>(?P<a>x))(?P=a)(?i:(?P<b>q))", ()),            # atomic group, back-reference, scoped flag
])
def test_optional_groups_are_those_a_match_may_leave_unset(source: str, optional: tuple[str, ...]) -> None:
    pattern = re.compile(source.replace("(?<", "(?P<"))
    assert optional_groups(pattern) == optional


WITNESS_CASES = [
    (SEED, ("path", "referer")),                         # referer, agent, forwarder: one optional part
    (r"(?P<a>x)(?P<b>y)?", ("b",)),
    (r"(?P<a>x)|(?P<b>y)", ("a", "b")),                  # each alternative is a part of its own
    (r"(?:(?P<a>x)(?P<b>y))?(?P<c>z)", ("a",)),
    (r"(?:(?P<a>x)(?:(?P<b>y))?)?", ("a", "b")),         # a part inside a part
    (r"(?P<a>x(?P<b>y)?)?(?P<c>q)?", ("a", "b", "c")),
    (r"(?:(?P<a>x)|(?P<b>y)(?P<c>z))+", ("a", "b")),
    (r"(?:(?P<a>x)(?P<b>y)+)*", ("a",)),                 # b repeats at least once whenever a matched
    (r"(?=(?P<a>x))(?P<b>.)", ("a",)),
    (r"(?P<a>x)?(?(a)(?P<b>y)(?P<c>y)|(?P<d>z))", ("a", "b", "d")),
    (r"(?>(?P<a>x))(?P=a)(?i:(?P<b>q))", ()),
]


@pytest.mark.parametrize("source,witnesses", WITNESS_CASES)
def test_unset_witnesses_are_one_group_per_optional_part(source: str, witnesses: tuple[str, ...]) -> None:
    pattern = re.compile(source.replace("(?<", "(?P<"))
    assert unset_witnesses(pattern) == witnesses


@pytest.mark.parametrize("source", [source for source, _ in WITNESS_CASES])
def test_a_match_leaves_a_group_unset_exactly_when_it_leaves_a_witness_unset(source: str) -> None:
    # Every string of up to 5 letters from the patterns' alphabet, at every start position, plus
    # the access log lines: the witnesses alone must tell whether groupdict holds a None.
    import itertools

    pattern = re.compile(source.replace("(?<", "(?P<"))
    witnesses = unset_witnesses(pattern)
    assert witnesses is not None
    texts = [*TEXTS, *("".join(p) for n in range(6) for p in itertools.product("xyzq ", repeat=n))]
    checked = 0
    for text in texts:
        for start in range(len(text) + 1):
            m = pattern.match(text, start)
            if m is None:
                continue
            checked += 1
            any_unset = None in m.groupdict().values()
            assert any_unset == any(m.group(w) is None for w in witnesses), (source, text, start)
    assert checked > 20


def test_unset_groups_are_left_out_and_empty_values_kept_with_or_without_the_analysis() -> None:
    texts = ['1.2.3.4 - - [10/Oct/2020:13:55:36 +0000] "GET" 200 5',                  # path unset
             '1.2.3.4  - [10/Oct/2020:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "" "" ""',  # host empty
             '1.2.3.4 - - [10/Oct/2020:13:55:36 +0000] "GET / HTTP/1.1" 200 5']       # referer... unset
    expected = [
        {"remote": "1.2.3.4", "host": "-", "user": "-", "method": "GET", "code": "200", "size": "5"},
        {"remote": "1.2.3.4", "host": "", "user": "-", "method": "GET", "path": "/", "code": "200",
         "size": "5", "referer": "", "agent": "", "forwarder": ""},
        {"remote": "1.2.3.4", "host": "-", "user": "-", "method": "GET", "path": "/", "code": "200",
         "size": "5"},
    ]
    analysed = _parser()
    assert analysed.optional_groups == ("path", "referer", "agent", "forwarder")
    unknown = _parser()
    assert analysed.unset_witnesses == ("path", "referer")
    unknown.optional_groups = None              # what a pattern the analysis does not know gets
    unknown.unset_witnesses = None
    for parser in (analysed, unknown):
        events, failures = parser.parse_batch(texts)
        assert not failures
        assert [record for _, record in events] == expected
        assert _parse_whole_batch(parser, list(map(parser._match, texts)), None, parser._time_group) == events
