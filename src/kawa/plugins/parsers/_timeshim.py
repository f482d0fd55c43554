"""Stand-in for kawa.timeparse while it is not in the tree: Fluentd's TimeParser / NumericTimeParser /
MixedTimeParser semantics (messages, 2-entry cache) with a regexp-compiled strptime, no per-line strptime.
"""

from __future__ import annotations

import calendar
import re
import time as _time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable

NS = 1_000_000_000
_MONTHS = {m.lower(): i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}
_FULL_MONTHS = {m.lower(): i for i, m in enumerate(
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
     "November", "December"], 1)}


class TimeParseError(ValueError):
    """Fluentd's TimeParser::TimeParseError; str() is the text Fluentd logs as error=."""


def ruby_to_s(value: Any) -> str:
    """Ruby's #to_s for the JSON/msgpack values a parser sees."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return ruby_float_to_s(value)
    return str(value)


def ruby_float_to_s(f: float) -> str:
    """Ruby Float#to_s: shortest round-trip digits; fixed notation when -4 < decimal point <= 16."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "Infinity" if f > 0 else "-Infinity"
    if f == 0:
        return "-0.0" if str(f).startswith("-") else "0.0"
    sign, digit_tuple, exp = Decimal(repr(f)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    decpt = len(digit_tuple) + int(exp)
    neg = "-" if sign else ""
    if 0 < decpt <= 16:
        whole, frac = digits[:decpt].ljust(decpt, "0"), digits[decpt:]
        return f"{neg}{whole}.{frac or '0'}"
    if -4 < decpt <= 0:
        return f"{neg}0.{'0' * -decpt}{digits}"
    e = decpt - 1
    return f"{neg}{digits[0]}.{digits[1:] or '0'}e{'+' if e >= 0 else '-'}{abs(e):02d}"


def _class_name(value: Any) -> str:
    if value is None:
        return "NilClass"
    if value is True:
        return "TrueClass"
    if value is False:
        return "FalseClass"
    return {dict: "Hash", list: "Array", bytes: "String"}.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# strptime directives -> (regexp, field). Ruby's strptime is lenient about digit counts.
_DIRECTIVES: dict[str, tuple[str, str | None]] = {
    "Y": (r"([+-]?\d+)", "Y"), "C": (r"(\d{1,2})", None), "y": (r"(\d{1,2})", "y"),
    "m": (r"(\d{1,2})", "m"), "d": (r"(\s?\d{1,2})", "d"), "e": (r"(\s?\d{1,2})", "d"),
    "j": (r"(\d{1,3})", "j"), "H": (r"(\s?\d{1,2})", "H"), "k": (r"(\s?\d{1,2})", "H"),
    "I": (r"(\s?\d{1,2})", "I"), "l": (r"(\s?\d{1,2})", "I"), "M": (r"(\d{1,2})", "M"),
    "S": (r"(\d{1,2})", "S"), "L": (r"(\d+)", "frac"), "N": (r"(\d+)", "frac"),
    "p": (r"([AaPp]\.?[Mm]\.?)", "p"), "P": (r"([AaPp]\.?[Mm]\.?)", "p"),
    "b": (r"([A-Za-z]{3})", "b"), "h": (r"([A-Za-z]{3})", "b"), "B": (r"([A-Za-z]+)", "B"),
    "a": (r"(?:[A-Za-z]+)", None), "A": (r"(?:[A-Za-z]+)", None), "u": (r"(?:\d)", None), "w": (r"(?:\d)", None),
    "z": (r"(Z|[+-]\d{2}:?\d{2}(?::?\d{2})?|[+-]\d{1,2}|UTC|GMT)", "z"),
    "Z": (r"([A-Za-z][A-Za-z0-9+:/_-]*|[+-]\d{2}:?\d{2})", "z"), "s": (r"([+-]?\d+)", "s"),
    "%": ("%", None), "n": (r"\s+", None), "t": (r"\s+", None),
}
_COMPOSITES = {"T": "%H:%M:%S", "F": "%Y-%m-%d", "D": "%m/%d/%y", "R": "%H:%M", "r": "%I:%M:%S %p",
               "c": "%a %b %e %H:%M:%S %Y", "x": "%m/%d/%y", "X": "%H:%M:%S", "+": "%a %b %e %H:%M:%S %Z %Y"}


def _compile(fmt: str) -> tuple[re.Pattern[str], list[str]]:
    while True:  # expand composites until none remain
        new = re.sub(r"%([TFDRrcxX+])", lambda m: _COMPOSITES[m.group(1)], fmt)
        if new == fmt:
            break
        fmt = new
    out: list[str] = []
    fields: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            d = fmt[i + 1]
            if d in "-_0^#" and i + 2 < len(fmt):  # flags: ignore
                d = fmt[i + 2]
                i += 1
            if d not in _DIRECTIVES:
                raise ValueError(f"unsupported strptime directive %{d}")
            rx, field = _DIRECTIVES[d]
            out.append(rx)
            if field is not None:
                fields.append(field)
            elif rx.startswith("(") and not rx.startswith("(?"):
                fields.append("_")
            i += 2
            continue
        out.append(r"\s+" if c.isspace() else re.escape(c))
        i += 1
    return re.compile("".join(out)), fields


def _offset_seconds(z: str) -> int | None:
    if z in ("Z", "UTC", "GMT", "z"):
        return 0
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?(?::?(\d{2}))?", z)
    if not m:
        try:
            from zoneinfo import ZoneInfo
            ZoneInfo(z)
        except Exception:
            return None
        return None
    sign = -1 if m.group(1) == "-" else 1
    return sign * (int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60 + int(m.group(4) or 0))


def _zone_resolver(timezone: str | None, localtime: bool) -> Callable[[int], int]:
    """Wall-clock seconds (as if UTC) -> seconds to subtract to get UTC, for the configured zone."""
    if timezone:
        fixed = _offset_seconds(timezone)
        if fixed is not None:
            return lambda wall: fixed
        from zoneinfo import ZoneInfo
        zone = ZoneInfo(timezone)
    elif localtime:
        zone = None
    else:
        return lambda wall: 0

    def resolve(wall: int) -> int:
        naive = datetime(1970, 1, 1) + timedelta(seconds=wall)
        if zone is None:
            return -_time.altzone if _time.localtime(calendar.timegm(naive.timetuple())).tm_isdst > 0 \
                else -_time.timezone
        off = naive.replace(tzinfo=zone).utcoffset()
        return int(off.total_seconds()) if off is not None else 0
    return resolve


class StringTimeParser:
    """Fluentd TimeParser for time_type string."""

    kind = "Fluent::TimeParser"

    def __init__(self, fmt: str | None, localtime: bool = True, timezone: str | None = None) -> None:
        self.fmt = fmt
        self._cache: dict[str, int] = {}
        with_zone = bool(fmt) and ("%z" in fmt or "%Z" in fmt)  # type: ignore[operator]
        self._zone = _zone_resolver(None if with_zone else timezone, localtime)
        if fmt and fmt != "%iso8601":
            self._rx, self._fields = _compile(fmt)

    def parse(self, value: Any) -> int:
        if not isinstance(value, str):
            raise TimeParseError(f"value must be string: {ruby_to_s(value)}")
        hit = self._cache.get(value)
        if hit is not None:
            return hit
        try:
            ns = self._parse(value)
        except TimeParseError:
            raise
        except Exception as exc:
            raise TimeParseError(f"invalid time format: value = {value}, error_class = ArgumentError, "
                                 f"error = {exc}") from None
        if len(self._cache) >= 2:
            self._cache.pop(next(iter(self._cache)))
        self._cache[value] = ns
        return ns

    def _parse(self, value: str) -> int:
        if not self.fmt or self.fmt == "%iso8601":
            return self._parse_iso(value)
        m = self._rx.match(value)
        if not m:
            raise ValueError("string doesn't match")
        got: dict[str, str] = {}
        for name, text in zip(self._fields, m.groups()):
            if name != "_" and text is not None:
                got[name] = text.strip()
        if "s" in got:
            sec = int(got["s"])
            frac = got.get("frac", "")
            return sec * NS + (int(frac[:9].ljust(9, "0")) if frac else 0)
        year = int(got["Y"]) if "Y" in got else (
            (2000 + int(got["y"]) if int(got["y"]) < 69 else 1900 + int(got["y"])) if "y" in got
            else _time.gmtime().tm_year)
        if "b" in got:
            month = _MONTHS.get(got["b"].lower())
            if month is None:
                raise ValueError("string doesn't match")
        elif "B" in got:
            month = _FULL_MONTHS.get(got["B"].lower()) or _MONTHS.get(got["B"].lower()[:3])
            if month is None:
                raise ValueError("string doesn't match")
        else:
            month = int(got.get("m", 1))
        day = int(got.get("d", 1))
        hour = int(got.get("H", 0))
        if "I" in got:
            hour = int(got["I"]) % 12 + (12 if got.get("p", "a").lower().startswith("p") else 0)
        minute, second = int(got.get("M", 0)), int(got.get("S", 0))
        if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 24 and minute <= 59 and second <= 60):
            raise ValueError("string doesn't match")
        if "j" in got:
            wall = calendar.timegm((year, 1, 1, hour, minute, second)) + (int(got["j"]) - 1) * 86400
        else:
            if day > calendar.monthrange(year, month)[1]:
                raise ValueError("string doesn't match")
            wall = calendar.timegm((year, month, day, hour, minute, second))
        frac = got.get("frac", "")
        nsec = int(frac[:9].ljust(9, "0")) if frac else 0
        if "z" in got:
            off = _offset_seconds(got["z"])
            if off is None:
                off = _zone_resolver(got["z"], False)(wall)
        else:
            off = self._zone(wall)
        return (wall - off) * NS + nsec

    def _parse_iso(self, value: str) -> int:
        v = value.strip()
        if v.endswith("Z"):
            v = v[:-1] + "+00:00"
        frac = ""
        m = re.search(r"\.(\d+)", v)
        if m:
            frac = m.group(1)
            v = v[:m.start()] + v[m.end():]
        dt = datetime.fromisoformat(v)
        if dt.tzinfo is None:
            wall = calendar.timegm(dt.timetuple())
            sec = wall - (self._zone(wall) if self.fmt != "%iso8601" else 0)
        else:
            sec = int(dt.timestamp())
        return sec * NS + (int(frac[:9].ljust(9, "0")) if frac else 0)


