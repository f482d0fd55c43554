"""Time parsing with Fluentd/Ruby semantics (strptime gem, Time.strptime, Time.iso8601, Time.parse).
Formats compile to one anchored regex; epoch math is integer days-from-civil; results are cached.
Formatting (Ruby strftime) is in kawa.timeformat."""

from __future__ import annotations

import re
import time as _time
from typing import Any, Callable
from zoneinfo import ZoneInfo

from kawa.ruby_values import ruby_float_to_s as _ruby_float_s
from kawa.ruby_values import ruby_inspect_value as _ruby_inspect
from kawa.ruby_values import ruby_to_s
from kawa.timeutil import (  # re-exported: callers know them as kawa.timeparse.*
    _ZONE_ABBR, _ZONE_ABBR_ALT, _gem_zone, _local_fixed_offset, _local_offset_at, _local_wall_to_utc,
    _parse_ruby_zone, _zone_offset_at, civil_from_days, days_from_civil, resolve_timezone,
)

__all__ = [
    "TimeParser", "TimeParseError", "days_from_civil", "civil_from_days",
    "resolve_timezone", "ruby_to_s",
]

NS = 1_000_000_000
_CACHE_MAX = 4096

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MONTH_NUM: dict[str, int] = {}
for _i, _n in enumerate(_MONTHS):
    _MONTH_NUM[_n.lower()] = _i + 1
    _MONTH_NUM[_n[:3].lower()] = _i + 1
# The strptime gem tries full names first, then abbreviations, first match wins.
_MONTH_ALT = "|".join([n.lower() for n in _MONTHS] + [n[:3].lower() for n in _MONTHS])
_DAY_ALT = "|".join([d.lower() for d in _DAYS] + [d[:3].lower() for d in _DAYS])


class TimeParseError(ValueError):
    """A value that does not parse; the message follows Fluentd's wording."""

    def __init__(self, value: Any, reason: str, *, error_class: str = "ArgumentError",
                 message: str | None = None) -> None:
        self.value = value
        self.reason = reason
        self.error_class = error_class
        if message is None:
            message = (f"invalid time format: value = {ruby_to_s(value)}, "
                       f"error_class = {error_class}, error = {reason}")
        super().__init__(message)


# ---------------------------------------------------------------- Ruby value rendering
# Error messages quote values the way Ruby prints them (kawa.ruby_values holds those rules).

def _ruby_class(v: Any) -> str:
    if v is None:
        return "NilClass"
    if v is True:
        return "TrueClass"
    if v is False:
        return "FalseClass"
    return {str: "String", int: "Integer", float: "Float", dict: "Hash", list: "Array"}.get(type(v), type(v).__name__)


_TO_I_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+(?:_[0-9]+)*)")


def _ruby_str_to_i(s: str) -> int:
    m = _TO_I_RE.match(s)
    return int(m.group(1).replace("_", "")) if m else 0


# Ruby's Float(): whole string, surrounding whitespace, underscores between digits, hex integers.
_RUBY_FLOAT_RE = re.compile(
    r"[ \t\n\v\f\r]*[+-]?(?:0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*|"
    r"[0-9]+(?:_[0-9]+)*(?:\.[0-9]+(?:_[0-9]+)*)?(?:[eE][+-]?[0-9]+(?:_[0-9]+)*)?)[ \t\n\v\f\r]*")


