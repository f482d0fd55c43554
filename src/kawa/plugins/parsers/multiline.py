"""The `multiline` parser: format1..format20 joined into one /m regexp applied to several lines,
with in_tail's line buffering (format_firstline starts an event) kept per stream inside the parser."""

from __future__ import annotations

import re
from typing import Any

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.errors import ConfigError, Problem
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import NOT_MATCHED, ParsedEvent, ParserOptions
from kawa.plugins.parsers._stateful import StatefulLineParser
from kawa.rubyregex import compile_ruby_regexp

FORMAT_MAX_NUM = 20          # Fluentd MultilineParser::FORMAT_MAX_NUM
INCOMPLETE_BEFORE_FIRST = "got incomplete line before first line"


class MultilineOptions(ParserOptions):
    format_firstline = option(None, "string", doc="/regexp/ that marks the first line of an event")
    unmatched_lines = option(None, "string", doc="Emit unmatched text as {'unmatched_line': text}")
    time_key = "time"
    locals().update({f"format{i}": option(None, "string", doc=f"Regexp part {i} (/.../)")
                     for i in range(1, FORMAT_MAX_NUM + 1)})


def _strip_slashes(value: str, key: str) -> str:
    if not (value.startswith("/") and value.endswith("/") and len(value) >= 2):
        raise ConfigError([Problem(f"format should be Regexp, need //, in {key}: '{value}'", None, ())])
    return value[1:-1]


@register("parser", "multiline")
class MultilineParser(StatefulLineParser):
    Options = MultilineOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        parts: list[str] = []
        prev = None
        for i in range(1, FORMAT_MAX_NUM + 1):
            value = getattr(options, f"format{i}")
            if i > 1 and prev is None and value is not None:
                raise ConfigError([Problem(f"Jump of format index found. format{i - 1} is missing.", None, ())])
            prev = value
            if value is not None:
                parts.append(_strip_slashes(value, f"format{i}"))
        source = "".join(parts)
        try:
            self.expression: re.Pattern[str] = compile_ruby_regexp(source, "m")
        except ValueError as exc:
            raise ConfigError([Problem(f"Invalid regexp '{source}': {exc}", None, ())]) from None
        if not self.expression.groupindex:
            raise ConfigError([Problem(f"Invalid regexp '{source}': No named captures", None, ())])
        first = options.format_firstline
        self.firstline = compile_ruby_regexp(_strip_slashes(first, "format_firstline")) if first else None
        self.emit_unmatched = bool(options.unmatched_lines)

    # Fluentd MultilineParser#parse: match, then keep matching the rest (post_match) of the text.
    def parse_text(self, text: str, events: list[ParsedEvent], failures: list[ParseFailure]) -> bool:
        matched = False
        while True:
            m = self.expression.search(text)
            if m is None:
                if self.emit_unmatched:
                    events.append((None, {"unmatched_line": text}))
                else:
                    failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
                return matched
            record = {k: v for k, v in m.groupdict().items() if v is not None}
            self.finish(record, text, events, failures)
            matched = True
            text = text[m.end():]
            if text.startswith("\n"):
                text = text[1:]
            if not text:
                return True

    # State: [number of the first held line, held lines] (a list: long stack traces join once).
    def _feed(self, state: Any, text: str, events: list[ParsedEvent], failures: list[ParseFailure]) -> Any:
        if self.firstline is not None:
            if self.firstline.search(text):
                if state is not None:
                    self.parse_text("\n".join(state[1]), events, failures)
                return [self.line_no, [text]]
            if state is None:
                failures.append(ParseFailure(text, INCOMPLETE_BEFORE_FIRST, "incomplete"))
                return None
            state[1].append(text)
            return state
        # Without format_firstline Fluentd re-tries the whole buffer after every line.
        if state is None:
            state = [self.line_no, []]
        state[1].append(text)
        buf = "\n".join(state[1])
        probe_events: list[ParsedEvent] = []
        probe_failures: list[ParseFailure] = []
        self.parse_text(buf + "\n", probe_events, probe_failures)
        if probe_events and not any(f.kind == "invalid" for f in probe_failures) and \
                not any("unmatched_line" in r for _, r in probe_events[:1]):
            self.parse_text(buf, events, failures)
            return None
        return state

    def _flush(self, state: Any, events: list[ParsedEvent], failures: list[ParseFailure]) -> None:
        self.parse_text("\n".join(state[1]), events, failures)

    def _held_starts(self, state: Any) -> list[int]:
        return [state[0]]

    def parse_alone(self, text: str) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        self.parse_text(text, events, failures)
        return events, failures
