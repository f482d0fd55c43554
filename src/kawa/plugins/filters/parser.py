"""Fluentd's parser filter: parse one field (key_name, record_accessor allowed) with a <parse> plugin and
replace, merge (reserve_data) or nest (hash_value_field) the result; failures become error events.
"""

from __future__ import annotations

import codecs
from typing import Any, Sequence

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event, Record
from kawa.ruby_values import ruby_inspect_value, ruby_to_s
from kawa.plugins.base import Filter, ParseFailure, PluginContext
from kawa.record_accessor import DigError, RecordAccessor

Parsed = tuple[list[tuple[int | None, Record]], list[ParseFailure]]

# filter_parser.rb REPLACE_CHAR (String#scrub replacement)
REPLACE_CHAR = "?"
# Fluent::Plugin::Parser::ParserError, the class name error events carry
PARSER_ERROR = "Fluent::Plugin::Parser::ParserError"
_INVALID_UTF8 = "invalid byte sequence in UTF-8"
_TEXT = object()   # marks an event whose value is a str to parse


def _ruby_scrub_errors(exc: UnicodeError) -> tuple[str, int]:
    # Python's decoder reports the same maximal invalid subparts String#scrub replaces one by one.
    assert isinstance(exc, UnicodeDecodeError)
    return REPLACE_CHAR, exc.end


codecs.register_error("kawa_ruby_scrub", _ruby_scrub_errors)


def ruby_scrub(text: str) -> str:
    """String#scrub('?') for a str whose raw invalid bytes are kept as surrogateescape surrogates."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "kawa_ruby_scrub")


def has_invalid_bytes(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class FluentError(Exception):
    """An error event's exception, named as Fluentd names it in `dump an error event` lines."""

    def __init__(self, message: str, error_class: str) -> None:
        super().__init__(message)
        self.error_class = error_class


class ParserFilterOptions(Options):
    key_name = option(doc="Field to parse: a top-level key or a record_accessor path like $.log.raw.")
    reserve_data = option(False, "bool", doc="Keep the original fields (parsed values win on collisions).")
    reserve_time = option(False, "bool", doc="Keep the original event time instead of the parsed one.")
    remove_key_name_field = option(False, "bool", doc="Remove key_name from the record when parsing succeeded.")
    inject_key_prefix = option(None, doc="Prefix added to every parsed key.")
    replace_invalid_sequence = option(False, "bool", doc="Replace invalid UTF-8 bytes with '?' and parse again.")
    hash_value_field = option(None, doc="Store the parsed values as a hash under this field.")
    emit_invalid_record_to_error = option(True, "bool", doc="Send records that fail to parse to @ERROR "
                                          "(or log them as error events).")
    parse = section(plugin_kind="parser", required=True, doc="The parser (@type and its options).")


# How Fluentd's parsers fail on a non-String value (they get the raw object): (kind, message template).
_NON_STRING_FAILURES = {
    "json": ("unmatched", ""),
    "msgpack": ("unmatched", ""),
    "ltsv": ("error", "undefined method `split' for {inspect}:{cls}"),
    "tsv": ("error", "undefined method `split' for {inspect}:{cls}"),
}
_DEFAULT_NON_STRING = ("error", "no implicit conversion of {cls} into String")


def _ruby_class(value: Any) -> str:
    if value is True:
        return "TrueClass"
    if value is False:
        return "FalseClass"
    for py, name in ((str, "String"), (int, "Integer"), (float, "Float"), (dict, "Hash"), (list, "Array")):
        if isinstance(value, py):
            return name
    return type(value).__name__


