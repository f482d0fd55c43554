"""Calendar arithmetic (integer days from the civil date, no datetime on hot paths) and time zones
(numeric offsets, Region/Zone names, the machine's local zone) shared by timeparse and timeformat."""

from __future__ import annotations

import re
import time as _time
from datetime import datetime, timezone as _dt_timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# ---------------------------------------------------------------- calendar math

def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of the proleptic Gregorian date; d may overflow the month (linear)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    """Inverse of days_from_civil: (year, month, day)."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


# ---------------------------------------------------------------- time zones

_NUMERIC_TZ = re.compile(r"[+-]\d\d(?::?\d\d)?")           # Fluent::Timezone::NUMERIC_PATTERN
_NAME_TZ = re.compile(r"[^/]+/[^/]+(?:/[^/]+)?")            # Fluent::Timezone::NAME_PATTERN


def resolve_timezone(tz: str) -> int | ZoneInfo:
    """Fluentd's accepted timezone spellings: "+09:00", "-0700", "+09" (fixed seconds) or "Region/Zone"."""
    if _NUMERIC_TZ.fullmatch(tz):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        return sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    if _NAME_TZ.fullmatch(tz):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    # abbreviations like "JST" or bare "UTC" are rejected on purpose, as Fluentd does
    raise ValueError(f"Unsupported timezone '{tz}'")


def _zone_offset_at(zone: ZoneInfo, sec: int) -> int:
    try:
        d = datetime.fromtimestamp(sec, _dt_timezone.utc).astimezone(zone)
    except (OverflowError, OSError, ValueError):
        return 0
    off = d.utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _local_offset_at(sec: int) -> int:
    try:
        return _time.localtime(sec).tm_gmtoff
    except (OverflowError, OSError, ValueError):
        return -_time.timezone


def _local_fixed_offset() -> int | None:
    """The local zone's constant offset when it has no DST (e.g. TZ=UTC): lets us skip libc calls."""
    if _time.daylight:
        return None
    return -_time.timezone


def _local_wall_to_utc(wall: int, fixed: int | None) -> int:
    if fixed is not None:
        return wall - fixed
    off1 = _local_offset_at(wall)
    t = wall - off1
    off2 = _local_offset_at(t)
    return t if off2 == off1 else wall - off2


# Zone names Date._strptime knows (subset): offsets in seconds.
_ZONE_ABBR: dict[str, int] = {
    "utc": 0, "gmt": 0, "ut": 0, "z": 0, "est": -5 * 3600, "edt": -4 * 3600, "cst": -6 * 3600,
    "cdt": -5 * 3600, "mst": -7 * 3600, "mdt": -6 * 3600, "pst": -8 * 3600, "pdt": -7 * 3600,
    "jst": 9 * 3600, "cet": 3600, "cest": 7200, "eet": 7200, "eest": 10800, "wet": 0, "west": 3600,
    "bst": 3600, "hst": -10 * 3600, "akst": -9 * 3600, "akdt": -8 * 3600, "kst": 9 * 3600,
}
_ZONE_ABBR_ALT = "|".join(sorted(_ZONE_ABBR, key=len, reverse=True))


@lru_cache(maxsize=512)  # few distinct zone strings per stream; parsing one costs ~1 µs
def _parse_ruby_zone(text: str) -> int:
    t = text.strip().lower()
    if t in _ZONE_ABBR:
        return _ZONE_ABBR[t]
    for prefix in ("gmt", "utc", "ut"):
        if t.startswith(prefix) and len(t) > len(prefix) and t[len(prefix)] in "+-":
            t = t[len(prefix):]
            break
    sign = -1 if t[0] == "-" else 1
    body = t[1:]
    if ":" in body:
        hms = body.split(":")
        h, mi, s = int(hms[0]), int(hms[1]), int(hms[2]) if len(hms) > 2 else 0
    elif len(body) <= 2:
        h, mi, s = int(body), 0, 0
    elif len(body) <= 4:
        h, mi, s = int(body[:-2]), int(body[-2:]), 0
    else:
        h, mi, s = int(body[:-4]), int(body[-4:-2]), int(body[-2:])
    return sign * (h * 3600 + mi * 60 + s)


@lru_cache(maxsize=512)
def _gem_zone(text: str) -> int:
    # strptime gem %z: optional sign, 1-2 hour digits, optional ':', 0-2 minute digits
    sign = -1 if text[0] == "-" else 1
    body = text[1:] if text[0] in "+-" else text
    hh = body[:2] if len(body) >= 2 and body[1].isdigit() else body[:1]
    rest = body[len(hh):].lstrip(":")
    return sign * (int(hh) * 3600 + int(rest or 0) * 60)
