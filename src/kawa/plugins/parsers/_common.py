"""What every parser plugin shares: the base options (time, types, nulls) declared once, the time
parser factory, Ruby value conversions (to_i / to_f / split) and the per-record finishing step.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator, Sequence

from kawa.config.schema import Options, option
from kawa.errors import ConfigError, Problem
from kawa.event import Record
from kawa.plugins.base import ParseFailure, Parser, PluginContext
from kawa.timeparse import TimeParseError, TimeParser, ruby_to_s

ParsedEvent = tuple[int | None, Record]
NOT_MATCHED = "pattern not matched"

# Fluentd TimeMixin::TIME_TYPES
TIME_TYPES = ("string", "unixtime", "float", "mixed")
# Fluentd Parser::AVAILABLE_PARSER_VALUE_TYPES
VALUE_TYPES = ("string", "integer", "float", "bool", "time", "array")
# Fluentd Parser::TRUTHY_VALUES
TRUTHY = frozenset(("true", "yes", "1"))


class ParserOptions(Options):
    """Options of Fluentd's Parser base class (+ TimeMixin::Parser), shared by every parser."""

    types = option(None, "hash", value_type="string",
                   doc="Value conversions: 'key:type[:option],...' (string integer float bool time array)")
    time_key = option(None, "string", doc="Field holding the event time")
    null_value_pattern = option(None, "regexp", doc="Values matching this become null")
    null_empty_string = option(False, "bool", doc="Empty string values become null")
    estimate_current_event = option(True, "bool", doc="Use the current time when the input has no time")
    keep_time_key = option(False, "bool", doc="Keep the time field in the record")
    timeout = option(None, "time", no_effect="kawa parsers have no per-line timeout thread")
    time_type = option("string", "enum", choices=TIME_TYPES, doc="string, unixtime, float or mixed")
    time_format = option(None, "string", doc="strptime format of the time field (%N/%L fractions, %iso8601)")
    localtime = option(True, "bool", doc="Zone-less times are local time (UTC when false)")
    utc = option(False, "bool", doc="Zone-less times are UTC")
    timezone = option(None, "string", doc="Zone of zone-less times: +09:00, Asia/Tokyo")
    time_format_fallbacks = option([], "array", value_type="string",
                                   doc="With time_type mixed: formats tried after time_format")

    def check(self) -> Iterator[str]:
        given = self._element.attrs if self._element is not None else {}
        if "localtime" in given and "utc" in given and not (self.localtime ^ self.utc):
            yield "both of utc and localtime are specified, use only one of them"
        if "time_type" in given and self.time_type == "mixed" and not self.time_format \
                and not self.time_format_fallbacks:
            yield "time_type is :mixed but time_format and time_format_fallbacks is empty."


def create_time_parser(opts: Any, time_type: str | None = None, time_format: str | None = None,
                       timezone: str | None = None) -> TimeParser:
    """Fluentd's time_parser_create: a cached `.parse(value) -> ns` raising TimeParseError."""
    given = opts._element.attrs if getattr(opts, "_element", None) is not None else {}
    localtime = opts.localtime
    if "utc" in given and "localtime" not in given:
        localtime = not opts.utc  # Fluentd: utc true turns localtime off
    return TimeParser(time_format if time_format is not None else opts.time_format,
                      time_type=time_type or opts.time_type, localtime=localtime, utc=opts.utc,
                      timezone=timezone if timezone is not None else opts.timezone,
                      fallbacks=list(opts.time_format_fallbacks or []))


# ---- Ruby value conversions (Parser#build_type_converters) ----

_TO_I = re.compile(r"[ \t\n\v\f\r]*([+-]?\d+(?:_\d+)*)")
_TO_F = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:\d+(?:_\d+)*)?(?:\.\d+(?:_\d+)*)?)(?:([eE][+-]?\d+))?")


def ruby_str_to_i(s: str) -> int:
    """Ruby String#to_i: leading blanks, sign, digits with underscores; 0 when none."""
    m = _TO_I.match(s)
    return int(m.group(1).replace("_", "")) if m else 0