@register("filter", "parser")
class ParserFilter(Filter):
    Options = ParserFilterOptions
    compat_sections = ("parse",)

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.accessor = RecordAccessor(options.key_name)
        if options.parse is None:
            raise ConfigError("<parse> section is required.")
        self.parser: Any = self.build_child(options.parse, "parse")
        self.parser_type: str = getattr(type(self.parser), "type_name", "") or options.parse.cls.__name__
        self._estimate_now = bool(getattr(self.parser, "estimate_current_event", True))
        self._reserve = options.reserve_data
        self._reserve_time = options.reserve_time
        self._remove = options.remove_key_name_field
        self._prefix = options.inject_key_prefix
        self._hash_field = options.hash_value_field
        self._emit_errors = options.emit_invalid_record_to_error
        self._scrub = options.replace_invalid_sequence
        # Parsers whose Ruby twin matches with a Regexp raise ArgumentError on invalid UTF-8.
        self._checks_encoding = self.parser_type not in ("json", "msgpack", "none")
        self._per_text = (hasattr(self.parser, "parse_text") or hasattr(self.parser, "flush_pending")
                          or self.parser_type == "msgpack")

    # -- parsing many values at once -------------------------------------------------------------
    def _parse_one(self, text: Any) -> Parsed:
        parser = self.parser
        events: list[tuple[int | None, Record]] = []
        failures: list[ParseFailure] = []
        if hasattr(parser, "parse_text"):           # multiline: Fluentd parses the whole value at once
            parser.parse_text(text, events, failures)
            return events, failures
        events, failures = parser.parse_batch([text])
        if hasattr(parser, "flush_pending"):        # cri/docker: nothing may wait for a next record
            more, bad = parser.flush_pending()
            events = events + more
            failures = failures + bad
        return events, failures

    def _may_yield_several(self, text: str) -> bool:
        # A JSON array yields one event per element; such values are parsed on their own.
        if self.parser_type != "json":
            return False
        head = text[:1]
        return head == "[" or (head.isspace() and text.lstrip()[:1] == "[")

    def parse_values(self, texts: Sequence[Any]) -> list[Parsed]:
        """Per text: its events and failures. One parse_batch call for all single-result texts."""
        if self._per_text:
            return [self._parse_one(t) for t in texts]
        results: list[Parsed | None] = [None] * len(texts)
        simple_idx: list[int] = []
        for i, text in enumerate(texts):
            if self._may_yield_several(text):
                results[i] = self._parse_one(text)
            else:
                simple_idx.append(i)
        if simple_idx:
            simple = [texts[i] for i in simple_idx]
            events, failures = self.parser.parse_batch(simple)
            mapped = _one_result_each(simple, events, failures)
            if mapped is None:  # a parser yielded other than one result per text: go one by one
                mapped = [self._parse_one(t) for t in simple]
            for i, parsed in zip(simple_idx, mapped):
                results[i] = parsed
        return results  # type: ignore[return-value]

    # -- the filter ---------------------------------------------------------------------------------
    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        get = self.accessor.get
        # First pass: find each value (or why there is none); parse all values in one go; then handle
        # the events in input order so output and error events keep Fluentd's order.
        found: list[Any] = []
        texts: list[str] = []
        for _, record in events:
            try:
                raw = get(record)
            except DigError as exc:
                found.append(FluentError(str(exc), "TypeError"))
                continue
            if type(raw) is str:
                if self._checks_encoding and has_invalid_bytes(raw):
                    if not self._scrub:
                        found.append(FluentError(_INVALID_UTF8, "ArgumentError"))
                        continue
                    raw = ruby_scrub(raw)
                texts.append(raw)
                found.append(_TEXT)
            else:
                found.append(raw)
        parsed = iter(self.parse_values(texts)) if texts else iter(())
        now = self.ctx.clock() if texts else 0
        text_iter = iter(texts)
        out: list[Event] = []
        for (time, record), raw in zip(events, found):
            if raw is _TEXT:
                ok, bad = next(parsed)
                self._finish(tag, time, record, next(text_iter), ok, bad, now, out)
            elif raw is None:
                if self._reserve:
                    out.append((time, self._handle(record, {})))
                self._error(tag, time, record, FluentError(f"{self.options.key_name} does not exist",
                                                           "ArgumentError"))
            elif isinstance(raw, FluentError):
                self._error(tag, time, record, raw)
            else:
                out.extend(self._non_string(tag, time, record, raw))
        return out

    def _finish(self, tag: str, time: int, record: Record, raw: Any, ok: list[tuple[int | None, Record]],
                bad: list[ParseFailure], now: int, out: list[Event]) -> None:
        for failure in bad:
            if failure.kind not in ("unmatched", "incomplete"):
                # Fluentd raises out of the parse: an error event, and the record is not kept.
                reason = failure.reason
                if not reason.startswith("invalid time format"):
                    reason = "parse failed " + reason
                self._error(tag, time, record, FluentError(reason, PARSER_ERROR))
                return
        for t, values in ok:
            if self._reserve_time:
                t = time
            elif t is None:
                t = now if self._estimate_now else time
            if self._remove:
                self.accessor.delete(record)
            out.append((t, self._handle(record, values)))
        for _ in bad:
            self._unmatched(tag, time, record, raw, out)

    def _unmatched(self, tag: str, time: int, record: Record, raw: Any, out: list[Event]) -> None:
        self._error(tag, time, record, FluentError(f"pattern not matched with data '{ruby_to_s(raw)}'",
                                                   PARSER_ERROR))
        if self._reserve:
            out.append((time, self._handle(record, {})))

    def _non_string(self, tag: str, time: int, record: Record, raw: Any) -> list[Event]:
        """Fluentd hands the raw object to the parser; each parser fails (or not) in its own way."""
        if self.parser_type == "none":
            values = {self.parser.options.message_key: raw}
            t = time if self._reserve_time or not self._estimate_now else self.ctx.clock()
            if self._remove:
                self.accessor.delete(record)
            return [(t, self._handle(record, values))]
        kind, template = _NON_STRING_FAILURES.get(self.parser_type, _DEFAULT_NON_STRING)
        out: list[Event] = []
        if kind == "unmatched":
            self._unmatched(tag, time, record, raw, out)
        else:
            message = template.format(inspect=ruby_inspect_value(raw), cls=_ruby_class(raw))
            self._error(tag, time, record, FluentError("parse failed " + message, PARSER_ERROR))
        return out

    def _handle(self, record: Record, values: Record) -> Record:
        """filter_parser.rb handle_parsed: prefix, nest, then merge over the original record."""
        if self._prefix is not None:
            prefix = self._prefix
            values = {prefix + ruby_to_s(k): v for k, v in values.items()}
        result = {self._hash_field: values} if self._hash_field is not None else values
        if self._reserve:
            merged = dict(record)
            merged.update(result)
            return merged
        return result

    def _error(self, tag: str, time: int, record: Record, exc: BaseException) -> None:
        if self._emit_errors and self.ctx.emitter is not None:
            self.ctx.emitter.emit_error_event(tag, time, record, exc)

    def filter(self, tag: str, time: int, record: Record) -> Record | None:
        result = self.filter_batch(tag, [(time, record)])
        return result[0][1] if result else None

    async def start(self) -> None:
        await self.parser.start()

    async def stop(self) -> None:
        await self.parser.stop()


def _one_result_each(texts: Sequence[Any], events: list[tuple[int | None, Record]],
                     failures: list[ParseFailure]) -> list[Parsed] | None:
    """Pair a parse_batch result with its texts when every text gave exactly one event or failure.

    Failures come in text order and carry their text; events fill the other slots in order.
    None when the pairing does not add up (the caller then parses text by text)."""
    if len(events) + len(failures) != len(texts):
        return None
    if not failures:
        return [([ev], []) for ev in events]
    out: list[Parsed] = []
    ei = fi = 0
    n_fail = len(failures)
    for text in texts:
        if fi < n_fail and (failures[fi].text is text or failures[fi].text == text):
            out.append(([], [failures[fi]]))
            fi += 1
        else:
            if ei >= len(events):
                return None
            out.append(([events[ei]], []))
            ei += 1
    if ei != len(events) or fi != n_fail:
        return None
    return out
