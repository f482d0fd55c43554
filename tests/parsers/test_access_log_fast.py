"""The fast nginx / apache2 matching gives exactly what Fluentd's original regexps give (property test
over generated access-log lines, blanks, quotes and backslashes included), and the parsers use it."""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kawa.config import values
from kawa.plugins.parsers._access_log import trim_path
from kawa.plugins.parsers.apache2 import APACHE2_MATCH, APACHE2_REGEXP
from kawa.plugins.parsers.nginx import NGINX_EXPRESSION, NginxParser
from kawa.testing.drivers import ParserDriver

NGINX_ORIGINAL = values.regexp(NGINX_EXPRESSION)
NASTY = ' \t"\\[]-/aZ0.\x0b'
# mostly ordinary fields (so the fast path is taken), sometimes any mix of the nasty characters
ordinary = st.sampled_from(["-", "192.0.2.1", "200", "1234", "curl/8.0", "a b", "x\\"])
field = st.one_of(ordinary, ordinary, ordinary, ordinary, st.text(alphabet=NASTY, max_size=6))
word = st.sampled_from(["GET", "POST", "-", "", "G\tT", 'GE"T'])
paths = st.sampled_from(["/x", "/a b", "/a  b", "", " ", "/q?a=1&b=2", "/a\tb", '/a"b', "/a\\\"b"])
protocols = st.sampled_from([" HTTP/1.1", "  HTTP/1.0", "", " ", "\tHTTP/1.1", " HTTP/1.1 ", ' H"'])


@st.composite
def access_lines(draw: Callable[[Any], Any]) -> str:
    request = draw(word) + draw(st.sampled_from([" ", "  ", "", "\t"])) + draw(paths) + draw(protocols)
    if draw(st.integers(0, 3)) == 0:
        request = draw(field) + request + draw(field)
    head = f'{draw(field)} {draw(field)} {draw(field)} [{draw(field)}] "{request}" {draw(field)} {draw(field)}'
    tail = draw(st.sampled_from(["", ' "{0}" "{1}"', ' "{0}" "{1}" "{2}"', ' "{0}" "{1}"\t{2}', ' "{0}"']))
    return head + tail.format(draw(field), draw(field), draw(field))


def fast_result(match: Callable[[str], Any], text: str) -> dict[str, Any] | None:
    m = match(text)
    if m is None:
        return None
    record = m.groupdict()
    trim_path(record)
    return record


def original_result(pattern: Any, text: str) -> dict[str, Any] | None:
    m = pattern.search(text)
    return None if m is None else m.groupdict()


NGINX_MATCH = ParserDriver("nginx", "").instance._match


@settings(max_examples=1500, deadline=None)
@given(access_lines())
@example('1.2.3.4 - - [t] "GET   a" 200 1')
@example('1.2.3.4 - - [t] "GET /a  HTTP/1.1" 200 1 "r" "u"')
@example('1.2.3.4 - - [t] "GET /a HTTP/1.1\t" 200 1')
def test_nginx_fast_path_equals_the_original_regexp(text: str) -> None:
    assert fast_result(NGINX_MATCH, text) == original_result(NGINX_ORIGINAL, text)


@settings(max_examples=1500, deadline=None)
@given(access_lines())
@example('1.2.3.4 - - [t] "GET /a\\" b HTTP/1.1" 200 1 "r\\"x" "u"')
def test_apache2_fast_path_equals_the_original_regexp(text: str) -> None:
    assert fast_result(APACHE2_MATCH, text) == original_result(APACHE2_REGEXP, text)


def test_nginx_uses_the_fast_path_only_for_the_built_in_expression() -> None:
    assert NGINX_MATCH is not NGINX_ORIGINAL.match
    custom = ParserDriver("nginx", "expression /^(?<all>.*)$/").instance
    assert isinstance(custom, NginxParser) and custom._fix is None
    assert custom.parse_batch(['a "b c" d'])[0] == [(None, {"all": 'a "b c" d'})]


def test_parsers_give_the_original_records() -> None:
    line = '192.0.2.1 - bob [10/Jul/2019:08:00:00 +0000] "GET /a b  HTTP/1.1" 200 12 "-" "curl"'
    (_t, record), = ParserDriver("nginx", "").parse(line)
    assert record["path"] == "/a b" and record["method"] == "GET"
    (_t, record), = ParserDriver("apache2", "").parse(line)
    assert record == {"host": "192.0.2.1", "user": "bob", "method": "GET", "path": "/a b", "code": 200,
                      "size": 12, "referer": None, "agent": "curl"}
