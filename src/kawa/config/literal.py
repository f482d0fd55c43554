"""Value-level rules of Fluentd's config syntax: the token regexes, escapes and JSON re-serialization.

Regexes are Fluentd's own (basic_parser.rb) in Python spelling; Ruby's \\z is Python's \\Z."""

from __future__ import annotations

import json
import re

# basic_parser.rb
LINE_END = r"(?:[ \t]*(?:\#.*)?(?:\Z|[\r\n]))+"
SPACING = r"(?:[ \t\r\n]|\Z|\#.*?(?:\Z|[\r\n]))+"
ZERO_OR_MORE_SPACING = r"(?:[ \t\r\n]|\Z|\#.*?(?:\Z|[\r\n]))*"
SPACING_WITHOUT_COMMENT = r"(?:[ \t\r\n]|\Z)+"
LINE_END_WITHOUT_SPACING_AND_COMMENT = r"(?:\Z|[\r\n])"

LINE_END_RE = re.compile(LINE_END)
SPACING_RE = re.compile(SPACING)
SPACING_WITHOUT_COMMENT_RE = re.compile(SPACING_WITHOUT_COMMENT)
# An element argument ends where optional spacing (comments included) reaches the closing `>`.
ARG_BOUNDARY = rf"(?:{ZERO_OR_MORE_SPACING}\>)"
ELEMENT_NAME_RE = re.compile(r"[a-zA-Z0-9_]+")
INCLUDE_RE = re.compile(rf"(?:@include|include){SPACING}")
# Inside a double-quoted string: one character right before a line end (or end of input).
DQ_CHAR_BEFORE_EOL_RE = re.compile(rf'[^"]{LINE_END_WITHOUT_SPACING_AND_COMMENT}')
# scan_json: `#{...}` is treated as embedded code only when a brace group follows the `#`.
JSON_EMBED_RE = re.compile(r"\{[^}]+\}")


_nonquoted_cache: dict[str, re.Pattern[str]] = {}


def nonquoted_re(boundary: str) -> re.Pattern[str]:
    """Unquoted text up to `boundary`. A `#` is always taken as text: only a boundary that starts
    before it (e.g. the space in ` #`) can end the value, which is why `a#b` keeps its `#`."""
    pattern = _nonquoted_cache.get(boundary)
    if pattern is None:
        pattern = re.compile(rf"(?:\#|(?!{boundary}).)*")
        _nonquoted_cache[boundary] = pattern
    return pattern


class EscapeError(ValueError):
    """A back-slash escape Fluentd rejects (letters and digits other than r n t f b 0)."""


def double_quoted_escape(c: str) -> str:
    """The character a `\\c` escape stands for inside a double-quoted value."""
    simple = {'"': '"', "'": "'", "r": "\r", "n": "\n", "t": "\t", "f": "\f", "b": "\b", "0": "\0"}
    if c in simple:
        return simple[c]
    if c.isascii() and c.isalnum():
        raise EscapeError(f"unexpected back-slash escape character '{c}'")
    return c  # any other symbol stands for itself: \$ \{ \# \\ ...


_DUMP_ESCAPES = {'"': '\\"', "'": "\\'", "\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t",
                 "\f": "\\f", "\b": "\\b"}


def escape_for_dump(value: str) -> str:
    """Fluentd's Element.unescape_parameter: the body of a double-quoted value that reads back as `value`."""
    return "".join(_DUMP_ESCAPES.get(c, c) for c in value)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in JSON")


def json_parse(text: str) -> object:
    """Ruby's JSON.parse as Fluentd calls it: strict JSON, no NaN/Infinity. Raises ValueError."""
    return json.loads(text, parse_constant=_reject_constant)


def _ruby_float(value: float) -> str:
    # Ruby's Float#to_s switches to exponent form at the same points as Python's repr but always
    # keeps a fraction: 1e+16 is "1.0e+16", 100.0 stays "100.0".
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{exponent}"
    return text


def json_dump(value: object) -> str:
    """Ruby's JSON.dump: compact, non-ASCII kept as is, '/' not escaped, Ruby float spelling."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json_dump(k)}:{json_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(json_dump(v) for v in value) + "]"
    if isinstance(value, float):
        return _ruby_float(value)
    return json.dumps(value, ensure_ascii=False)
