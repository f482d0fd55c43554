"""fluent-plugin-record-modifier's filter: set fields from `<record>` (with `${...}` Ruby expressions run
by kawa's safe evaluator), remove_keys or whitelist_keys, `<replace>` regexp substitutions, char_encoding.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event, Record
from kawa.plugins.base import Filter, PluginContext
from kawa.plugins.filters import _ruby_eval as rb
from kawa.plugins.filters.record_transformer import RecordSection
from kawa.record_accessor import RecordAccessor
from kawa.rubyregex import compile_ruby_regexp

Expander = Callable[[dict[str, Any]], Any]
_RUNTIME_ERRORS = (rb.RubyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError)


class ReplaceSection(Options):
    key = option(doc="Field the substitution applies to.")
    expression = option(doc="Ruby regexp, /.../ (no flags) or a bare pattern.")
    replace = option(doc="Replacement; \\1, \\k<name> and \\0 refer to the match as in Ruby's gsub.")


class RecordModifierOptions(Options):
    prepare_value = option(None, doc="Ruby code run at configure time; not supported by kawa (a config error).")
    char_encoding = option(None, doc="'from' or 'from:to'; kawa strings are already decoded, so only "
                           "'...:utf-8' has an effect: invalid bytes become U+FFFD.")
    remove_keys = option(None, "array", value_type="string", doc="Keys to remove ($.a.b allowed).")
    whitelist_keys = option(None, doc="Comma-separated keys to keep (plus the <record> keys).")
    record = section(RecordSection, multi=True, doc="Fields to set: `key value`, `${...}` evaluated.")
    replace = section(ReplaceSection, multi=True, doc="Regexp substitutions on one field.")


def compile_value(text: str) -> Expander:
    """DynamicExpander: one `${expr}` alone keeps the value's type; else a double-quoted Ruby string."""
    if "${" not in text:
        return lambda env: text
    if text.count("${") == 1 and text.startswith("${") and text.endswith("}"):
        node = rb.parse_expression(text[2:-1])
    else:
        node = rb.parse_expression('"' + text.replace("${", "#{") + '"')
    return lambda env: rb.evaluate(node, env)


def ruby_gsub_replacer(replacement: str) -> Callable[[re.Match[str]], str]:
    """Ruby's gsub replacement string: \\0 \\& \\1..\\9 \\k<name> \\\\; other escapes stay as written."""
    pieces: list[str | tuple[int | str]] = []   # literal text, or (group,)
    buf: list[str] = []
    i = 0
    while i < len(replacement):
        ch = replacement[i]
        nxt = replacement[i + 1] if i + 1 < len(replacement) else ""
        if ch != "\\" or not nxt:
            buf.append(ch)
            i += 1
            continue
        ref: str | int | None = None
        width = 2
        if nxt.isdigit():
            ref = int(nxt)
        elif nxt == "&":
            ref = 0
        elif nxt == "\\":
            buf.append("\\")
        elif nxt == "k" and replacement.startswith("<", i + 2) and ">" in replacement[i + 3:]:
            end = replacement.index(">", i + 3)
            ref, width = replacement[i + 3:end], end + 1 - i
        else:
            buf.append(ch + nxt)
        if ref is not None:
            pieces.extend(["".join(buf), (ref,)])
            buf = []
        i += width
    pieces.append("".join(buf))

    def replace(m: re.Match[str]) -> str:
        out = []
        for p in pieces:
            if isinstance(p, str):
                out.append(p)
            else:
                try:
                    out.append(m.group(p[0]) or "")
                except IndexError:  # a group the regexp does not have is empty in Ruby
                    out.append("")
        return "".join(out)

    return replace


