"""The `kubernetes` parser of the fluent/fluentd-kubernetes-daemonset images (their plugins/parser_kubernetes.rb):
the glog lines of kubelet, kube-proxy, kube-apiserver and the other node components, e.g.

    I0204 07:32:30.020537    3368 server.go:1048] POST /stats/container/: (13.972191ms) 200

A regexp parser whose expression and time format are fixed (whatever the section says, as there).
The year is not in the line: it is the current one, as Ruby's strptime gives it.
"""

from __future__ import annotations

from typing import Any

from kawa.config import values
from kawa.engine.registry import register
from kawa.plugins.base import PluginContext
from kawa.plugins.parsers.regexp import RegexpOptions, RegexpParser

GLOG_EXPRESSION = r"/^(?<severity>\w)(?<time>\d{4} [^\s]*)\s+(?<pid>\d+)\s+(?<source>[^ \]]+)\] (?<message>.*)/m"
GLOG_TIME_FORMAT = "%m%d %H:%M:%S.%N"


class KubernetesParserOptions(RegexpOptions):
    expression = values.regexp(GLOG_EXPRESSION)
    time_format = GLOG_TIME_FORMAT


@register("parser", "kubernetes")
class KubernetesParser(RegexpParser):
    Options = KubernetesParserOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        options.expression = values.regexp(GLOG_EXPRESSION)       # the image's configure sets both
        options.time_format = GLOG_TIME_FORMAT
        super().__init__(options, ctx)
