"""Fluentd tag patterns (`*`, `**`, `{a,b}`, several patterns separated by spaces) compiled to regexes."""

from __future__ import annotations

import re
from functools import lru_cache


def _translate(pattern: str) -> str:
    """One Fluentd glob to a regex body. `a.**` also matches `a` (Fluentd's rule)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == ".":
                    out.append(r"(?:.*\.|)")       # `**.` matches zero or more leading parts
                    i += 1
                elif out and out[-1] == r"\.":
                    out[-1] = r"(?:\..*|)"        # `.**` matches zero or more trailing parts
                else:
                    out.append(".*")
                continue
            out.append(r"[^.]*")
        elif c == "{":
            close = pattern.find("}", i)
            if close < 0:
                raise ValueError(f"unbalanced '{{' in tag pattern {pattern!r}")
            alts = pattern[i + 1:close].split(",")
            out.append("(?:" + "|".join(_translate(a) for a in alts) + ")")
            i = close + 1
            continue
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


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
