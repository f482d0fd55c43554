"""The `multiline_kubernetes` parser of the fluent/fluentd-kubernetes-daemonset images: the `kubernetes`
parser's glog lines, with the lines that follow one (a stack, a dump) joined to it by the multiline
parser (format_firstline /^\\w\\d{4}/). Format and time format are fixed, as there."""

from __future__ import annotations

from typing import Any

from kawa.engine.registry import register
from kawa.plugins.base import PluginContext
from kawa.plugins.parsers.kubernetes import GLOG_TIME_FORMAT
from kawa.plugins.parsers.multiline import MultilineOptions, MultilineParser

FIRSTLINE = r"/^\w\d{4}/"
FORMAT1 = r"/^(?<severity>\w)(?<time>\d{4} [^\s]*)\s+(?<pid>\d+)\s+(?<source>[^ \]]+)\] (?<message>.*)/"


class MultilineKubernetesOptions(MultilineOptions):
    format_firstline = FIRSTLINE
    format1 = FORMAT1
    time_format = GLOG_TIME_FORMAT


@register("parser", "multiline_kubernetes")
class MultilineKubernetesParser(MultilineParser):
    Options = MultilineKubernetesOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        options.format_firstline, options.format1, options.time_format = FIRSTLINE, FORMAT1, GLOG_TIME_FORMAT
        super().__init__(options, ctx)
