"""The `apache` parser: Fluentd's older regexp for Apache common/combined lines (string values)."""

from __future__ import annotations

from kawa.config import values
from kawa.engine.registry import register
from kawa.plugins.parsers.regexp import RegexpOptions, RegexpParser

# Fluentd lib/fluent/plugin/parser_apache.rb (v1.18.0)
APACHE_EXPRESSION = (
    r'/^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" '
    r'(?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$/'
)


class ApacheOptions(RegexpOptions):
    expression = values.regexp(APACHE_EXPRESSION)
    time_format = "%d/%b/%Y:%H:%M:%S %z"


@register("parser", "apache")
class ApacheParser(RegexpParser):
    Options = ApacheOptions
