"""The `apache_error` parser: Apache error_log lines (Fluentd ApacheErrorParser's regexp)."""

from __future__ import annotations

from kawa.config import values
from kawa.engine.registry import register
from kawa.plugins.parsers.regexp import RegexpOptions, RegexpParser

# Fluentd lib/fluent/plugin/parser_apache_error.rb (v1.18.0). No time_format: Fluentd parses the
# time with Ruby's Time.parse, which kawa's time parser does for a missing format.
APACHE_ERROR_EXPRESSION = (
    r"/^\[[^ ]* (?<time>[^\]]*)\] \[(?<level>[^\]]*)\](?: \[pid (?<pid>[^\]]*)\])?"
    r"( \[client (?<client>[^\]]*)\])? (?<message>.*)$/"
)


class ApacheErrorOptions(RegexpOptions):
    expression = values.regexp(APACHE_ERROR_EXPRESSION)


@register("parser", "apache_error")
class ApacheErrorParser(RegexpParser):
    Options = ApacheErrorOptions
