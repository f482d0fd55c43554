"""Time formatting with Ruby's strftime semantics (and the strptime gem's fast %Y/%N path Fluentd uses).
A format compiles to a list of per-second and sub-second parts; the per-second text is cached."""

from __future__ import annotations

import math
import re
import time as _time
from typing import Any, Callable
from zoneinfo import ZoneInfo

from kawa.timeparse import _CACHE_MAX, _DAYS, _EXPAND, _MONTHS, NS
from kawa.timeutil import (
    _local_fixed_offset, _local_offset_at, _zone_offset_at, civil_from_days, days_from_civil, resolve_timezone,
)

_GEM_STRFTIME = set("HLMNSYdbmyz")
_STRF_TOKEN = re.compile(r"%([-_0^#]*)(\d*)(:{0,2})([a-zA-Z%+])")


def _is_gem_strftime(fmt: str) -> bool:
    i = 0
    while True:
        j = fmt.find("%", i)
        if j < 0:
            return True
        if j + 1 >= len(fmt) or fmt[j + 1] not in _GEM_STRFTIME:
            return False
        i = j + 2


def _pad(v: int, width: int, flags: str, default_pad: str = "0") -> str:
    if "-" in flags:
        return str(v)
    pad = " " if "_" in flags else "0" if "0" in flags else default_pad
    sign = "-" if v < 0 else ""
    digits = str(abs(v))
    if pad == "0":
        return sign + digits.rjust(width - len(sign), "0")
    return (sign + digits).rjust(width)


def _fmt_offset(off: int, colons: int) -> str:
    sign = "-" if off < 0 else "+"
    a = abs(off)
    h, rem = divmod(a, 3600)
    mi, s = divmod(rem, 60)
    if colons == 0:
        return f"{sign}{h:02d}{mi:02d}"
    if colons == 1:
        return f"{sign}{h:02d}:{mi:02d}"
    return f"{sign}{h:02d}:{mi:02d}:{s:02d}"


# A compiled strftime is a list of items: str (literal), or a callable(fields) -> str (per-second),
# or a tuple ("sub", digits) for sub-second text rendered per call.
_Item = "str | Callable[[tuple], str] | tuple[str, int]"


def _compile_ruby_strftime(fmt: str) -> list[Any]:
    items: list[Any] = []
    pos = 0
    for m in _STRF_TOKEN.finditer(fmt):
        if m.start() > pos:
            items.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width_s, colons_s, conv = m.groups()
        width = int(width_s) if width_s else 0
        colons = len(colons_s)
        items.extend(_ruby_directive(conv, flags, width, colons))
    if pos < len(fmt):
        rest = fmt[pos:]
        if "%" in rest.replace("%%", ""):
            raise ValueError(f"unsupported strftime directive in {fmt!r}")
        items.append(rest)
    return items


