"""The out_file formatter: "<time>\\t<tag>\\t<json>\\n", out_file's default line format (JSON via the json gem's
spelling, time ISO 8601 unless time_format is given).
"""

from __future__ import annotations

from typing import Any

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.event import Record
from kawa.plugins.base import Formatter
from kawa.plugins.formatters.json import json_gem_dumps
from kawa.timeformat import TimeFormatter

NEWLINES = {"lf": "\n", "crlf": "\r\n"}


class OutFileFormatterOptions(Options):
    output_time = option(True, "bool", doc="Start the line with the event time.")
    output_tag = option(True, "bool", doc="Write the tag after the time.")
    delimiter = option("\t", doc="Field delimiter: SPACE, COMMA, anything else means TAB (as Fluentd).")
    newline = option("lf", "enum", choices=("lf", "crlf"), doc="Line ending.")
    time_type = option("string", "enum", choices=("string", "float", "unixtime"), doc="How the time is written.")
    time_format = option(None, doc="strftime format (default ISO 8601).")
    localtime = option(True, "bool", doc="Format in local time.")
    utc = option(False, "bool", doc="Format in UTC.")
    timezone = option(None, doc="Zone to format in, e.g. +09:00.")


def fluentd_delimiter(value: str) -> str:
    upper = value.upper()
    if "SPACE" in upper:
        return " "
    if "COMMA" in upper:
        return ","
    return "\t"


@register("formatter", "out_file")
class OutFileFormatter(Formatter):
    Options = OutFileFormatterOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.delimiter = fluentd_delimiter(options.delimiter)
        self.newline = NEWLINES[options.newline]
        self._time = TimeFormatter(options.time_format, localtime=options.localtime and not options.utc,
                                   utc=options.utc, timezone=options.timezone, time_type=options.time_type).format

    def format(self, tag: str, time: int, record: Record) -> str:
        delim = self.delimiter
        head = f"{self._time(time)}{delim}" if self.options.output_time else ""
        if self.options.output_tag:
            head += f"{tag}{delim}"
        return f"{head}{json_gem_dumps(record)}{self.newline}"
