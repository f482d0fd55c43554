"""Ruby (Onigmo) regular expression syntax translated to Python ``re`` patterns.
Covers what Fluentd configs use; anything we cannot translate faithfully raises ValueError."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["compile_ruby_regexp", "parse_slash_regexp", "translate_ruby_regexp"]

# POSIX bracket classes. Ruby's are Unicode-aware; Python's re has no \p{..},
# so these are ASCII approximations (documented limitation).
_POSIX: dict[str, str] = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\v\\f\\r",
    "blank": " \\t",
    "punct": "!-/:-@\\[-`{-~",
    "xdigit": "0-9a-fA-F",
    "cntrl": "\\x00-\\x1f\\x7f",
    "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e",
    "word": "a-zA-Z0-9_",
    "ascii": "\\x00-\\x7f",
}

# Ruby's \d \w \s are ASCII-only; Python's str patterns are Unicode, so spell them out.
_SHORTHAND_OUT: dict[str, str] = {
    "d": "[0-9]", "D": "[^0-9]",
    "w": "[a-zA-Z0-9_]", "W": "[^a-zA-Z0-9_]",
    "s": "[ \\t\\n\\v\\f\\r]", "S": "[^ \\t\\n\\v\\f\\r]",
    "h": "[0-9a-fA-F]", "H": "[^0-9a-fA-F]",
}
_SHORTHAND_IN: dict[str, str] = {
    "d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\v\\f\\r", "h": "0-9a-fA-F",
}

_UNSUPPORTED_ESCAPES: dict[str, str] = {
    "K": "\\K (keep)", "G": "\\G (match start anchor)", "X": "\\X (extended grapheme)",
    "g": "\\g<..> (subexpression call)", "p": "\\p{..} (property class)",
    "P": "\\P{..} (property class)", "y": "\\y (text segment boundary)",
    "Y": "\\Y (text segment boundary)", "O": "\\O",
}

_RUBY_FLAG_TO_PY = {"i": "i", "m": "s", "x": "x"}


def parse_slash_regexp(text: str) -> tuple[str, str]:
    """Split ``/source/flags`` into (source, flags); flags must be from i, m, x."""
    if len(text) < 2 or not text.startswith("/"):
        raise ValueError(f"expected a /regexp/ literal, like /^a+$/i; got '{text}'")
    right = text.rfind("/")
    if right == 0:
        raise ValueError(f"expected a /regexp/ literal with a closing slash, like /^a+$/i; got '{text}'")
    flags = text[right + 1:]
    for f in flags:
        if f not in "imx":
            raise ValueError(f"expected regexp flags from 'imx', like /^a+$/i; got '{text}'")
    return text[1:right], flags


def _flags_to_re(flags: str) -> int:
    out = re.MULTILINE  # Ruby ^ and $ are always line anchors
    for f in flags:
        if f == "i":
            out |= re.IGNORECASE
        elif f == "m":
            out |= re.DOTALL
        elif f == "x":
            out |= re.VERBOSE
        else:
            raise ValueError(f"unsupported Ruby regexp flag '{f}' (supported: i, m, x)")
    return out


def translate_ruby_regexp(source: str, flags: str = "") -> str:
    """Translate Ruby regexp source to Python syntax (flags are not embedded)."""
    out: list[str] = []
    i = 0
    n = len(source)
    # one entry per open group: number of extra ')' owed when it closes (inline flag groups)
    stack: list[int] = []
    # extended-mode state per nesting level, so '#' comments are skipped correctly
    xstack: list[bool] = ["x" in flags]
    top_extra = 0
    names: set[str] = set()

    def fail(what: str) -> ValueError:
        return ValueError(f"unsupported Ruby regexp construct {what} in /{source}/")

    while i < n:
        c = source[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError(f"trailing backslash in /{source}/")
            e = source[i + 1]
            if e in _UNSUPPORTED_ESCAPES:
                raise fail(_UNSUPPORTED_ESCAPES[e])
            if e == "z":
                out.append("\\Z")
            elif e == "Z":
                out.append("(?=\\n?\\Z)")
            elif e in _SHORTHAND_OUT:
                out.append(_SHORTHAND_OUT[e])
            elif e == "k":
                m = re.match(r"k<([A-Za-z_]\w*)>|k'([A-Za-z_]\w*)'", source[i + 1:])
                if not m:
                    raise fail("\\k (numbered or relative backreference)")
                out.append(f"(?P={m.group(1) or m.group(2)})")
                i += 1 + m.end()
                continue
            elif e == "R":
                out.append("(?:\\r\\n|[\\n\\v\\f\\r\\x85\\u2028\\u2029])")
            elif e == "e":
                out.append("\\x1b")
            elif e == "u" and source.startswith("{", i + 2):
                end = source.find("}", i + 3)
                if end < 0:
                    raise fail("\\u{ without closing brace")
                parts = source[i + 3:end].split()
                out.append("".join(re.escape(chr(int(p, 16))) for p in parts))
                i = end + 1
                continue
            elif e == "c" and i + 2 < n:
                out.append(re.escape(chr(ord(source[i + 2]) & 0x1F)))
                i += 3
                continue
            else:
                out.append(c + e)
            i += 2
            continue
        if c == "[":
            i = _translate_class(source, i, out, fail)
            continue
        if xstack[-1] and c == "#":
            # skip comment to end of line: its parentheses must not be parsed
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "(":
            rest = source[i + 1:i + 40]
            if not rest.startswith("?"):
                stack.append(0)
                xstack.append(xstack[-1])
                out.append("(")
                i += 1
                continue
            m = re.match(r"\?<([A-Za-z_]\w*)>|\?'([A-Za-z_]\w*)'", rest)
            if m:
                name = m.group(1) or m.group(2)
                if name in names:
                    raise fail(f"duplicate group name '{name}'")
                names.add(name)
                out.append(f"(?P<{name}>")
                stack.append(0)
                xstack.append(xstack[-1])
                i += 1 + m.end()
                continue
            if rest.startswith("?<") and not rest.startswith(("?<=", "?<!")):
                raise fail(f"group name in '({rest[:12]}'")
            if rest.startswith(("?:", "?=", "?!", "?<=", "?<!", "?>")):
                ln = 3 if rest.startswith(("?<=", "?<!")) else 2
                out.append("(" + rest[:ln])
                stack.append(0)
                xstack.append(xstack[-1])
                i += 1 + ln
                continue
            if rest.startswith("?#"):
                end = source.find(")", i)
                if end < 0:
                    raise fail("unterminated (?# comment")
                i = end + 1
                continue
            m = re.match(r"\?([imx]*)(?:-([imx]*))?([:)])", rest)
            if m:
                on, off, kind = m.group(1), m.group(2) or "", m.group(3)
                py_on = "".join(_RUBY_FLAG_TO_PY[f] for f in on)
                py_off = "".join(_RUBY_FLAG_TO_PY[f] for f in off)
                spec = py_on + ("-" + py_off if py_off else "")
                xs = xstack[-1]
                xs = True if "x" in on else (False if "x" in off else xs)
                # Python (3.11+) forbids mid-pattern global flags, so Ruby's
                # "(?i)rest" becomes "(?i:rest)" closed with the enclosing group.
                if not spec:
                    out.append("(?:")
                else:
                    out.append(f"(?{spec}:")
                if kind == ":":
                    stack.append(0)
                    xstack.append(xs)
                else:
                    if stack:
                        stack[-1] += 1
                    else:
                        top_extra += 1
                    xstack[-1] = xs
                i += 1 + m.end()
                continue
            raise fail(f"group '({rest[:6]}'")
        if c == ")":
            if not stack:
                raise ValueError(f"unmatched ')' in /{source}/")
            out.append(")" * (stack.pop() + 1))
            xstack.pop()
            i += 1
            continue
        out.append(c)
        i += 1
    if stack:
        raise ValueError(f"missing ')' in /{source}/")
    out.append(")" * top_extra)
    return "".join(out)


def _translate_class(source: str, i: int, out: list[str], fail) -> int:
    """Translate a bracket expression starting at source[i] == '['; return the index after it."""
    n = len(source)
    j = i + 1
    parts: list[str] = ["["]
    if j < n and source[j] == "^":
        parts.append("^")
        j += 1
    # whole-class negated POSIX bracket: [[:^alpha:]] -> [^a-zA-Z]
    m = re.match(r"\[:\^(\w+):\]\]", source[j:])
    if m and len(parts) == 1:
        name = m.group(1)
        if name not in _POSIX:
            raise fail(f"POSIX class [:^{name}:]")
        out.append(f"[^{_POSIX[name]}]")
        return j + m.end()
    first = True
    while j < n:
        c = source[j]
        if c == "]" and not first:
            parts.append("]")
            out.append("".join(parts))
            return j + 1
        first = False
        if c == "\\":
            if j + 1 >= n:
                break
            e = source[j + 1]
            if e in _SHORTHAND_IN:
                parts.append(_SHORTHAND_IN[e])
            elif e == "H":
                raise fail("\\H inside a character class")
            elif e in "pPgXK":
                raise fail(f"\\{e} inside a character class")
            elif e == "e":
                parts.append("\\x1b")
            else:
                parts.append(c + e)
            j += 2
            continue
        if c == "[":
            m = re.match(r"\[:(\^?)(\w+):\]", source[j:])
            if m:
                if m.group(1):
                    raise fail(f"negated POSIX class [:^{m.group(2)}:] combined with other items")
                if m.group(2) not in _POSIX:
                    raise fail(f"POSIX class [:{m.group(2)}:]")
                parts.append(_POSIX[m.group(2)])
                j += m.end()
                continue
            raise fail("nested character class")
        if c == "&" and source.startswith("&&", j):
            raise fail("character class intersection &&")
        if c in "-~|" and source.startswith(c * 2, j):
            # Python warns about set operations for doubled chars; escape the pair
            parts.append("\\" + c + "\\" + c)
            j += 2
            continue
        parts.append(c)
        j += 1
    raise ValueError(f"unterminated character class in /{source}/")


@lru_cache(maxsize=1024)
def compile_ruby_regexp(source: str, flags: str = "") -> re.Pattern[str]:
    """Compile Ruby regexp source with Ruby flags (i, m, x) into an equivalent Python pattern.

    Semantics kept: ^/$ are line anchors (re.MULTILINE always on), Ruby ``m`` is
    Python DOTALL, \\d \\w \\s \\h are ASCII. Use ``.search`` for Ruby's ``=~``.
    """
    py_flags = _flags_to_re(flags)
    translated = translate_ruby_regexp(source, flags)
    try:
        return re.compile(translated, py_flags)
    except re.error as exc:
        raise ValueError(f"invalid regexp /{source}/{flags}: {exc}") from None