def _ruby_directive(conv: str, flags: str, width: int, colons: int) -> list[Any]:
    up = "^" in flags or "#" in flags

    def num(idx: int, w: int, pad: str = "0") -> Callable[[tuple], str]:
        ww = width or w
        return lambda f: _pad(f[idx], ww, flags, pad)

    def text(fn: Callable[[tuple], str]) -> Callable[[tuple], str]:
        if up:
            return lambda f: fn(f).upper()
        return fn

    # fields: (year, month, day, hour, minute, second, wday, yday, offset, zone_name, epoch)
    if conv == "Y":
        def year(f: tuple) -> str:
            y = f[0]
            if "-" in flags:
                return str(y)
            return _pad(y, width or (5 if y < 0 else 4), flags)
        return [year]
    simple = {"m": (1, 2, "0"), "d": (2, 2, "0"), "e": (2, 2, " "), "H": (3, 2, "0"), "k": (3, 2, " "),
              "M": (4, 2, "0"), "S": (5, 2, "0"), "j": (7, 3, "0")}
    if conv in simple:
        idx, w, pad = simple[conv]
        return [num(idx, w, pad)]
    if conv == "y":
        return [lambda f: _pad(f[0] % 100, width or 2, flags)]
    if conv == "C":
        return [lambda f: _pad(f[0] // 100, width or 2, flags)]
    if conv in "Il":
        pad = "0" if conv == "I" else " "
        return [lambda f: _pad((f[3] % 12) or 12, width or 2, flags, pad)]
    if conv == "N":
        return [("sub", width or 9)]
    if conv == "L":
        return [("sub", width or 3)]
    if conv == "z":
        return [lambda f: _fmt_offset(f[8], colons)]
    if conv == "Z":
        return [text(lambda f: f[9])]
    if conv == "s":
        return [lambda f: str(f[10])]
    if conv == "A":
        return [text(lambda f: _DAYS[f[6]])]
    if conv == "a":
        return [text(lambda f: _DAYS[f[6]][:3])]
    if conv == "B":
        return [text(lambda f: _MONTHS[f[1] - 1])]
    if conv in "bh":
        return [text(lambda f: _MONTHS[f[1] - 1][:3])]
    if conv == "p":
        return [(lambda f: "pm" if f[3] >= 12 else "am") if "#" in flags else (lambda f: "PM" if f[3] >= 12 else "AM")]
    if conv == "P":
        return [lambda f: "pm" if f[3] >= 12 else "am"]
    if conv == "u":
        return [lambda f: str(f[6] or 7)]
    if conv == "w":
        return [lambda f: str(f[6])]
    if conv == "n":
        return ["\n"]
    if conv == "t":
        return ["\t"]
    if conv == "%":
        return ["%"]
    if conv == "+":
        return _compile_ruby_strftime("%a %b %e %H:%M:%S %Z %Y")
    if conv in _EXPAND:
        return _compile_ruby_strftime(_EXPAND[conv])
    raise ValueError(f"unsupported strftime directive %{conv}")


def _compile_gem_strftime(fmt: str) -> list[Any]:
    """The strftime gem Fluentd uses when it can: note its %Y maps years 1900-1968 to 2000-2068."""
    items: list[Any] = []
    i = 0
    while i < len(fmt):
        j = fmt.find("%", i)
        if j < 0:
            items.append(fmt[i:])
            break
        if j > i:
            items.append(fmt[i:j])
        d = fmt[j + 1]
        i = j + 2
        if d == "Y":
            def gem_year(f: tuple) -> str:
                y = f[0] - 1900
                y += 2000 if y < 69 else 1900
                # the gem writes exactly four digits (C remainder semantics for negatives)
                out = []
                for _ in range(4):
                    r = int(math.fmod(y, 10))
                    out.append(chr(48 + r))
                    y = int(y / 10)
                return "".join(reversed(out))
            items.append(gem_year)
        elif d == "y":
            items.append(lambda f: "%02d" % ((f[0] - 1900) % 100))
        elif d == "m":
            items.append(lambda f: "%02d" % f[1])
        elif d == "d":
            items.append(lambda f: "%02d" % f[2])
        elif d == "H":
            items.append(lambda f: "%02d" % f[3])
        elif d == "M":
            items.append(lambda f: "%02d" % f[4])
        elif d == "S":
            items.append(lambda f: "%02d" % f[5])
        elif d == "b":
            items.append(lambda f: _MONTHS[f[1] - 1][:3])
        elif d == "N":
            items.append(("sub", 9))
        elif d == "L":
            items.append(("sub", 3))
        elif d == "z":
            def gem_z(f: tuple) -> str:
                off = f[8]
                sign = "+" if off >= 0 else "-"
                a = abs(off) // 60
                return f"{sign}{(a // 60) & 15:02d}{a % 60:02d}"  # the gem masks hours with & 15
            items.append(gem_z)
    return items


def _merge_items(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for it in items:
        if isinstance(it, str) and out and isinstance(out[-1], str):
            out[-1] += it
        else:
            out.append(it)
    return out


class TimeFormatter:
    """Fluentd-compatible time formatter: ``format(ns)``.

    time_type string -> str (strftime ``time_format``; None = Ruby Time#iso8601),
    unixtime -> int, float -> float (microsecond-truncated, as <inject>),
    unixtime_millis / unixtime_micros / unixtime_nanos -> int.
    """

    def __init__(self, time_format: str | None = None, *, localtime: bool = True, utc: bool = False,
                 timezone: str | None = None, time_type: str = "string") -> None:
        self.time_type = time_type
        numeric: dict[str, Callable[[int], int | float]] = {
            "unixtime": lambda ns: ns // NS,
            "float": lambda ns: (ns // 1000 if ns >= 0 else -((-ns) // 1000)) / 1_000_000,
            "unixtime_millis": lambda ns: ns // 1_000_000,
            "unixtime_micros": lambda ns: ns // 1000,
            "unixtime_nanos": lambda ns: ns,
        }
        if time_type in numeric:
            self.format = numeric[time_type]  # type: ignore[method-assign]
            return
        if time_type != "string":
            raise ValueError(f"expected time_type one of string, {', '.join(numeric)}; got '{time_type}'")
        self._zone: int | ZoneInfo | None
        if timezone is not None:
            self._zone = resolve_timezone(timezone)
            self._mode = "fixed" if isinstance(self._zone, int) else "zone"
        elif localtime and not utc:
            self._zone = None
            self._mode = "local"
        else:
            self._zone = 0
            self._mode = "utc"
        self._fixed_local = _local_fixed_offset()
        if time_format is None:
            # Ruby Time#iso8601: "Z" only for UTC-mode times; local/offset times print "+00:00"
            iso_zone = "Z" if self._mode == "utc" else "%:z"
            items = _compile_ruby_strftime("%Y-%m-%dT%H:%M:%S" + iso_zone)
        elif _is_gem_strftime(time_format):
            items = _compile_gem_strftime(time_format)
        else:
            items = _compile_ruby_strftime(time_format)
        self._items = _merge_items(items)
        self._subs = [it for it in self._items if isinstance(it, tuple)]
        self._cache: dict[int, list[str]] = {}
        self._last_sec: int | None = None
        self._last_parts: list[str] = []
        if not self._subs:
            self.format = self._format_nosub  # type: ignore[method-assign]
        elif len(self._subs) == 1:
            self._sub_digits = self._subs[0][1]
            self.format = self._format_onesub  # type: ignore[method-assign]

    def format(self, ns: int) -> str | int | float:  # replaced per instance when possible
        sec, nsec = divmod(ns, NS)
        parts = self._parts(sec)
        out: list[str] = []
        k = 0
        for it in self._items:
            if isinstance(it, tuple):
                out.append(_subsec(nsec, it[1]))
            else:
                out.append(parts[k])
                k += 1
        return "".join(out)

    __call__ = format

    def _format_nosub(self, ns: int) -> str:
        sec = ns // NS
        if sec == self._last_sec:
            return self._last_parts[0]
        return self._parts(sec)[0]

    def _format_onesub(self, ns: int) -> str:
        sec, nsec = divmod(ns, NS)
        if sec == self._last_sec:
            p = self._last_parts
        else:
            p = self._parts(sec)
        if self._sub_digits == 9:
            # str(NS + nsec)[1:] is the cheapest 9-digit zero pad in CPython
            return p[0] + str(NS + nsec)[1:] + p[1]
        return p[0] + _subsec(nsec, self._sub_digits) + p[1]

    def _offset(self, sec: int) -> int:
        mode = self._mode
        if mode == "utc":
            return 0
        if mode == "fixed":
            return self._zone  # type: ignore[return-value]
        if mode == "zone":
            return _zone_offset_at(self._zone, sec)  # type: ignore[arg-type]
        if self._fixed_local is not None:
            return self._fixed_local
        return _local_offset_at(sec)

    def _parts(self, sec: int) -> list[str]:
        parts = self._cache.get(sec)
        if parts is None:
            off = self._offset(sec)
            wall = sec + off
            days, rem = divmod(wall, 86400)
            y, mo, d = civil_from_days(days)
            wday = (days + 4) % 7
            yday = days - days_from_civil(y, 1, 1) + 1
            if self._mode == "utc":
                zname = "UTC"
            elif self._mode == "local":
                try:
                    zname = _time.localtime(sec).tm_zone
                except (OverflowError, OSError, ValueError):
                    zname = ""
            else:
                zname = ""  # Ruby Time#localtime(offset) carries no zone name
            fields = (y, mo, d, rem // 3600, rem % 3600 // 60, rem % 60, wday, yday, off, zname, sec)
            parts = []
            cur: list[str] = []
            for it in self._items:
                if isinstance(it, tuple):
                    parts.append("".join(cur))
                    cur = []
                elif isinstance(it, str):
                    cur.append(it)
                else:
                    cur.append(it(fields))
            parts.append("".join(cur))
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[sec] = parts
        self._last_sec = sec
        self._last_parts = parts
        return parts


def _subsec(nsec: int, digits: int) -> str:
    # Ruby %<n>N truncates (never rounds) and pads with zeros beyond nanoseconds
    s = f"{nsec:09d}"
    return s[:digits] if digits <= 9 else s + "0" * (digits - 9)
