"""The `nginx` parser: Fluentd's built-in regexp for nginx's default `combined` log format
(optionally followed by $http_x_forwarded_for), with the same time format.
"""

from __future__ import annotations

from kawa.config import values
from kawa.engine.registry import register
from kawa.plugins.parsers.regexp import RegexpOptions, RegexpParser

# Fluentd lib/fluent/plugin/parser_nginx.rb (v1.18.0), kept byte-for-byte in Ruby syntax.
NGINX_EXPRESSION = (
    r'/^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)'
    r'(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" '
    r'"(?<agent>[^\"]*)"(?:\s+\"?(?<http_x_forwarded_for>[^\"]*)\"?)?)?$/'
)


class NginxOptions(RegexpOptions):
    expression = values.regexp(NGINX_EXPRESSION)
    time_format = "%d/%b/%Y:%H:%M:%S %z"


@register("parser", "nginx")
class NginxParser(RegexpParser):
    Options = NginxOptions