def _ruby_float_ok(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    if isinstance(v, (int, float)):
        return True
    return isinstance(v, str) and _RUBY_FLOAT_RE.fullmatch(v) is not None


# ---------------------------------------------------------------- strptime compilation

_GEM_DIRECTIVES = set("BHMNSYbdehmnyz")
_WS = "[ \\t\\n\\v\\f\\r]"
_EXPAND = {"T": "%H:%M:%S", "D": "%m/%d/%y", "F": "%Y-%m-%d", "R": "%H:%M", "r": "%I:%M:%S %p",
           "x": "%m/%d/%y", "X": "%H:%M:%S", "c": "%a %b %e %H:%M:%S %Y", "v": "%e-%b-%Y",
           "h": "%b"}
_NUMERIC_DIRECTIVES = set("CDdeFGgHIjklLmMNQRrSsTUuVvWwXxYy")


def _tokenize_strptime(fmt: str) -> list[tuple[str, str]]:
    """Split a strptime format into ('lit', text) / ('ws', '') / ('dir', letter) tokens."""
    out: list[tuple[str, str]] = []
    i = 0
    n = len(fmt)
    while i < n:
        c = fmt[i]
        if c == "%":
            if i + 1 >= n:
                raise ValueError(f"invalid strptime format {fmt!r}: trailing %")
            d = fmt[i + 1]
            if d == ":" and fmt.startswith("%:z", i):
                out.append(("dir", ":z"))
                i += 3
                continue
            out.append(("dir", d))
            i += 2
            continue
        if c in " \t\n\v\f\r":
            out.append(("ws", ""))
            i += 1
            continue
        j = i
        while j < n and fmt[j] != "%" and fmt[j] not in " \t\n\v\f\r":
            j += 1
        out.append(("lit", fmt[i:j]))
        i = j
    return out


def _is_gem_format(fmt: str) -> bool:
    """Whether Fluentd would use the fast strptime gem (else it falls back to Ruby's Time.strptime)."""
    try:
        toks = _tokenize_strptime(fmt)
    except ValueError:
        return False
    return all(k != "dir" or v in _GEM_DIRECTIVES for k, v in toks)


class _Compiled:
    """One strptime format compiled to a regex plus per-group field kinds."""

    __slots__ = ("fmt", "gem", "regex", "kinds", "frac_group", "has_zone", "has_epoch",
                 "needs_now", "match", "extract")

    def __init__(self, fmt: str, gem: bool) -> None:
        self.fmt = fmt
        self.gem = gem
        toks = _tokenize_strptime(fmt)
        # expand composite directives (Ruby path only; the gem has none)
        changed = True
        while changed and not gem:
            changed = False
            new: list[tuple[str, str]] = []
            for k, v in toks:
                if k == "dir" and v in _EXPAND:
                    new.extend(_tokenize_strptime(_EXPAND[v]))
                    changed = True
                else:
                    new.append((k, v))
            toks = new
        parts: list[str] = []
        kinds: list[str] = []
        for idx, (k, v) in enumerate(toks):
            nxt = toks[idx + 1] if idx + 1 < len(toks) else None
            # Date._strptime limits unbounded numbers when a number follows directly
            bounded = nxt is not None and (
                (nxt[0] == "dir" and nxt[1] in _NUMERIC_DIRECTIVES)
                or (nxt[0] == "lit" and nxt[1][:1].isdigit()))
            if k == "lit":
                parts.append(re.escape(v))
                continue
            if k == "ws":
                parts.append(_WS + "*+")
                continue
            pat, kind = self._directive(v, bounded)
            if kind is None:
                parts.append(pat)
            else:
                parts.append("(" + pat + ")")
                kinds.append(kind)
        self.kinds = tuple(kinds)
        self.regex = re.compile("".join(parts))
        self.match = self.regex.match
        fracs = [i for i, k in enumerate(kinds) if k in ("N", "L")]
        self.frac_group = fracs[0] + 1 if len(fracs) == 1 else 0
        self.has_zone = any(k in ("z", "Z") for k in kinds)
        self.has_epoch = any(k in ("s", "Q") for k in kinds)
        self.needs_now = not self.has_epoch and not any(k in ("Y", "y", "C") for k in kinds)
        self.extract = _make_extractor(self)

    def _directive(self, d: str, bounded: bool) -> tuple[str, str | None]:
        if self.gem:
            if d in "Bbh":
                return f"(?>(?i:{_MONTH_ALT}))", "b"
            if d in "de":
                return r"\d{1,2}+", "d"
            if d == "H":
                return r"\d{1,2}+", "H"
            if d == "M":
                return r"\d{1,2}+", "M"
            if d == "S":
                return r"\d{1,2}+", "S"
            if d == "m":
                return r"\d{1,2}+", "m"
            if d == "Y":
                return r"[+-]?+\d{1,4}+", "Y"
            if d == "y":
                return r"\d{1,2}+", "y"
            if d == "N":
                return r"\d{1,9}+", "N"
            if d == "n":
                return _WS + "*+", None
            if d == "z":
                # the gem accepts Z/z without consuming it (si is not advanced)
                return r"(?=[zZ])|[+-]?+\d{1,2}+:?+\d{0,2}+", "z"
            raise ValueError(f"directive %{d} not supported by the strptime gem")
        num = r"\d{1,4}+" if bounded else r"\d++"
        table: dict[str, tuple[str, str | None]] = {
            "Y": (r"[+-]?+" + num, "Y"),
            "C": (r"[+-]?+" + (r"\d{1,2}+" if bounded else r"\d++"), "C"),
            "y": (r"\d{1,2}+", "y"),
            "m": (r"\d{1,2}+", "m"),
            "d": (r"(?: \d|\d{1,2}+)", "d"),
            "e": (r"(?: \d|\d{1,2}+)", "d"),
            "j": (r"\d{1,3}+", "j"),
            "H": (r"(?: \d|\d{1,2}+)", "H"),
            "k": (r"(?: \d|\d{1,2}+)", "H"),
            "I": (r"(?: \d|\d{1,2}+)", "I"),
            "l": (r"(?: \d|\d{1,2}+)", "I"),
            "M": (r"\d{1,2}+", "M"),
            "S": (r"\d{1,2}+", "S"),
            "L": (r"\d{1,3}+" if bounded else r"\d++", "L"),
            "N": (r"\d{1,9}+" if bounded else r"\d++", "N"),
            "s": (r"[+-]?+\d++", "s"),
            "Q": (r"[+-]?+\d++", "Q"),
            "p": (r"(?i:[ap]\.?m\.?)", "p"),
            "P": (r"(?i:[ap]\.?m\.?)", "p"),
            "b": (f"(?>(?i:{_MONTH_ALT}))", "b"),
            "B": (f"(?>(?i:{_MONTH_ALT}))", "b"),
            "a": (f"(?>(?i:{_DAY_ALT}))", None),
            "A": (f"(?>(?i:{_DAY_ALT}))", None),
            "u": (r"[1-7]", None),
            "w": (r"[0-6]", None),
            "n": (_WS + "*+", None),
            "t": (_WS + "*+", None),
            "%": ("%", None),
        }
        if d in ("z", "Z", ":z"):
            return (r"(?i:(?:gmt|utc?)?[+-]\d{1,2}+(?::?\d\d(?::?\d\d)?)?|" + _ZONE_ABBR_ALT + r")(?![a-zA-Z])",
                    "z")
        if d not in table:
            raise ValueError(f"unsupported strptime directive %{d}")
        return table[d]


_GEM_LIMITS = {"d": (1, 31), "H": (0, 23), "M": (0, 59), "S": (0, 60), "m": (1, 12)}
_RUBY_LIMITS = {"d": (1, 31), "H": (0, 24), "M": (0, 59), "S": (0, 60), "m": (1, 12),
                "I": (1, 12), "j": (1, 366)}

# Result of field extraction: (wall_seconds, zone_offset | None, epoch | None, frac_ns)
_Fields = tuple[int, "int | None", "int | None", int]


def _now_fields(offset: int | None) -> tuple[int, int, int, int, int, int]:
    sec = int(_time.time())
    wall = sec + (offset if offset is not None else _local_offset_at(sec))
    days, rem = divmod(wall, 86400)
    y, m, d = civil_from_days(days)
    return y, m, d, rem // 3600, rem % 3600 // 60, rem % 60


_MONTH_START: dict[int, int] = {y * 16 + mo: days_from_civil(y, mo, 1) for y in range(1970, 2101) for mo in range(1, 13)}


def _month_start(year: int, mon: int) -> int:
    d = _MONTH_START.get(year * 16 + mon)
    return d if d is not None else days_from_civil(year, mon, 1)


def _finish(year: int | None, mon: int | None, mday: int | None, hour: int | None, minute: int | None,
            sec: int | None, yday: int | None, hour12: int | None, pm: bool | None, cent: int | None,
            zone: int | None, epoch: int | None, frac: int) -> _Fields:
    """General case: 12-hour clock, century, day of year, epoch and fields taken from "now"."""
    if hour12 is not None:
        hour = hour12 % 12 + (12 if pm else 0)
    elif pm and hour is not None and hour < 12:
        hour += 12  # Date._strptime applies %p to %H too
    if cent is not None:
        year = cent * 100 + (year % 100 if year is not None else 0)
    if epoch is not None:
        return 0, zone, epoch, frac
    if year is None:
        # missing leading fields come from "now" in the target zone; trailing ones default low
        ny, nm, nd, nH, nM, nS = _now_fields(zone)
        year = ny
        if mon is None and yday is None:
            mon = nm
            if mday is None:
                mday = nd
                if hour is None:
                    hour = nH
                    if minute is None:
                        minute = nM
                        if sec is None:
                            sec = nS
    if yday is not None and mon is None:
        days = days_from_civil(year, 1, 1) + yday - 1
    else:
        days = _month_start(year, mon or 1) + (mday or 1) - 1
    return days * 86400 + (hour or 0) * 3600 + (minute or 0) * 60 + (sec or 0), zone, None, frac


_VAR = {"Y": "year", "C": "cent", "m": "mon", "d": "mday", "H": "hour", "I": "hour12", "M": "minute",
        "S": "sec", "j": "yday", "s": "epoch"}


def _make_extractor(c: _Compiled) -> Callable[[re.Match[str]], "_Fields | None"]:
    """Generate straight-line code for this format's fields: the generic loop costs several µs per miss."""
    limits = _GEM_LIMITS if c.gem else _RUBY_LIMITS
    kinds = c.kinds
    body = ["def _ex(m):",
            "    year = mon = mday = hour = minute = sec = yday = hour12 = pm = cent = zone = epoch = None",
            "    frac = 0"]
    if kinds:
        body.append("    " + "".join(f"g{i}, " for i in range(len(kinds))) + "= m.groups()")
    for i, k in enumerate(kinds):
        g = f"g{i}"
        if k == "b":
            body.append(f"    mon = MN[{g}.lower()]")
        elif k == "z":
            body.append(f"    zone = (0 if not {g} else GZ({g}))" if c.gem else f"    zone = RZ({g})")
        elif k == "p":
            body.append(f"    pm = {g}[0] in 'pP'")
        elif k in ("N", "L"):
            body.append(f"    frac = int(({g} + '000000000')[:9])")
        elif k == "y":
            body.append(f"    year = int({g}); year += 2000 if year < 69 else 1900")
        elif k == "Q":
            body.append(f"    epoch, frac = divmod(int({g}), 1000); frac *= 1000000")
        else:
            var = _VAR[k]
            body.append(f"    {var} = int({g})")
            if k in limits:
                lo, hi = limits[k]
                body.append(f"    if not {lo} <= {var} <= {hi}: return None")
    fast = ("Y" in kinds or "y" in kinds) and not any(k in ("I", "p", "C", "j", "s", "Q") for k in kinds)
    if fast:
        mon_e = "mon" if ("m" in kinds or "b" in kinds) else "1"
        expr = [f"(MS({mon_e and 'year'}, {mon_e}) + {'mday - 1' if 'd' in kinds else '0'}) * 86400"]
        for k, mult in (("H", 3600), ("M", 60), ("S", 1)):
            if k in kinds:
                expr.append(f"{_VAR[k]} * {mult}" if mult != 1 else _VAR[k])
        body.append(f"    return {' + '.join(expr)}, zone, None, frac")
    else:
        body.append("    return FIN(year, mon, mday, hour, minute, sec, yday, hour12, pm, cent, zone, epoch, frac)")
    ns: dict[str, Any] = {"MN": _MONTH_NUM, "GZ": _gem_zone, "RZ": _parse_ruby_zone, "MS": _month_start,
                          "FIN": _finish}
    exec("\n".join(body), ns)  # noqa: S102 - our own generated code, no user text inside
    return ns["_ex"]


# ---------------------------------------------------------------- single-format parsers

class _FormatParser:
    """Fluent::TimeParser for one format: value (str) -> ns, raising TimeParseError."""

    fluent_class = "Fluent::TimeParser"

    def __init__(self, fmt: str | None, localtime: bool, tz: str | None) -> None:
        if fmt is None and (tz is not None or not localtime):
            raise ValueError("specifying timezone requires time format")
        self.fmt = fmt
        self._fixed_local = _local_fixed_offset()
        with_zone = fmt is not None and ("%z" in fmt or "%Z" in fmt)
        self._target: int | ZoneInfo | None
        if with_zone:
            self._target = None
        elif tz is not None:
            self._target = resolve_timezone(tz)
        elif localtime:
            self._target = None
        else:
            self._target = 0
        self._mode: str
        self._c: _Compiled | None = None
        if fmt == "%iso8601" and not with_zone:
            self._mode = "iso8601"
        elif fmt is None:
            self._mode = "parse"
        else:
            gem = _is_gem_format(fmt)
            self._c = _Compiled(fmt, gem)
            self._mode = "gem" if gem else "ruby"
        self._vcache: dict[str, int] = {}
        self._scache: dict[str, int] = {}
        self._expiry = float("inf")
        if self._c is not None and self._c.needs_now:
            self._expiry = 0.0

    # -- hot path
    def parse(self, value: Any) -> int:
        if value.__class__ is not str:
            if not isinstance(value, str):
                raise TimeParseError(value, "", message=f"value must be string: {ruby_to_s(value)}")
        if self._expiry != float("inf"):
            now = _time.time()
            if now >= self._expiry:
                # results depend on today's date: drop them at each quarter hour
                self._vcache.clear()
                self._scache.clear()
                self._expiry = (now // 900 + 1) * 900
        r = self._vcache.get(value)
        if r is not None:
            return r
        c = self._c
        if c is None:
            return self._parse_special(value)
        m = c.match(value)
        if m is None:
            raise TimeParseError(value, self._nomatch(value))
        fg = c.frac_group
        if fg:
            fs, fe = m.span(fg)
            key = value[:fs] + "\x00" + value[fe:m.end()]
            s = self._scache.get(key)
            digits = m.group(fg)
            frac = int((digits + "000000000")[:9])
            if s is None:
                s = self._seconds(value, c, m)
                if len(self._scache) >= _CACHE_MAX:
                    self._scache.clear()
                self._scache[key] = s
            return s * NS + frac
        s = self._seconds(value, c, m)
        ns = s * NS + (self._last_frac if c.has_epoch else 0)
        if len(self._vcache) >= _CACHE_MAX:
            self._vcache.clear()
        self._vcache[value] = ns
        return ns

    _last_frac = 0

    def _nomatch(self, value: str) -> str:
        if self._mode == "gem":
            return "string doesn't match"
        return f"invalid date or strptime format - `{value}' `{self.fmt}'"

    def _seconds(self, value: str, c: _Compiled, m: re.Match[str]) -> int:
        f = c.extract(m)
        if f is None:
            raise TimeParseError(value, self._nomatch(value))
        wall, zone, epoch, frac = f
        self._last_frac = frac if epoch is not None else 0
        return self._resolve(wall, zone, epoch)

    def _resolve(self, wall: int, zone: int | None, epoch: int | None) -> int:
        """Apply Fluentd's zone arithmetic: t.to_i + t.utc_offset - target_offset(t)."""
        if epoch is not None:
            inst = epoch
        elif zone is not None:
            inst = wall - zone
        else:
            inst = _local_wall_to_utc(wall, self._fixed_local)
        target = self._target
        if target is None:
            return inst
        if zone is not None:
            t_off = zone
        elif self._fixed_local is not None:
            t_off = self._fixed_local
        else:
            t_off = _local_offset_at(inst)
        if isinstance(target, int):
            return inst + t_off - target
        # named zone: offset looked up at the locally parsed instant (Fluentd quirk on DST days)
        return inst + t_off - _zone_offset_at(target, inst)

    def _parse_special(self, value: str) -> int:
        if self._mode == "iso8601":
            ns = _parse_iso8601(value, self._fixed_local)
        else:
            ns = _parse_free(value, self._fixed_local)
        if len(self._vcache) >= _CACHE_MAX:
            self._vcache.clear()
        self._vcache[value] = ns
        return ns


_ISO_RE = re.compile(
    r"[ \t\n\v\f\r]*(-?\d+)-(\d\d)-(\d\d)(?:[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?)?"
    r"([Zz]|[+-]\d\d(?::?\d\d)?)?[ \t\n\v\f\r]*")


def _parse_iso8601(value: str, fixed_local: int | None) -> int:
    """Ruby's Time.iso8601 (xmlschema): date-time or date, optional fraction and zone; no zone = local."""
    m = _ISO_RE.fullmatch(value)
    if m is None:
        raise TimeParseError(value, f"invalid xmlschema format: {_ruby_inspect(value)}")
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    h = int(m.group(4) or 0)
    mi = int(m.group(5) or 0)
    s = int(m.group(6) or 0)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 24 and mi <= 59 and s <= 60):
        raise TimeParseError(value, "argument out of range")
    frac = int((m.group(7)[1:] + "000000000")[:9]) if m.group(7) else 0
    wall = days_from_civil(y, mo, 1) * 86400 + (d - 1) * 86400 + h * 3600 + mi * 60 + s
    z = m.group(8)
    if z is None:
        inst = _local_wall_to_utc(wall, fixed_local)
    elif z in "Zz":
        inst = wall
    else:
        inst = wall - _gem_zone(z)
    return inst * NS + frac


# Subset of Ruby's Time.parse (Date._parse) heuristics: the forms seen in logs.
_FREE_FORMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?P<Y>-?\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?:[Tt ]+(?P<H>\d{1,2}):(?P<M>\d\d)"
                r"(?::(?P<S>\d\d)(?:[.,](?P<f>\d+))?)?)?\s*(?P<z>[Zz]|(?:gmt|utc?)?[+-]\d{1,2}(?::?\d\d)?|[A-Za-z]{1,4}\b)?",
                re.I), "ymd"),
    (re.compile(r"(?P<Y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})(?:[Tt ]+(?P<H>\d{1,2}):(?P<M>\d\d)"
                r"(?::(?P<S>\d\d)(?:[.,](?P<f>\d+))?)?)?\s*(?P<z>[Zz]|[+-]\d{1,2}(?::?\d\d)?|[A-Za-z]{1,4}\b)?",
                re.I), "ymd"),
    (re.compile(r"(?P<d>\d{1,2})/(?P<b>[A-Za-z]{3,9})/(?P<Y>\d{4})(?::(?P<H>\d{1,2}):(?P<M>\d\d)"
                r"(?::(?P<S>\d\d))?)?\s*(?P<z>[+-]\d{1,2}(?::?\d\d)?|[Zz])?"), "dby"),
    (re.compile(r"(?:[A-Za-z]{3,9},?\s+)?(?P<d>\d{1,2})\s+(?P<b>[A-Za-z]{3,9})\s+(?P<Y>\d{4})"
                r"(?:\s+(?P<H>\d{1,2}):(?P<M>\d\d)(?::(?P<S>\d\d))?)?\s*(?P<z>[+-]\d{1,2}(?::?\d\d)?|[A-Za-z]{1,4}\b)?"),
     "rfc2822"),
    (re.compile(r"(?:[A-Za-z]{3,9},?\s+)?(?P<b>[A-Za-z]{3,9})\s+(?P<d>\d{1,2})(?:,?\s+(?P<Y>\d{4}))?"
                r"(?:\s+(?P<H>\d{1,2}):(?P<M>\d\d)(?::(?P<S>\d\d)(?:\.(?P<f>\d+))?)?)?"
                r"(?:\s+(?P<z>[+-]\d{1,2}(?::?\d\d)?|[A-Za-z]{1,4}\b))?(?:\s+(?P<Y2>\d{4}))?"), "bdy"),
    (re.compile(r"(?P<H>\d{1,2}):(?P<M>\d\d)(?::(?P<S>\d\d)(?:\.(?P<f>\d+))?)?"
                r"\s*(?P<z>[Zz]|[+-]\d{1,2}(?::?\d\d)?)?"), "hms"),
]


