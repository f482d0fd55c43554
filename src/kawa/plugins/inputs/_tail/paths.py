"""Which files a tail source reads: Fluentd's path expansion (strftime, glob, exclude_path) and the
tag a file gets (`tag app.*` -> `app.var.log.x.log`).
"""

from __future__ import annotations

import glob as _glob
import os
import re
import time
from typing import Iterable

_EXTENDED_CHARS = re.compile(r"[*?]|\[.*\]")
_BRACES = re.compile(r"\{.*,.*\}")


def split_tag(tag: str) -> tuple[str, str] | None:
    """(prefix, suffix) around the `*` of the tag, as Ruby's `tag.split('*')`; None without `*`."""
    if "*" not in tag:
        return None
    parts = tag.split("*")
    while parts and parts[-1] == "":      # Ruby's String#split drops trailing empty fields
        parts.pop()
    prefix = parts[0] if parts else ""
    suffix = parts[1] if len(parts) > 1 else ""
    return prefix, suffix


def path_to_tag(path: str) -> str:
    """Fluentd TailWatcher#tag: "/" -> ".", runs of "." squeezed, leading "." removed."""
    return re.sub(r"\.+", ".", path.replace("/", ".")).removeprefix(".")


def uses_glob(path: str, policy: str) -> bool:
    if policy == "always":
        return bool(_EXTENDED_CHARS.search(path) or _BRACES.search(path))
    if policy == "extended":
        return bool(_EXTENDED_CHARS.search(path))
    return "*" in path


def expand_braces(pattern: str) -> list[str]:
    """Ruby Dir.glob's `{a,b}` alternatives (Python's glob has none)."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    for end in range(start, len(pattern)):
        ch = pattern[end]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
    else:
        return [pattern]
    body, alternatives, depth, last = pattern[start + 1:end], [], 0, 0
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            alternatives.append(body[last:i])
            last = i + 1
    alternatives.append(body[last:])
    head, tail = pattern[:start], pattern[end + 1:]
    out: list[str] = []
    for alt in alternatives:
        out.extend(expand_braces(head + alt + tail))
    return out


def ruby_glob(pattern: str) -> list[str]:
    """Dir.glob: brace alternatives in order, each one's matches sorted (Ruby >= 3.0 sorts)."""
    found: list[str] = []
    for p in expand_braces(pattern):
        found.extend(sorted(_glob.glob(p, recursive="**" in p)))
    return found


def strftime_path(path: str, now: float) -> str:
    return time.strftime(path, time.localtime(now)) if "%" in path else path


def static_directories(paths: Iterable[str], policy: str) -> set[str]:
    """Directories that can be watched as such: the parent of each pattern without glob in it."""
    out: set[str] = set()
    for p in paths:
        parent = os.path.dirname(p) or "."
        if not uses_glob(parent, policy) and "%" not in parent:
            out.add(parent)
    return out
