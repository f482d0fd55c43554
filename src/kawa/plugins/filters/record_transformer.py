"""Fluentd's record_transformer filter: add/overwrite fields from placeholders (${tag}, ${record["k"]} ...)
or, with enable_ruby, from Ruby expressions run by kawa's safe evaluator; remove/keep keys, renew time.
"""

from __future__ import annotations

import json
import math
import re
import socket
from fractions import Fraction
from typing import Any, Callable

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event, Record
from kawa.ruby_values import ruby_to_s
from kawa.plugins.base import Filter, PluginContext
from kawa.plugins.filters import _ruby_eval as rb
from kawa.record_accessor import RecordAccessor

# filter_record_transformer.rb PlaceholderExpander#expand
_PLACEHOLDER = re.compile(r"(\$\{[^}]+\}|__[A-Z_]+__)")
_ARRAY_PLACEHOLDER = re.compile(r"\$\{(tag_parts|tag_prefix|tag_suffix)\[(-?\d+)\]\}\Z")
_RECORD_PLACEHOLDER = re.compile(r'\$\{record\["(.*)"\]\}\Z', re.S)


class RecordSection(Options):
    """`<record>`: any `key value` lines; read from the element, not declared."""

    @classmethod
    def bind(cls, element: Any, ctx: Any, path: tuple[str, ...] = ()) -> Options:
        for attr in element.attrs.values():   # every key is a field name, none is unknown
            attr.used = True
        return super().bind(element, ctx, path)


class RecordTransformerOptions(Options):
    remove_keys = option(None, "array", value_type="string", doc="Keys to remove (record_accessor syntax allowed).")
    keep_keys = option(None, "array", value_type="string", doc="With renew_record: keys to keep.")
    renew_record = option(False, "bool", doc="Start from an empty record instead of the input record.")
    renew_time_key = option(None, doc="Use this field (as a float of seconds) as the new event time.")
    enable_ruby = option(False, "bool", doc="Evaluate ${...} as Ruby expressions (kawa's safe subset).")
    auto_typecast = option(True, "bool", doc="A value that is a single placeholder keeps its type.")
    record = section(RecordSection, multi=True, doc="Fields to set: `key value-with-placeholders`.")


class _Context:
    """Per-batch placeholder values (tag derived) plus the per-record ones."""

    __slots__ = ("tag", "tag_parts", "tag_prefix", "tag_suffix", "hostname", "time", "record", "clock")

    def __init__(self, tag: str, hostname: str, clock: Callable[[], int]) -> None:
        parts = tag.split(".")
        self.tag = tag
        self.tag_parts = parts
        self.tag_prefix = [".".join(parts[:i + 1]) for i in range(len(parts))]
        self.tag_suffix = [".".join(parts[i:]) for i in range(len(parts))]
        self.hostname = hostname
        self.time = 0
        self.record: Record = {}
        self.clock = clock


_MISSING = object()


class _PlainExpander:
    """enable_ruby false: Fluentd's placeholder table lookups."""

    def __init__(self, log: Any, auto_typecast: bool) -> None:
        self.log = log
        self.auto_typecast = auto_typecast

    def compile(self, text: str, force_stringify: bool = False) -> Callable[[_Context], Any]:
        if self.auto_typecast and not force_stringify and _PLACEHOLDER.fullmatch(text):
            return lambda c: self.lookup(text, c)
        pieces = _PLACEHOLDER.split(text)
        if len(pieces) == 1:
            return lambda c: text

        def expand(c: _Context) -> str:
            return "".join(p if i % 2 == 0 else ruby_to_s(self.lookup(p, c)) for i, p in enumerate(pieces))

        return expand

    def lookup(self, token: str, c: _Context) -> Any:
        value = _MISSING
        if token == "${tag}":
            value = c.tag
        elif token == "${hostname}":
            value = c.hostname
        elif token == "${time}":
            value = str(rb.RubyTime(c.time))
        else:
            m = _ARRAY_PLACEHOLDER.match(token)
            if m:
                seq = getattr(c, m.group(1))
                idx = int(m.group(2))
                if -len(seq) <= idx < len(seq):
                    value = seq[idx]
            else:
                m = _RECORD_PLACEHOLDER.match(token)
                if m and m.group(1) in c.record:
                    value = c.record[m.group(1)]
        if value is _MISSING:
            self.log.warn(f"unknown placeholder `{token}` found")
            return None
        return value


