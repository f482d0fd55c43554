"""Chunk placeholders in output options: `${tag}`, `${tag[N]}`, `${key}`, `${chunk_id}`, strftime of timekey.

Validation follows Fluentd output.rb placeholder_validators: every chunk key needs its placeholder.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from kawa.buffer.options import ChunkKeys
from kawa.errors import ConfigError
from kawa.ruby_values import ruby_to_s

# Fluentd output.rb CHUNK_KEY_PLACEHOLDER_PATTERN / CHUNK_TAG_PLACEHOLDER_PATTERN / CHUNK_ID_PLACEHOLDER_PATTERN
KEY_PLACEHOLDER = re.compile(r"\$\{([-_.@$a-zA-Z0-9]+)\}")
TAG_PLACEHOLDER = re.compile(r"\$\{(tag(?:\[-?\d+\])?)\}")
CHUNK_ID_PLACEHOLDER = "${chunk_id}"
_TAG_INDEX = re.compile(r"tag\[(-?\d+)\]")
# Fluentd TIME_KEY_PLACEHOLDER_THRESHOLDS and TIMESTAMP_CHECK_BASE_TIME
TIME_THRESHOLDS = ((1, "second", "%S"), (60, "minute", "%M"), (3600, "hour", "%H"), (86400, "day", "%d"))
_CHECK_BASE = datetime(2016, 1, 1, tzinfo=timezone.utc)


def time_placeholder(template: str) -> tuple[int, str, str] | None:
    """The finest time unit the template's strftime part changes with, or None."""
    base = _CHECK_BASE.strftime(template)
    for sec, title, example in TIME_THRESHOLDS:
        if (_CHECK_BASE + timedelta(seconds=sec)).strftime(template) != base:
            return sec, title, example
    return None


def tag_placeholders(template: str) -> list[int]:
    """Indexes of `${tag[N]}` (-1 for the whole `${tag}`), sorted."""
    parts = []
    for ph in TAG_PLACEHOLDER.findall(template):
        m = _TAG_INDEX.fullmatch(ph)
        parts.append(int(m.group(1)) if m else -1)
    return sorted(parts)


def key_placeholders(template: str) -> list[str]:
    return sorted(k for k in KEY_PLACEHOLDER.findall(template) if k not in ("tag", "chunk_id"))


def validate(name: str, template: str, keys: ChunkKeys, timekey: float | None, *,
             check_time: bool = True, check_tag: bool = True, check_keys: bool = True) -> None:
    """Raise ConfigError as Fluentd's PlaceholderValidator#validate! does."""
    timekey = timekey if keys.time else None
    if check_time:
        found = time_placeholder(template)
        if found or timekey:
            if not found and timekey:
                raise ConfigError(f"Parameter '{name}: {template}' doesn't have timestamp placeholders "
                                  f"for timekey {int(timekey)}")
            if found and not timekey:
                raise ConfigError(f"Parameter '{name}: {template}' has timestamp placeholders, "
                                  f"but chunk key 'time' is not configured")
            if found and timekey and timekey < found[0]:
                raise ConfigError(f"Parameter '{name}: {template}' doesn't have timestamp placeholder for "
                                  f"{found[1]}('{found[2]}') for timekey {int(timekey)}")
    parts = tag_placeholders(template)
    if check_tag and (keys.tag or parts):
        if keys.tag and not parts:
            raise ConfigError(f"Parameter '{name}: {template}' doesn't have tag placeholder")
        if not keys.tag and parts:
            raise ConfigError(f"Parameter '{name}: {template}' has tag placeholders, "
                              f"but chunk key 'tag' is not configured")
    used = key_placeholders(template)
    if check_keys and (keys.records or used):
        missing = sorted(set(keys.records) - set(used))
        if missing:
            raise ConfigError(f"Parameter '{name}: {template}' doesn't have enough placeholders for keys "
                              f"{','.join(missing)}")
        extra = sorted(set(used) - set(keys.records))
        if extra:
            raise ConfigError(f"Parameter '{name}: {template}' has placeholders, but chunk keys doesn't have "
                              f"keys {','.join(extra)}")


def _zone(offset: Any) -> tzinfo:
    if isinstance(offset, int):
        return timezone(timedelta(seconds=offset))
    return offset  # type: ignore[no-any-return]


_BIG_YEAR_FIELDS = re.compile(r"%([YmdHMS%])")


def _strftime_any_year(template: str, timekey: float, zone: tzinfo) -> str:
    """Ruby's Time#strftime for the date fields of file paths, for years past 9999 (golden
    time_unixtime_float: year 51491 -> "514910623"), which Python's datetime refuses."""
    from kawa.timeparse import civil_from_days

    offset = zone.utcoffset(None) or timedelta(0)
    seconds = int(timekey) + int(offset.total_seconds())
    days, rest = divmod(seconds, 86400)
    year, month, day = civil_from_days(days)
    fields = {"Y": str(year), "m": f"{month:02d}", "d": f"{day:02d}", "H": f"{rest // 3600:02d}",
              "M": f"{rest // 60 % 60:02d}", "S": f"{rest % 60:02d}", "%": "%"}
    return _BIG_YEAR_FIELDS.sub(lambda m: fields[m.group(1)], template)


class Placeholders:
    """Fills a template from a chunk (Fluentd output.rb extract_placeholders)."""

    def __init__(self, keys: ChunkKeys, utc_offset: Any = 0, log: Any = None) -> None:
        self.keys = keys
        self.zone = _zone(utc_offset)
        self.log = log

    def extract(self, template: str, chunk: Any) -> str:
        meta = chunk.metadata
        chunk_id = getattr(chunk, "id", "")
        if meta.timekey is None and meta.tag is None and meta.variables is None:
            return template.replace(CHUNK_ID_PLACEHOLDER, chunk_id, 1)
        value = template
        if self.keys.time and meta.timekey is not None:
            try:
                value = datetime.fromtimestamp(meta.timekey, self.zone).strftime(template)
            except (ValueError, OverflowError, OSError):   # a year Python's datetime cannot hold
                value = _strftime_any_year(template, meta.timekey, self.zone)
        if self.keys.tag and meta.tag is not None:
            tag = meta.tag
            value = value.replace("${tag}", tag)
            if TAG_PLACEHOLDER.search(template):
                parts = tag.split(".")
                table = {}
                for i, part in enumerate(parts):
                    table[f"tag[{i}]"] = part
                    table[f"tag[{i - len(parts)}]"] = part
                value = TAG_PLACEHOLDER.sub(lambda m: table.get(m.group(1), m.group(0)), value)
            left = TAG_PLACEHOLDER.search(value)
            if left and self.log is not None:
                self.log.warn(f"tag placeholder '{left.group(1)}' not replaced. tag:{tag}, template:{template}")
        value = value.replace(CHUNK_ID_PLACEHOLDER, chunk_id, 1)
        if self.keys.records and meta.variables is not None:
            variables = meta.variables

            def sub(m: re.Match[str]) -> str:
                key = m.group(1)
                if key == "tag":
                    return m.group(0)
                if key in variables:
                    return ruby_to_s(variables[key])
                if self.log is not None:
                    self.log.warn(f"chunk key placeholder '{key}' not replaced. template:{template}")
                return ""

            value = KEY_PLACEHOLDER.sub(sub, value)
        left = KEY_PLACEHOLDER.search(value)
        if left and self.log is not None:
            self.log.warn(f"chunk key placeholder '{left.group(1)}' not replaced. template:{template}")
        return value
