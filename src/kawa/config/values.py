"""Converters for Fluentd's config value grammar: string, integer, float, size, time, bool, enum, array, hash, regexp.
Strict and anchored on purpose: Fluentd accepts "abc" as 0.0 and "1.5k" as 5k; we reject both with a clear message."""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Sequence

from kawa.rubyregex import compile_ruby_regexp, parse_slash_regexp

__all__ = [
    "string", "integer", "float_", "size", "time", "bool_", "enum", "array", "hash_", "regexp",
    "make_enum", "make_array", "make_hash", "CONVERTERS", "convert",
]

Converter = Callable[[str], Any]


def _bad(what: str, example: str, raw: object) -> ValueError:
    return ValueError(f"expected {what}, like {example}; got '{raw}'")


def string(raw: str) -> str:
    """Any text is a valid string."""
    return raw


# Ruby's Integer() also accepts 0x/0b/0o prefixes; configs never use them, so decimal only.
_INT_RE = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:_[0-9]+)*(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def integer(raw: str) -> int:
    """Decimal integer with optional sign ("10", "-3", "1_000"); Fluentd's non-strict to_i would take "10abc" as 10."""
    s = raw.strip()
    if not _INT_RE.fullmatch(s):
        raise _bad("an integer", "10", raw)
    return int(s.replace("_", ""))


def float_(raw: str) -> float:
    """Decimal float ("1.5", "-2", "1e3"); Fluentd's non-strict to_f would take "abc" as 0.0."""
    s = raw.strip()
    if not _FLOAT_RE.fullmatch(s):
        raise _bad("a number", "1.5", raw)
    return float(s.replace("_", ""))


_SIZE_RE = re.compile(r"([0-9]+)(?:([kmgt])b?)?", re.IGNORECASE)
_SIZE_MULT = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def size(raw: str) -> int:
    """Byte size: integer with optional k/m/g/t (1024-based, case-insensitive, optional trailing b).

    Fluentd searches /([0-9]+)k/i anywhere, so "1.5k" is 5k there; fractions are rejected here.
    """
    m = _SIZE_RE.fullmatch(raw.strip())
    if not m:
        raise _bad("a size", "8m", raw)
    n = int(m.group(1))
    unit = m.group(2)
    return n * _SIZE_MULT[unit.lower()] if unit else n


_TIME_RE = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+))([smhd]?)")
_TIME_MULT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def time(raw: str) -> float:
    """Duration in seconds: number with optional s/m/h/d ("0.5s", "10m", "30" = 30 s).

    Fluentd reads "0.5s" as 5 (it searches /([0-9]+)s/); we honour the fraction.
    Suffixes are lowercase only, as in Fluentd.
    """
    m = _TIME_RE.fullmatch(raw.strip())
    if not m:
        raise _bad("a duration", "10s", raw)
    return float(m.group(1)) * _TIME_MULT[m.group(2)]


def bool_(raw: str) -> bool:
    """true/yes -> True, false/no -> False, "" -> True (a bare "param" line), as Fluentd.

    Fluentd also maps a value that starts with '#' (a comment swallowed by the parser) to True.
    """
    if raw in ("true", "yes", ""):
        return True
    if raw in ("false", "no"):
        return False
    if raw.startswith("#"):
        return True
    raise _bad("a boolean (true, false, yes, no)", "true", raw)


