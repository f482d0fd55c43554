"""The json formatter: one record per line, byte-identical to Fluentd's default Oj (compat mode) output.

orjson writes nearly everything the same way; the few float spellings and values it cannot take
(big integers, raw bytes, non-string keys) go through a small exact encoder instead.
"""

from __future__ import annotations

import re
from itertools import repeat
from operator import add, contains, getitem, itemgetter
from typing import Any, Sequence

import orjson

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.event import Event, Record, StrValueEvents
from kawa.ruby_values import oj_float, ruby_float_to_s
from kawa.plugins.base import Formatter

# Number spellings where orjson and Oj differ; they only appear right after ':', ',' or '['.
# "1e+16" (Oj: 1.0e+16 or 10000000000000000.0), "0.00001" (Oj: 1.0e-05), "-0.0" (Oj: 0.0).
_SUSPECT = re.compile(rb"[:,\[](?:-?(?:[0-9][0-9.]*e|0\.0000)|-0\.0[,\]}])")
_NON_STRING_VALUE = re.compile(rb'":[^"]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f]')
# format_batch_injected keeps this many formatted time tails (one per distinct event time)
_TAIL_CACHE_MAX = 4096
_ALL_BUT_BRACE = slice(None, -1)       # a record's orjson text without its closing brace
_EVENT_TIME = itemgetter(0)
_EVENT_RECORD = itemgetter(1)


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group()
    return _ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def _string(s: str) -> str:
    # Raw bytes kept as surrogates (invalid UTF-8 from files) are written back as the same bytes,
    # as Oj writes binary strings unchanged.
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, s) + '"'


def _encode(value: Any, out: list[str], float_text: Any) -> None:
    t = type(value)
    if t is str or isinstance(value, str):
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        # NaN/Infinity make Oj raise; kawa writes null (as orjson does) so one value cannot lose a chunk.
        out.append("null" if value != value or value in (float("inf"), float("-inf")) else float_text(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        first = True
        for k, v in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_string(k if isinstance(k, str) else _key_text(k)))
            out.append(":")
            _encode(v, out, float_text)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out, float_text)
        out.append("]")
    elif isinstance(value, (bytes, bytearray)):
        out.append(_string(bytes(value).decode("utf-8", "surrogateescape")))
    else:
        out.append(_string(str(value)))


def _key_text(key: Any) -> str:
    from kawa.ruby_values import ruby_to_s

    return ruby_to_s(key)


def exact_dumps(value: Any, float_text: Any = oj_float) -> str:
    """The slow, exact encoder (also used for the json gem's Float#to_s spelling)."""
    out: list[str] = []
    _encode(value, out, float_text)
    return "".join(out)


def oj_dumps(value: Any) -> str:
    """Oj.dump(value, mode: :compat) as text."""
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return exact_dumps(value)
    # Records whose values are all strings (most log lines) are done after one literal-prefix search;
    # otherwise cheap substring checks, and the exact regex only when one of them hits.
    if _NON_STRING_VALUE.search(data) is None and type(value) is dict:
        return data.decode()
    if (b"e+" in data or b"e-" in data or b"-0.0" in data or b"0.0000" in data) \
            and _SUSPECT.search(data) is not None:
        return exact_dumps(value)
    return data.decode()


def json_gem_dumps(value: Any) -> str:
    """The json gem / yajl spelling: every float through Float#to_s ("-0.0", "1.0e+16")."""
    return exact_dumps(value, ruby_float_to_s)


def _plain_json(value: Any) -> bytes | None:
    """orjson bytes of an injected value when Oj spells it the same (str, int), else None."""
    if type(value) is str or type(value) is int:
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:   # lone surrogates, integers beyond 64 bits
            return None
    return None


class _CannotSplice(Exception):
    pass


def _no_suspect_numbers(data: bytes) -> bool:
    return not ((b"e+" in data or b"e-" in data or b"-0.0" in data or b"0.0000" in data)
                and _SUSPECT.search(data) is not None)


def _has_empty_or_any_key(records: list[Record], keys: list[str]) -> bool:
    """True when a record is empty (no brace to splice before) or already holds an injected key
    (C-level scans: no Python step per record)."""
    if not all(records):
        return True
    return any(any(map(contains, records, repeat(key))) for key in keys)