def _parse_free(value: str, fixed_local: int | None) -> int:
    """Time.parse-like: no format given. Raises with Ruby's "no time information" message."""
    s = value.strip()
    for rx, _kind in _FREE_FORMS:
        m = rx.match(s)
        if m is None:
            continue
        g = m.groupdict()
        if "b" in g and g["b"] is not None:
            mon = _MONTH_NUM.get(g["b"].lower())
            if mon is None:
                continue
        else:
            mon = int(g["m"]) if g.get("m") else None
        zone: int | None = None
        if g.get("z"):
            try:
                zone = _parse_ruby_zone(g["z"])
            except (ValueError, IndexError):
                if g["z"].lower() not in _ZONE_ABBR:
                    zone = None
        year_s = g.get("Y") or g.get("Y2")
        ny, nm, nd, _h, _m, _s = _now_fields(zone)
        year = int(year_s) if year_s else ny
        if mon is None:
            mon, day = nm, nd
        else:
            day = int(g["d"])
        hour = int(g["H"] or 0) if g.get("H") else 0
        minute = int(g["M"] or 0) if g.get("M") else 0
        sec = int(g["S"] or 0) if g.get("S") else 0
        if not (1 <= mon <= 12 and 1 <= day <= 31 and hour <= 24 and minute <= 59 and sec <= 60):
            raise TimeParseError(value, "argument out of range")
        frac = int((g["f"] + "000000000")[:9]) if g.get("f") else 0
        wall = (days_from_civil(year, mon, 1) + day - 1) * 86400 + hour * 3600 + minute * 60 + sec
        inst = wall - zone if zone is not None else _local_wall_to_utc(wall, fixed_local)
        return inst * NS + frac
    raise TimeParseError(value, f"no time information in {_ruby_inspect(value)}")