def ruby_to_i(value: Any) -> Any:
    """`v.to_i rescue v.to_s.to_i`."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and value not in (float("inf"), float("-inf")) else 0
    return ruby_str_to_i(value if isinstance(value, str) else ruby_to_s(value))


def ruby_to_f(value: Any) -> float:
    """`v.to_f rescue v.to_s.to_f` ("1e3" -> 1000.0, "nan" -> 0.0, "12abc" -> 12.0)."""
    if isinstance(value, bool) or value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    s = value if isinstance(value, str) else ruby_to_s(value)
    m = _TO_F.match(s)
    num = m.group(1).replace("_", "") if m else ""
    if num in ("", "+", "-") or not any(c.isdigit() for c in num):
        return 0.0
    if num.endswith("."):
        num = num[:-1]
    try:
        return float(num + (m.group(2) or "")) if m else 0.0
    except (ValueError, OverflowError):
        return float(num)


def ruby_split(s: str, delimiter: str) -> list[str]:
    """Ruby String#split(str): ' ' splits on whitespace runs; trailing empty fields dropped."""
    parts = s.split() if delimiter == " " else s.split(delimiter)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _time_converter(option_text: str | None, opts: Any) -> Callable[[Any], Any]:
    time_type, fmt, zone = "string", None, None
    if option_text:
        zone, _, fmt = option_text.partition(":")
        if not _valid_timezone(zone):
            zone, fmt = None, option_text
        if fmt in TIME_TYPES:
            time_type, fmt = fmt, None
    parser = create_time_parser(opts, time_type=time_type, time_format=fmt or None, timezone=zone)

    def convert(value: Any) -> Any:
        try:
            return parser.parse(value) // 1_000_000_000   # EventTime serialises as its seconds
        except TimeParseError:
            return None
    return convert


def _valid_timezone(zone: str) -> bool:
    if re.fullmatch(r"[+-]\d{2}:?\d{2}|[+-]\d{2}", zone):
        return True
    if not zone or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+/-]*", zone):
        return False
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(zone)
    except Exception:
        return False
    return True


def build_type_converters(types: dict[str, str] | None, opts: Any) -> dict[str, Callable[[Any], Any]] | None:
    if not types:
        return None
    out: dict[str, Callable[[Any], Any]] = {}
    for field, definition in types.items():
        kind, _, opt = definition.partition(":")
        if kind not in VALUE_TYPES:
            raise ConfigError([Problem(f"unknown value conversion for key:'{field}', type:'{kind}'", None, ())])
        if kind == "string":
            out[field] = lambda v: v if isinstance(v, str) else ruby_to_s(v)
        elif kind == "integer":
            out[field] = ruby_to_i
        elif kind == "float":
            out[field] = ruby_to_f
        elif kind == "bool":
            out[field] = lambda v: ruby_to_s(v).lower() in TRUTHY
        elif kind == "array":
            delim = opt if opt else ","
            out[field] = lambda v, d=delim: ruby_split(v if isinstance(v, str) else ruby_to_s(v), d)
        else:
            out[field] = _time_converter(opt or None, opts)
    return out


class BaseParser(Parser):
    """Fluentd's Parser base: time extraction (parse_time) and value conversion (convert_values)."""

    Options = ParserOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        self.time_key: str | None = o.time_key
        self.keep_time_key: bool = o.keep_time_key
        self.estimate_current_event: bool = o.estimate_current_event
        self.time_parser = self.make_time_parser()
        self._time_error = TimeParseError
        self._converters = build_type_converters(o.types, o)
        self._null_pattern: re.Pattern[str] | None = o.null_value_pattern
        self._null_empty: bool = o.null_empty_string
        self.needs_convert = bool(self._converters or self._null_pattern or self._null_empty)

    def make_time_parser(self) -> Any:
        """Subclasses with a fixed format (apache2, syslog) override this."""
        return create_time_parser(self.options)

    def convert_values(self, record: Record) -> None:
        conv = self._converters
        null_rx = self._null_pattern
        null_empty = self._null_empty
        for key, value in record.items():
            if value is None or value is False:    # Fluentd: `next unless value`
                continue
            if isinstance(value, str) and ((null_empty and not value) or
                                           (null_rx is not None and null_rx.search(value))):
                record[key] = None
                continue
            if conv is not None:
                fn = conv.get(key)
                if fn is not None:
                    record[key] = fn(value)

    def finish(self, record: Record, text: Any, events: list[ParsedEvent], failures: list[ParseFailure]) -> None:
        """parse_time + convert_values for one record, appending the event or the failure."""
        key = self.time_key
        time: int | None = None
        if key is not None and key in record:
            src = record[key] if self.keep_time_key else record.pop(key)
            try:
                time = self.time_parser.parse(src)
            except self._time_error as exc:
                failures.append(ParseFailure(text, str(exc), "invalid"))
                return
        if self.needs_convert:
            self.convert_values(record)
        events.append((time, record))

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        parse_into = self.parse_into
        for text in texts:
            try:
                parse_into(text, events, failures)
            except Exception as exc:  # a bad line must never stop the batch
                failures.append(ParseFailure(text, f"{type(exc).__name__}: {exc}", "invalid"))
        return events, failures