class JsonFormatterOptions(Options):
    json_parser = option("oj", doc="Fluentd's JSON library: oj (default), yajl or json. yajl and json write "
                         "floats with Ruby's Float#to_s; oj writes integral floats as 1.0 / 100000000000000000.0.")
    add_newline = option(True, "bool", doc="End each record with a newline.")


@register("formatter", "json")
class JsonFormatter(Formatter):
    Options = JsonFormatterOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        if options.json_parser not in ("oj", "yajl", "json"):
            from kawa.errors import ConfigError

            raise ConfigError(f"json_parser: expected one of oj, yajl, json; got '{options.json_parser}'")
        self.dumps = oj_dumps if options.json_parser == "oj" else json_gem_dumps
        self.newline = "\n" if options.add_newline else ""
        # format_batch_injected: the formatted event-time tail of each line, per time, for one (injector, tag)
        self._tails: dict[int, bytes] = {}
        self._tails_owner: tuple[int, str] | None = None

    def format(self, tag: str, time: int, record: Record) -> str:
        return self.dumps(record) + self.newline

    def format_batch(self, tag: str, events: Sequence[Event]) -> str:
        dumps = self.dumps
        nl = self.newline
        return "".join([dumps(r) + nl for _, r in events])

    def format_batch_injected(self, tag: str, events: Sequence[Event], injector: Any) -> bytes:
        """The bytes of `format_batch(tag, injector.inject_batch(tag, events))`, without copying records."""
        if self.dumps is oj_dumps:
            try:
                data = self._spliced(tag, events, injector)
            except (TypeError, _CannotSplice):    # orjson cannot take a record (orjson errors are TypeErrors)
                data = None
            if data is not None:
                return data
        text = self.format_batch(tag, injector.inject_batch(tag, events))
        return text.encode("utf-8", "surrogateescape")

    def _spliced(self, tag: str, events: Sequence[Event], injector: Any) -> bytes | None:
        """Each record's orjson bytes with the injected pairs spliced before its closing brace.

        That equals Oj's text of the merged record when the record is not empty, has none of the
        injected keys (both checked first) and no number Oj spells differently (checked on the
        whole batch's bytes afterwards). None: use the copying path.
        """
        static, time_key, format_time = injector.added_keys(tag)
        keys = [*static, time_key] if time_key is not None else list(static)
        if not keys or not events:
            return None
        records = list(map(_EVENT_RECORD, events))
        if _has_empty_or_any_key(records, keys):
            return None
        head_parts = []
        for key, value in static.items():
            value_json = _plain_json(value)
            if value_json is None:
                return None
            head_parts.append(b"," + orjson.dumps(key) + b":" + value_json)
        head = b"".join(head_parts)
        close = b"}" + self.newline.encode()
        # Each record's orjson text without its closing brace, then its tail (injected pairs, brace,
        # newline); map keeps these per-record steps in C.
        bodies = map(getitem, map(orjson.dumps, records), repeat(_ALL_BUT_BRACE))
        if time_key is None:
            tail = head + close
            data = tail.join(bodies) + tail
        else:
            times = list(map(_EVENT_TIME, events))
            tail_of = self._time_tails(injector, tag, set(times), head + b"," + orjson.dumps(time_key) + b":",
                                       close, format_time)
            data = b"".join(map(add, bodies, map(tail_of.__getitem__, times)))
        # Oj spells orjson's output the same unless a number is suspect: none in records of str
        # values only, which a StrValueEvents promises; else one literal-prefix search shows there is
        # none when every value is a string (most log records), or the suspects are looked for.
        if type(events) is not StrValueEvents and _NON_STRING_VALUE.search(data) is not None \
                and not _no_suspect_numbers(data):
            return None
        return data

    def _time_tails(self, injector: Any, tag: str, times: set[int], time_head: bytes, close: bytes,
                    format_time: Any) -> dict[int, bytes]:
        """The line tail (injected pairs, brace, newline) of each distinct event time, cached per time
        for one (injector, tag) since busy logs repeat a time for many lines and batches."""
        owner = (id(injector), tag)
        if owner != self._tails_owner:
            self._tails = {}
            self._tails_owner = owner
        tails = self._tails
        if len(tails) > _TAIL_CACHE_MAX:
            tails.clear()
        out = {}
        for time_ns in times:
            tail = tails.get(time_ns)
            if tail is None:
                value_json = _plain_json(format_time(time_ns))
                if value_json is None:
                    raise _CannotSplice
                tail = tails[time_ns] = time_head + value_json + close
            out[time_ns] = tail
        return out
