"""The `csv` parser: one CSV row per text, named by `keys` (Fluentd CSVParser). The normal engine
follows Ruby's CSV.parse_line, including its errors; `parser_engine fast` is Fluentd's quick splitter.
"""

from __future__ import annotations

from typing import Any, Sequence

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import BaseParser, ParsedEvent, ParserOptions

# Fluentd logs CSV::MalformedCSVError messages; "line 1" because each text is parsed alone.
ILLEGAL_QUOTING = "Illegal quoting in line 1."
UNCLOSED_QUOTE = "Unclosed quoted field in line 1."
AFTER_QUOTE = "Any value after quoted field isn't allowed in line 1."
# Hash[keys.zip(nil)] for an empty line: Ruby's TypeError text.
EMPTY_LINE = "wrong argument type NilClass (must respond to :each)"


class MalformedCsv(ValueError):
    pass


def parse_csv_line(text: str, sep: str) -> list[str | None] | None:
    """Ruby CSV.parse_line(text, col_sep: sep): None for "", unquoted empty -> None, quoted "" -> ""."""
    if text == "":
        return None
    if '"' not in text:
        return [f if f else None for f in text.split(sep)]
    out: list[str | None] = []
    i, n, slen = 0, len(text), len(sep)
    while True:
        if i < n and text[i] == '"':
            buf: list[str] = []
            j = i + 1
            while True:
                q = text.find('"', j)
                if q < 0:
                    raise MalformedCsv(UNCLOSED_QUOTE)
                buf.append(text[j:q])
                if text.startswith('"', q + 1):
                    buf.append('"')
                    j = q + 2
                    continue
                i = q + 1
                break
            out.append("".join(buf))
            if i == n:
                return out
            if not text.startswith(sep, i):
                raise MalformedCsv(AFTER_QUOTE)
            i += slen
            continue
        k = text.find(sep, i)
        field = text[i:] if k < 0 else text[i:k]
        if '"' in field:
            raise MalformedCsv(ILLEGAL_QUOTING)
        if "\r" in field or "\n" in field:
            shown = "\\r" if "\r" in field else "\\n"
            raise MalformedCsv(f"Unquoted fields do not allow new line <{shown}> in line 1.")
        out.append(field or None)
        if k < 0:
            return out
        i = k + slen


def parse_csv_fast(text: str, sep: str, keys: list[str]) -> dict[str, Any]:
    """Fluentd CSVParser#parse_fast_internal: split, then re-join columns split inside quotes."""
    text = text.rstrip("\n").removesuffix("\r") if text.endswith(("\n", "\r")) else text
    record: dict[str, Any] = {}
    if not text:
        return record
    columns = text.split(sep)
    i = j = 0
    while j < len(columns):
        column: Any = columns[j]
        quotes = column.count('"')
        if quotes == 0:
            column = column or None
        elif quotes == 1:
            if column.startswith('"'):
                merged = [column]
                j += 1
                while j < len(columns):
                    merged.append(columns[j])
                    if columns[j].endswith('"'):
                        break
                    j += 1
                column = sep.join(merged)[1:-1]
        else:
            if column.startswith('"') and column.endswith('"'):
                column = column[1:-1]
            if quotes > 2:
                column = column.replace('""', '"')
        record[keys[i] if i < len(keys) else None] = column  # type: ignore[index]
        j += 1
        i += 1
    return record


class CsvOptions(ParserOptions):
    keys = option(type="array", value_type="string", doc="Names of the fields, in order")
    delimiter = option(",", "string", doc="Separator between values")
    parser_engine = option("normal", "enum", choices=("normal", "fast"), aliases=("parser_type",),
                           doc="normal: Ruby CSV rules; fast: simple splitting")


@register("parser", "csv")
class CsvParser(BaseParser):
    Options = CsvOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.keys: list[str] = options.keys
        self.fast = options.parser_engine == "fast"

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        events: list[ParsedEvent] = []
        failures: list[ParseFailure] = []
        keys, sep, finish, n = self.keys, self.options.delimiter, self.finish, len(self.keys)
        for text in texts:
            if self.fast:
                finish(parse_csv_fast(text, sep, keys), text, events, failures)
                continue
            try:
                values = parse_csv_line(text, sep)
            except MalformedCsv as exc:
                failures.append(ParseFailure(text, str(exc), "invalid"))
                continue
            if values is None:
                failures.append(ParseFailure(text, EMPTY_LINE, "invalid"))
                continue
            record = dict(zip(keys, values + [None] * (n - len(values))))
            finish(record, text, events, failures)
        return events, failures
