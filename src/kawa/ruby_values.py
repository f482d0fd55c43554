"""Ruby's text forms of record values (to_s, inspect, Float#to_s) that Fluentd output depends on.

Shared by grep (matches on `value.to_s`), record_transformer placeholders and the Oj-compat JSON encoder.
"""

from __future__ import annotations

import math
from typing import Any

from kawa.log import ruby_inspect

# Oj compat writes integral floats that fit a C `long long` with "%.1f" (dump_compat.c dump_float).
_LLONG_MIN = -(2 ** 63)
_LLONG_MAX_EXCL = 2 ** 63


def ruby_float_to_s(value: float) -> str:
    """Float#to_s: shortest round-trip digits; exponent form below 1e-4 and from 1e16, as "1.0e+16"."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    # Python's repr switches to exponent form at the same decimal-point positions as Ruby's flo_to_s;
    # only the spelling differs ("1e-05" vs "1.0e-05").
    mant, sep, exp = text.partition("e")
    if not sep:
        return text
    if "." not in mant:
        mant += ".0"
    sign = "-" if exp.startswith("-") else "+"
    return f"{mant}e{sign}{int(exp.lstrip('+-')):02d}"


def oj_float(value: float) -> str:
    """How Oj (compat mode) writes a float: 0.0 for both zeros, "%.1f" for integral long-long values."""
    if value == 0.0:
        return "0.0"
    if value == value and not math.isinf(value) and value == int(value) and _LLONG_MIN <= value < _LLONG_MAX_EXCL:
        return "%.1f" % value
    return ruby_float_to_s(value)


def ruby_inspect_value(value: Any) -> str:
    """Object#inspect as Ruby 3.1 prints it (`{"a"=>1, "b"=>nil}`, `["x", 1.0]`)."""
    if isinstance(value, str):
        return ruby_inspect(value)
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return ruby_float_to_s(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{" + ", ".join(f"{ruby_inspect_value(k)}=>{ruby_inspect_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ruby_inspect_value(v) for v in value) + "]"
    if isinstance(value, bytes):
        return ruby_inspect(value.decode("utf-8", "surrogateescape"))
    return str(value)


def ruby_to_s(value: Any) -> str:
    """Object#to_s: strings as is, nil as "", containers as their inspect form."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if type(value) is int:              # the common non-string case, kept off the longer path
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return ruby_inspect_value(value)    # true/false, floats, containers: to_s is their inspect form


class Bare:
    """A log field printed without quotes (Fluentd prints exception classes as `error_class=TypeError`)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return str(other) == self.text

    def __hash__(self) -> int:
        return hash(self.text)