class _RubyExpander:
    """enable_ruby true: `${expr}` alone keeps the value's type; otherwise string interpolation."""

    def __init__(self, log: Any, auto_typecast: bool) -> None:
        self.auto_typecast = auto_typecast

    def compile(self, text: str, force_stringify: bool = False) -> Callable[[_Context], Any]:
        if self.auto_typecast and not force_stringify and text.count("${") == 1 and text.startswith("${") \
                and text.endswith("}"):
            source = text[2:-1]
            node = rb.parse_expression(source)
            return lambda c: _plain_value(self._run(source, node, c))
        parts: list[Any] = []
        i = 0
        while True:
            j = text.find("${", i)
            if j < 0:
                parts.append(text[i:])
                break
            parts.append(text[i:j])
            end = rb._matching_brace(text, j + 1)
            parts.append(rb.parse_expression(text[j + 2:end]))
            i = end + 1
        shown = "%Q[" + text.replace("${", "#{") + "]"
        node = ("istr", [p for p in parts if p != ""])
        return lambda c: self._run(shown, node, c)

    @staticmethod
    def _run(source: str, node: Any, c: _Context) -> Any:
        env = {"tag": c.tag, "tag_parts": c.tag_parts, "tag_prefix": c.tag_prefix, "tag_suffix": c.tag_suffix,
               "hostname": c.hostname, "time": rb.RubyTime(c.time), "record": c.record, "__clock__": c.clock}
        try:
            return rb.evaluate(node, env)
        except (rb.RubyError, TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError) as exc:
            # Fluentd wraps every expansion error the same way (RuntimeError, the source, the cause).
            raise RuntimeError(f"failed to expand `{source}` : error = {exc}") from None


def _plain_value(value: Any) -> Any:
    if isinstance(value, rb.RubyTime):
        return str(value)      # Oj writes a Time through its to_s
    return value


def _parse_value(text: str, log: Any) -> Any:
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError as exc:
            log.warn(f"failed to parse {text} as json. Assuming {text} is a string", error=str(exc))
    return text


def _compile_tree(value: Any, expander: Any) -> Callable[[_Context], Any]:
    if isinstance(value, str):
        return expander.compile(value)
    if isinstance(value, dict):
        items = [(expander.compile(k, True), _compile_tree(v, expander)) for k, v in value.items()]
        return lambda c: {kf(c): vf(c) for kf, vf in items}
    if isinstance(value, list):
        fns = [_compile_tree(v, expander) for v in value]
        return lambda c: [f(c) for f in fns]
    return lambda c: value


def _time_from_float(value: Any) -> int:
    seconds = rb._to_f(value)
    if math.isnan(seconds) or math.isinf(seconds):
        raise RuntimeError(f"invalid renew_time_key value: {ruby_to_s(value)}")
    return math.floor(Fraction(seconds) * 1_000_000_000)


@register("filter", "record_transformer")
class RecordTransformerFilter(Filter):
    Options = RecordTransformerOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        if options.keep_keys and not options.renew_record:
            raise ConfigError("`renew_record` must be true to use `keep_keys`")
        expander = (_RubyExpander if options.enable_ruby else _PlainExpander)(self.log, options.auto_typecast)
        self._fields: list[tuple[Callable[[_Context], Any], Callable[[_Context], Any]]] = []
        for sec in options.record or []:
            element = sec._element
            for key, attr in element.attrs.items():
                attr.used = True
                if attr.ruby_error:
                    raise ConfigError(f"<record> {key}: {attr.ruby_error}")
                self._fields.append((expander.compile(key, True),
                                     _compile_tree(_parse_value(attr.value, self.log), expander)))
        self._deleters = [RecordAccessor(k) for k in options.remove_keys or []]
        self._keep_keys = options.keep_keys or []
        self._renew = options.renew_record
        self._renew_time_key = options.renew_time_key
        self._hostname = socket.gethostname()

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        c = _Context(tag, self._hostname, self.ctx.clock)
        out: list[Event] = []
        for time, record in events:
            try:
                c.time = time
                c.record = record
                if self._renew:
                    new = {k: record[k] for k in self._keep_keys if k in record}
                else:
                    new = dict(record)
                new.update({kf(c): vf(c) for kf, vf in self._fields})
                if self._renew_time_key is not None and self._renew_time_key in new:
                    time = _time_from_float(new[self._renew_time_key])
                for deleter in self._deleters:
                    deleter.delete(new)
                out.append((time, new))
            except Exception as exc:  # Fluentd: emit_error_event, the record is dropped
                if self.ctx.emitter is not None:
                    self.ctx.emitter.emit_error_event(tag, time, record, exc)
        return out

    def filter(self, tag: str, time: int, record: Record) -> Record | None:
        result = self.filter_batch(tag, [(time, record)])
        return result[0][1] if result else None
