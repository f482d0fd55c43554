"""The `syslog` parser: RFC 3164 / RFC 5424 lines (or auto-detected) with an optional <pri> prefix,
following Fluentd SyslogParser's regexp engine step by step (time cut by space count, then a regexp).
"""

from __future__ import annotations

from typing import Any, Sequence

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import NOT_MATCHED, BaseParser, ParsedEvent, ParserOptions, create_time_parser
from kawa.rubyregex import compile_ruby_regexp

# Fluentd lib/fluent/plugin/parser_syslog.rb (v1.18.0), in Ruby syntax.
RFC3164_BODY = compile_ruby_regexp(
    r"(?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$")
RFC3164_PRI = compile_ruby_regexp(r"^<(?<pri>[0-9]{1,3})>")
RFC5424_BODY = compile_ruby_regexp(
    r"(?<host>[!-~]{1,255}) (?<ident>[!-~]{1,48}) (?<pid>[!-~]{1,128}) (?<msgid>[!-~]{1,32}) "
    r"(?<extradata>(?:\-|(?:\[.*?(?<!\\)\])+))(?: (?<message>.+))?\z", "m")
RFC5424_PRI = compile_ruby_regexp(r"^<(?<pri>\d{1,3})>\d\d{0,2}\s")
DETECT_RFC5424 = compile_ruby_regexp(r"^\<[0-9]{1,3}\>[1-9]\d{0,2}")
RFC3164_CAPTURES = ("host", "ident", "pid", "message")
RFC5424_CAPTURES = ("host", "ident", "pid", "msgid", "extradata", "message")
RFC5424_NO_SUBSECONDS = "%Y-%m-%dT%H:%M:%S%z"
# What Ruby raises when the header has fewer spaces than the time format needs (nil + 1).
NIL_INDEX_ERROR = "undefined method `+' for nil:NilClass"


class _Unmatched(Exception):
    pass


class SyslogOptions(ParserOptions):
    with_priority = option(False, "bool", doc="Lines start with <pri>")
    message_format = option("rfc3164", "enum", choices=("rfc3164", "rfc5424", "auto"), doc="Syslog protocol")
    rfc5424_time_format = option("%Y-%m-%dT%H:%M:%S.%L%z", "string", doc="Time format of RFC 5424 lines")
    parser_engine = option("regexp", "enum", choices=("regexp", "string"), aliases=("parser_type",),
                           doc="Fluentd's two engines; kawa always runs the regexp engine's rules")
    support_colonless_ident = option(True, "bool", no_effect="only used by Fluentd's string engine")
    time_format = "%b %d %H:%M:%S"


def _ruby_to_i(s: str) -> int:
    digits = ""
    for ch in s:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def _cut_time(text: str, idx: int, spaces: int) -> tuple[str, int]:
    """Fluentd's header walk: skip `spaces` space-separated words from idx; squeeze repeated spaces."""
    i = idx - 1
    squeezed = False
    for _ in range(spaces):
        while i + 1 < len(text) and text[i + 1] == " ":
            squeezed = True
            i += 1
        i = text.find(" ", i + 1)
        if i < 0:
            raise ValueError(NIL_INDEX_ERROR)
    time_str = text[idx:i]
    if squeezed:
        while "  " in time_str:
            time_str = time_str.replace("  ", " ")
    return time_str, i


@register("parser", "syslog")
class SyslogParser(BaseParser):
    Options = SyslogOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        given = o._element.attrs if o._element is not None else {}
        fmt3164 = o.time_format
        fmt5424 = o.time_format if (o.message_format == "rfc5424" and "time_format" in given) \
            else o.rfc5424_time_format
        self.time3164 = create_time_parser(o, time_format=fmt3164)
        self.time5424 = create_time_parser(o, time_format=fmt5424)
        self.time5424_plain = create_time_parser(o, time_format=RFC5424_NO_SUBSECONDS)
        self.spaces3164 = _squeezed_spaces(fmt3164) + 1
        self.spaces5424 = _squeezed_spaces(fmt5424) + 1
        self.with_priority: bool = o.with_priority
        self.message_format: str = o.message_format

    def make_time_parser(self) -> Any:
        return None     # syslog builds its own per-protocol parsers in __init__

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        fmt = self.message_format
        for text in texts:
            try:
                if fmt == "rfc5424" or (fmt == "auto" and DETECT_RFC5424.search(text)):
                    event = self._parse_5424(text)
                else:
                    event = self._parse_3164(text)
            except _Unmatched:
                failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
                continue
            except self._time_error as exc:
                failures.append(ParseFailure(text, str(exc), "invalid"))
                continue
            except ValueError as exc:
                failures.append(ParseFailure(text, str(exc), "invalid"))
                continue
            events.append(event)
        return events, failures

    def _parse_3164(self, text: str) -> ParsedEvent:
        record: dict[str, Any] = {}
        idx = 0
        if self.with_priority:
            if not RFC3164_PRI.search(text):
                raise _Unmatched
            v = text.index(">")
            record["pri"] = _ruby_to_i(text[1:v + 1])
            idx = v + 1
        time_str, i = _cut_time(text, idx, self.spaces3164)
        time = self.time3164.parse(time_str)
        if self.keep_time_key:
            record["time"] = time_str
        return self._body(RFC3164_BODY, time, text, i + 1, record, RFC3164_CAPTURES)

    def _parse_5424(self, text: str) -> ParsedEvent:
        record: dict[str, Any] = {}
        idx = 0
        if self.with_priority:
            m = RFC5424_PRI.search(text)
            if m is None:
                raise _Unmatched
            record["pri"] = int(m.group("pri"))
            idx = m.end()
        time_str, i = _cut_time(text, idx, self.spaces5424)
        try:
            time = self.time5424.parse(time_str)
        except self._time_error:
            time = self.time5424_plain.parse(time_str)
        if self.keep_time_key:
            record["time"] = time_str
        return self._body(RFC5424_BODY, time, text, i + 1, record, RFC5424_CAPTURES)

    def _body(self, regexp: Any, time: int, text: str, pos: int, record: dict[str, Any],
              captures: tuple[str, ...]) -> ParsedEvent:
        m = regexp.search(text, pos)
        if m is None:
            raise _Unmatched
        for name in captures:
            value = m.group(name)
            if value is not None:
                if name == "message":
                    value = _chomp(value)
                record[name] = value
        return time, record


def _squeezed_spaces(fmt: str) -> int:
    while "  " in fmt:
        fmt = fmt.replace("  ", " ")
    return fmt.count(" ")


def _chomp(s: str) -> str:
    if s.endswith("\r\n"):
        return s[:-2]
    return s[:-1] if s.endswith(("\n", "\r")) else s
