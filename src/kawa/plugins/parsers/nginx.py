"""The `nginx` parser: Fluentd's built-in regexp for nginx's default `combined` log format
(optionally followed by $http_x_forwarded_for), with the same time format.
"""

from __future__ import annotations

from typing import Any, Sequence

from kawa.config import values
from kawa.engine.registry import register
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._access_log import fast_variant, matcher, trim_path
from kawa.plugins.parsers._common import ParsedEvent
from kawa.plugins.parsers.regexp import RegexpOptions, RegexpParser, parse_with

# Fluentd lib/fluent/plugin/parser_nginx.rb (v1.18.0), kept byte-for-byte in Ruby syntax.
NGINX_EXPRESSION = (
    r'/^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)'
    r'(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" '
    r'"(?<agent>[^\"]*)"(?:\s+\"?(?<http_x_forwarded_for>[^\"]*)\"?)?)?$/'
)


NGINX_REQUEST = r'"(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?"'
NGINX_FAST = fast_variant(NGINX_EXPRESSION[1:-1], NGINX_REQUEST)


class NginxOptions(RegexpOptions):
    expression = values.regexp(NGINX_EXPRESSION)
    time_format = "%d/%b/%Y:%H:%M:%S %z"


@register("parser", "nginx")
class NginxParser(RegexpParser):
    Options = NginxOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        # Only while the expression is the built-in one (a user may set their own).
        if self.expression.pattern == values.regexp(NGINX_EXPRESSION).pattern:
            self._match = matcher(NGINX_FAST, self._match)
            self._fix = trim_path
        else:
            self._fix = None

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        return parse_with(self, self._match, texts, self._fix)