@register("filter", "record_modifier")
class RecordModifierFilter(Filter):
    Options = RecordModifierOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        if options.prepare_value is not None:
            raise ConfigError("prepare_value runs arbitrary Ruby code, which kawa does not do; "
                              "compute the value in <record> with ${...} instead")
        self._scrub = self._char_encoding(options.char_encoding)
        self._fields: list[tuple[str, Expander]] = []
        for sec in options.record or []:
            for key, attr in sec._element.attrs.items():
                attr.used = True
                self._fields.append((key, compile_value(attr.value)))
        self._needs_env = any("${" in attr.value for sec in options.record or []
                              for attr in sec._element.attrs.values())
        if options.remove_keys is not None and options.whitelist_keys is not None:
            raise ConfigError("remove_keys and whitelist_keys are exclusive with each other.")
        self._removers = [RecordAccessor(k) for k in options.remove_keys or []]
        self._keep: list[str] | None = None
        if options.whitelist_keys is not None:
            keep = [k.strip() for k in options.whitelist_keys.split(",")]
            self._keep = list(dict.fromkeys(keep + [k for k, _ in self._fields]))
        self._replaces = [(r.key, self._regexp(r.expression), ruby_gsub_replacer(r.replace))
                          for r in options.replace or []]

    def _regexp(self, value: str) -> re.Pattern[str]:
        if value.startswith("/") and value.endswith("/") and len(value) >= 2:
            source = value[1:-1]
        else:
            self.log.warn(f'You should use "pattern /{value}/" instead of "pattern {value}"')
            source = value
        try:
            return compile_ruby_regexp(source)
        except ValueError as exc:
            raise ConfigError(f"<replace> expression {value}: {exc}") from None

    @staticmethod
    def _char_encoding(spec: str | None) -> bool:
        if spec is None:
            return False
        _, sep, to = spec.partition(":")
        if not sep:
            return False    # force_encoding only: kawa strings already carry their characters
        if to.lower().replace("-", "") != "utf8":
            raise ConfigError(f"char_encoding {spec}: kawa only converts to UTF-8")
        return True

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        env: dict[str, Any] = {"tag": tag, "tag_parts": tag.split(".")}
        out: list[Event] = []
        for time, record in events:
            try:
                new = self._modify(env, time, record)
            except Exception as exc:  # Fluentd's filter_stream: an error event, the record is dropped
                if self.ctx.emitter is not None:
                    self.ctx.emitter.emit_error_event(tag, time, record, _ruby_error(exc))
                continue
            out.append((time, new))
        return out

    def _modify(self, env: dict[str, Any], time: int, record: Record) -> Record:
        new = dict(record)     # Fluentd edits in place; kawa leaves the router's record to other consumers
        if self._fields:
            if self._needs_env:
                env["time"] = time // 1_000_000_000      # EventTime: prints and converts as its seconds
                env["record"] = new
            for key, expand in self._fields:
                new[key] = expand(env)
        for remover in self._removers:
            remover.delete(new)
        if self._keep is not None:
            new = {k: new[k] for k in self._keep if k in new}
        for key, pattern, replacer in self._replaces:
            if key in new:
                value = new[key]
                if not isinstance(value, str):
                    raise _RubyRaised(f"no implicit conversion of {rb.ruby_class(value)} into String", "TypeError")
                if pattern.search(value) is not None:
                    new[key] = pattern.sub(replacer, value)
        if self._scrub:
            new = _scrub_values(new)
        return new

    def filter(self, tag: str, time: int, record: Record) -> Record | None:
        result = self.filter_batch(tag, [(time, record)])
        return result[0][1] if result else None


class _RubyRaised(Exception):
    """An error named as Ruby names it in the error event."""

    def __init__(self, message: str, error_class: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def _ruby_error(exc: Exception) -> Exception:
    if isinstance(exc, rb.RubyError):
        return _RubyRaised(str(exc), exc.ruby_class)
    if isinstance(exc, KeyError):     # a name the record_modifier expander does not define (hostname ...)
        return _RubyRaised(f"undefined local variable or method `{exc.args[0]}'", "NameError")
    if isinstance(exc, _RUNTIME_ERRORS):
        return _RubyRaised(str(exc), "TypeError" if isinstance(exc, TypeError) else "StandardError")
    return exc


def _scrub_values(value: Any) -> Any:
    """encode!(UTF-8, invalid: :replace): raw bytes kept as surrogates become U+FFFD."""
    if isinstance(value, str):
        if value.isascii():
            return value
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _scrub_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_values(v) for v in value]
    return value