def ruby_str_to_i(s: str) -> int:
    m = _TO_I.match(s)
    return int(m.group(1).replace("_", "")) if m else 0


_TO_I = re.compile(r"[ \t\n\v\f\r]*([+-]?\d+(?:_\d+)*)")


class NumericTimeParser:
    """Fluentd NumericTimeParser (unixtime / float)."""

    kind = "Fluent::NumericTimeParser"

    def __init__(self, time_type: str) -> None:
        self.float_mode = time_type == "float"

    def parse(self, value: Any) -> int:
        if not (isinstance(value, str) or _is_number(value)):
            raise TimeParseError(f"value must be a string or a number: {ruby_to_s(value)}({_class_name(value)})")
        if not self.float_mode:
            if isinstance(value, str):
                return ruby_str_to_i(value) * NS
            return int(value) * NS
        parts = ruby_to_s(value).split(".", 2)
        sec = ruby_str_to_i(parts[0])
        nsec_s = parts[1][:10] if len(parts) > 1 else "0"
        nsec_s = nsec_s.ljust(9, "0")
        return sec * NS + ruby_str_to_i(nsec_s)


_FLOAT_RX = re.compile(r"[ \t\n\v\f\r]*[+-]?(?:\d+(?:_\d+)*)(?:\.\d+(?:_\d+)*)?(?:[eE][+-]?\d+)?[ \t\n\v\f\r]*\Z"
                       r"|[ \t\n\v\f\r]*[+-]?0[xX][0-9a-fA-F]+[ \t\n\v\f\r]*\Z")


