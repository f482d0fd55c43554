"""Fluentd tag patterns (`*`, `**`, `{a,b}`, `/regex/`, several patterns separated by spaces) as regexes.

The translation follows Fluentd's GlobMatchPattern (lib/fluent/match.rb) rule for rule, so edge
cases (`a.**` matching `a`, `**.a` matching `a`, nested braces, a trailing `.`) route the same.
"""

from __future__ import annotations

import re
from functools import lru_cache


def _translate(pattern: str) -> str:
    """One Fluentd glob (or `/regex/`) to a Python regex body, to be used with fullmatch."""
    if pattern.startswith("/"):
        if len(pattern) < 2 or not pattern.endswith("/"):
            raise ValueError(f"invalid match - regex: {pattern!r} (a regex pattern is written /.../)")
        from kawa.rubyregex import translate_ruby_regexp

        return translate_ruby_regexp(pattern[1:-1])
    groups: list[list[str]] = []   # alternatives of each open `{`, innermost last
    parts: list[str] = [""]        # regex text being built, one per brace nesting level
    escape = dot = False
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if escape:
            parts[-1] += re.escape(c)
            escape = False
            i += 1
            continue
        if pattern.startswith("**", i):
            if dot:
                # `x.**`: the dot and everything after it are optional, but `x` must end a part
                parts[-1] += r"(?![^.])"
                dot = False
            if pattern.startswith(".", i + 2):
                parts[-1] += r"(?:.*\.|\A)"     # `**.` is zero or more leading parts
                i += 3
            else:
                parts[-1] += ".*"
                i += 2
            continue
        if dot:
            parts[-1] += r"\."
            dot = False
        if c == "\\":
            escape = True
        elif c == ".":
            dot = True          # emitted with the next character; a trailing `.` is dropped, as in Fluentd
        elif c == "*":
            parts[-1] += r"[^.]*"
        elif c == "{":
            groups.append([])
            parts.append("")
        elif c == "}" and groups:
            groups[-1].append(parts.pop())
            parts[-1] += "(?:" + "|".join(groups.pop()) + ")"
        elif c == "," and groups:
            groups[-1].append(parts.pop())
            parts.append("")
        else:
            parts[-1] += re.escape(c)
        i += 1
    while groups:
        # An unclosed `{`: Fluentd unions the alternatives as literal strings (Regexp.union of Strings).
        groups[-1].append(parts.pop())
        parts[-1] += "(?:" + "|".join(re.escape(a) for a in groups.pop()) + ")"
    return parts[-1]


class TagPattern:
    """A `<match>`/`<filter>` argument: one or more space-separated globs; matches if any does."""

    __slots__ = ("source", "_regex")

    def __init__(self, source: str) -> None:
        self.source = source
        parts = source.split() or ["**"]
        self._regex = re.compile("|".join(f"(?:{_translate(p)})" for p in parts))

    def match(self, tag: str) -> bool:
        return self._regex.fullmatch(tag) is not None

    def __repr__(self) -> str:
        return f"TagPattern({self.source!r})"


@lru_cache(maxsize=1024)
def compile_pattern(source: str) -> TagPattern:
    return TagPattern(source)