def enum(raw: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (exact, case-sensitive, as Fluentd's symbol comparison)."""
    if raw in choices:
        return raw
    raise _bad(f"one of {', '.join(choices)}", choices[0] if choices else "''", raw)


def make_enum(choices: Sequence[str]) -> Converter:
    """Bind ``choices`` into a one-argument converter."""
    fixed = tuple(choices)
    return lambda raw: enum(raw, fixed)


def _ruby_split_commas(raw: str) -> list[str]:
    # Ruby: str.strip.split(/\s*,\s*/) drops trailing empty fields and yields [] for ""
    s = raw.strip()
    if not s:
        return []
    parts = re.split(r"\s*,\s*", s)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _reformat(value_type: str | None, v: Any) -> Any:
    """Convert one array/hash element, which may already be a JSON value."""
    if value_type is None:
        return v
    if isinstance(v, str):
        return CONVERTERS[value_type](v)
    if value_type == "string":
        return json.dumps(v) if isinstance(v, (dict, list)) else ("true" if v is True else "false" if v is False else "" if v is None else str(v))
    if value_type == "integer" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if value_type in ("float", "time") and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if value_type == "size" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if value_type == "bool" and isinstance(v, bool):
        return v
    raise _bad(f"a {value_type} element", "1", v)


def array(raw: str, value_type: str | None = None) -> list[Any]:
    """JSON array ('["a","b"]') or comma list ('a, b'); elements converted by ``value_type``."""
    s = raw.strip()
    if s.startswith("["):
        try:
            parsed = json.loads(s)
        except ValueError:
            raise _bad("a JSON array", '["a","b"]', raw) from None
        if not isinstance(parsed, list):
            raise _bad("a JSON array", '["a","b"]', raw)
    else:
        parsed = _ruby_split_commas(s)
    return [_reformat(value_type, v) for v in parsed]


def make_array(value_type: str | None = None) -> Converter:
    """Bind ``value_type`` into a one-argument array converter."""
    return lambda raw: array(raw, value_type)


def hash_(raw: str, value_type: str | None = None) -> dict[str, Any]:
    """JSON object ('{"k":"v"}') or 'k1:v1,k2:v2' (split on the first ':'); values converted by ``value_type``."""
    s = raw.strip()
    if s.startswith("{"):
        try:
            parsed = json.loads(s)
        except ValueError:
            raise _bad("a JSON object", '{"k":"v"}', raw) from None
        if not isinstance(parsed, dict):
            raise _bad("a JSON object", '{"k":"v"}', raw)
    else:
        parsed = {}
        for item in _ruby_split_commas(s):
            key, sep, value = item.partition(":")
            if not sep:
                # Ruby's Hash[] would map the key to nil; a missing ':' is a typo
                raise _bad("key:value pairs", "k1:v1,k2:v2", raw)
            parsed[key] = value
    return {k: _reformat(value_type, v) for k, v in parsed.items()}


def make_hash(value_type: str | None = None) -> Converter:
    """Bind ``value_type`` into a one-argument hash converter."""
    return lambda raw: hash_(raw, value_type)


def regexp(raw: str) -> re.Pattern[str]:
    """``/source/flags`` (flags i, m as Fluentd) or a bare pattern, compiled with Ruby semantics.

    Fluentd silently ignores unknown flag letters (so /a b/x matches "a b"); we reject them.
    """
    if raw.startswith("/"):
        right = raw.rfind("/")
        if right == 0 or right < len(raw) - 3:
            raise _bad("a /regexp/ with at most two flags", "/^a+$/i", raw)
        try:
            source, flags = parse_slash_regexp(raw)
        except ValueError:
            raise _bad("a /regexp/ with flags from i, m", "/^a+$/i", raw) from None
        if "x" in flags:
            raise _bad("a /regexp/ with flags from i, m (Fluentd ignores x)", "/^a+$/i", raw)
    else:
        source, flags = raw, ""
    try:
        return compile_ruby_regexp(source, flags)
    except ValueError as exc:
        raise ValueError(f"expected a regexp, like /^a+$/i; got '{raw}': {exc}") from None


CONVERTERS: dict[str, Converter] = {
    "string": string,
    "integer": integer,
    "float": float_,
    "size": size,
    "time": time,
    "bool": bool_,
    "array": array,
    "hash": hash_,
    "regexp": regexp,
}


def convert(type_name: str, raw: str, **opts: Any) -> Any:
    """Convert ``raw`` by type name; opts: ``list`` for enum, ``value_type`` for array/hash."""
    if type_name == "enum":
        return enum(raw, opts["list"])
    if type_name in ("array", "hash"):
        return CONVERTERS[type_name](raw, opts.get("value_type"))
    try:
        conv = CONVERTERS[type_name]
    except KeyError:
        raise ValueError(f"unknown config value type '{type_name}'") from None
    return conv(raw)