def ruby_float_ok(value: Any) -> bool:
    """Whether Ruby's Kernel#Float(value) would succeed."""
    if _is_number(value):
        return True
    return isinstance(value, str) and bool(_FLOAT_RX.match(value))


class MixedTimeParser:
    """Fluentd MixedTimeParser: time_format then each fallback; numeric ones only for Float()-able values."""

    def __init__(self, parsers: list[Any]) -> None:
        self.parsers = parsers

    def parse(self, value: Any) -> int:
        for parser in self.parsers:
            if isinstance(parser, NumericTimeParser) and not ruby_float_ok(value):
                continue
            try:
                return parser.parse(value)  # type: ignore[no-any-return]
            except TimeParseError:
                continue
        names = ",".join(p.kind for p in self.parsers)
        raise TimeParseError(f"invalid time format: value = {ruby_to_s(value)}, even though fallbacks: {names}")


def make_time_parser(time_type: str, time_format: str | None, localtime: bool, utc: bool,
                     timezone: str | None, fallbacks: list[str]) -> Any:
    local = localtime and timezone is None and not utc
    if time_type == "mixed":
        parsers: list[Any] = []
        for fmt in [time_format, *fallbacks]:
            if not fmt:
                continue
            parsers.append(NumericTimeParser(fmt) if fmt in ("unixtime", "float")
                           else StringTimeParser(fmt, local, timezone))
        return MixedTimeParser(parsers)
    if time_type != "string":
        return NumericTimeParser(time_type)
    return StringTimeParser(time_format, local, timezone)

