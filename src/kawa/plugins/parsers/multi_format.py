"""The `multi_format` parser (fluent-plugin-multi-format-parser): `<pattern>` sections, each naming a
parser with `format`; the first pattern that parses a line (with a time) gives its record."""

from __future__ import annotations

from typing import Any, Sequence

from kawa.config.element import Attr, Element
from kawa.config.schema import BindContext, section
from kawa.engine.registry import register
from kawa.errors import ConfigError, Problem
from kawa.plugins.base import ParseFailure, Parser, PluginContext
from kawa.plugins.parsers._common import NOT_MATCHED, BaseParser, ParsedEvent, ParserOptions
from kawa.plugins.parsers._stateful import StatefulLineParser


class MultiFormatOptions(ParserOptions):
    pattern = section(plugin_kind="parser", multi=True, doc="One parser per <pattern>, tried in order")

    @classmethod
    def bind(cls, element: Element, ctx: BindContext, path: tuple[str, ...] = ()) -> "MultiFormatOptions":
        for child in element.children("pattern"):
            _format_to_type(child)
        return super().bind(element, ctx, path)  # type: ignore[return-value]


def _format_to_type(pattern: Element) -> None:
    """`format json` / `format /re/` inside <pattern> name the parser as @type does elsewhere."""
    attr = pattern.attrs.pop("format", None)
    if attr is None or "@type" in pattern.attrs:
        return
    value = attr.value
    if len(value) >= 2 and value.startswith("/") and value.rfind("/") > 0:   # Fluentd new_parser("/re/")
        pattern.attrs["@type"] = Attr("regexp", attr.location)
        pattern.attrs.setdefault("expression", Attr(value, attr.location))
    else:
        pattern.attrs["@type"] = Attr(value, attr.location)


@register("parser", "multi_format")
class MultiFormatParser(BaseParser):
    Options = MultiFormatOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.parsers: list[Parser] = [self.build_child(spec, f"pattern{i}")  # type: ignore[misc]
                                      for i, spec in enumerate(options.pattern) if spec is not None]
        if not self.parsers:
            raise ConfigError([Problem("multi_format needs at least one <pattern> with 'format'", None, ())])
        for p in self.parsers:
            if isinstance(p, StatefulLineParser):
                raise ConfigError([Problem(f"multi_format cannot use the line-joining parser "
                                           f"'{type(p).__name__}' in a <pattern>", None, ())])
        # Fluentd: a parser that yields no time (estimate_current_event false) did not match.
        self.tried = [(p, getattr(p, "estimate_current_event", True)) for p in self.parsers]

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        first, first_estimates = self.tried[0]
        # Most lines match the first pattern: one batch call, the rest line by line, in order.
        got, bad = first.parse_batch(texts)
        if not bad and len(got) == len(texts) and (first_estimates or all(t is not None for t, _ in got)):
            return got, []
        for text in texts:
            for parser, estimates in self.tried:
                try:
                    got, _bad = parser.parse_batch((text,))
                except Exception:       # Fluentd: any parser error means "try the next pattern"
                    continue
                if got and (estimates or got[0][0] is not None):
                    events.append(got[0])
                    break
            else:
                failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
        return events, failures
