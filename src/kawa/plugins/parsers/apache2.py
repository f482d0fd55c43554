"""The `apache2` parser: Apache combined/common log lines with Fluentd Apache2Parser's typing
('-' -> null, code and size as integers, code 0 -> null)."""

from __future__ import annotations

from typing import Any, Sequence

from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure
from kawa.plugins.parsers._common import (NOT_MATCHED, BaseParser, ParsedEvent, ParserOptions, create_time_parser,
                                          ruby_str_to_i)
from kawa.plugins.parsers._access_log import fast_variant, matcher
from kawa.rubyregex import compile_ruby_regexp

# Fluentd lib/fluent/plugin/parser_apache2.rb (v1.18.0) REGEXP and TIME_FORMAT.
APACHE2_SOURCE = (
    r'^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>(?:[^\"]|\\")*?)'
    r'(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>(?:[^\"]|\\")*)" "(?<agent>(?:[^\"]|\\")*)")?$')
APACHE2_REGEXP = compile_ruby_regexp(APACHE2_SOURCE)
# Without a `\"` in the line, `(?:[^\"]|\\")` is `[^"]`: the fast variant (see _access_log.py).
APACHE2_FAST = fast_variant(
    APACHE2_SOURCE, r'"(?<method>\S+)(?: +(?<path>(?:[^\"]|\\")*?)(?: +\S*)?)?"',
    ((r'(?<referer>(?:[^\"]|\\")*)', r'(?<referer>[^"]*)'), (r'(?<agent>(?:[^\"]|\\")*)', r'(?<agent>[^"]*)')))
APACHE2_MATCH = matcher(APACHE2_FAST, APACHE2_REGEXP.search, unsafe=("\n", '\\"'))
APACHE2_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"


def _dash_none(v: str | None) -> str | None:
    return None if v == "-" else v


@register("parser", "apache2")
class Apache2Parser(BaseParser):
    Options = ParserOptions

    def make_time_parser(self) -> Any:
        return create_time_parser(self.options, time_format=APACHE2_TIME_FORMAT)

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        match, tparse, keep, terr = APACHE2_MATCH, self.time_parser.parse, self.keep_time_key, self._time_error
        times: dict[str, int] = {}          # busy logs repeat the same time string many times a batch
        for text in texts:
            m = match(text)
            if m is None:
                failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
                continue
            g = m.groupdict()
            stamp = g["time"]
            time = times.get(stamp)
            if time is None:
                try:
                    time = times[stamp] = tparse(stamp)
                except terr as exc:
                    failures.append(ParseFailure(text, str(exc), "invalid"))
                    continue
            path = g["path"]
            if path is not None and path.endswith(" "):
                path = path.rstrip(" ")          # the fast variant's greedy path (see _access_log.py)
            code = ruby_str_to_i(g["code"])
            size = g["size"]
            record = {
                "host": _dash_none(g["host"]), "user": _dash_none(g["user"]), "method": g["method"],
                "path": path, "code": code or None,
                "size": None if size == "-" else ruby_str_to_i(size),
                "referer": _dash_none(g["referer"]), "agent": _dash_none(g["agent"]),
            }
            if keep:
                record["time"] = g["time"]
            events.append((time, record))
        return events, failures