class _NumericParser:
    """Fluent::NumericTimeParser: unixtime (to_i) or float (split on '.', nanoseconds from the fraction)."""

    fluent_class = "Fluent::NumericTimeParser"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def parse(self, value: Any) -> int:
        if value is None or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TimeParseError(value, "", message=(
                f"value must be a string or a number: {ruby_to_s(value)}({_ruby_class(value)})"))
        if self.kind == "unixtime":
            if isinstance(value, str):
                return _ruby_str_to_i(value) * NS
            if isinstance(value, float):
                if value != value or value in (float("inf"), float("-inf")):
                    raise TimeParseError(value, _ruby_float_s(value), error_class="FloatDomainError")
                return int(value) * NS
            return value * NS
        # float: Ruby value.to_s.split('.', 3), first 10 fraction chars, right-padded to 9
        text = ruby_to_s(value)
        pieces = text.split(".", 2)
        sec = _ruby_str_to_i(pieces[0]) if pieces and pieces[0] else 0
        nsec_s = pieces[1][:10] if len(pieces) > 1 else "0"
        if len(nsec_s) < 9:
            nsec_s += "0" * (9 - len(nsec_s))
        return sec * NS + _ruby_str_to_i(nsec_s)


# ---------------------------------------------------------------- public parser

class TimeParser:
    """Fluentd-compatible time parser: ``parse(value) -> nanoseconds since the epoch``.

    time_type: string (strptime ``time_format``; None = Time.parse-like; "%iso8601"),
    unixtime, float, or mixed (``time_format`` then ``fallbacks``; "unixtime"/"float" entries).
    """

    def __init__(self, time_format: str | None = None, *, time_type: str = "string",
                 localtime: bool = True, utc: bool = False, timezone: str | None = None,
                 fallbacks: list[str] | None = None) -> None:
        fallbacks = list(fallbacks or [])
        if timezone is not None:
            resolve_timezone(timezone)  # validate early, as Fluentd's configure does
        eff_local = localtime and timezone is None and not utc
        self.time_type = time_type
        self._parsers: list[_FormatParser | _NumericParser]
        if time_type == "mixed":
            if time_format is None and not fallbacks:
                raise ValueError("time_type is :mixed but time_format and time_format_fallbacks is empty.")
            self._parsers = []
            for f in [time_format] + fallbacks:
                if f is None:
                    continue
                if f in ("unixtime", "float"):
                    # Fluentd passes the type as a String here, so both act as :float (fraction kept)
                    self._parsers.append(_NumericParser("float"))
                else:
                    self._parsers.append(_FormatParser(f, eff_local, timezone))
            self.parse = self._parse_mixed  # type: ignore[method-assign]
        elif time_type in ("unixtime", "float"):
            self.parse = _NumericParser(time_type).parse  # type: ignore[method-assign]
        elif time_type == "string":
            self.parse = _FormatParser(time_format, eff_local, timezone).parse  # type: ignore[method-assign]
        else:
            raise ValueError(f"expected time_type one of string, unixtime, float, mixed; got '{time_type}'")

    def parse(self, value: Any) -> int:  # replaced per instance in __init__
        raise NotImplementedError

    __call__ = parse

    def _parse_mixed(self, value: Any) -> int:
        for p in self._parsers:
            if isinstance(p, _NumericParser) and not _ruby_float_ok(value):
                continue
            try:
                return p.parse(value)
            except TimeParseError:
                pass
        classes = ",".join(p.fluent_class for p in self._parsers)
        raise TimeParseError(value, "", message=(
            f"invalid time format: value = {ruby_to_s(value)}, even though fallbacks: {classes}"))
