"""Log group / stream names: where they come from (option with placeholders, tag, record key) and
how names AWS would refuse are fixed (with one warning per name) instead of failing every call.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

from kawa.ruby_values import ruby_to_s

# CreateLogGroup: logGroupName 1-512 chars matching [\.\-_/#A-Za-z0-9]+.
GROUP_NAME_MAX = 512
GROUP_BAD_CHARS = re.compile(r"[^.\-_/#A-Za-z0-9]")
# CreateLogStream: logStreamName 1-512 chars, "The ':' (colon) and '*' (asterisk) characters are not allowed."
STREAM_NAME_MAX = 512
STREAM_BAD_CHARS = re.compile(r"[:*]")
REPLACEMENT = "_"
# Bound of every per-name cache: one entry per distinct name seen (per-pod streams can be many).
CACHE_SIZE = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A small LRU map: known streams, fixed names. The oldest entry goes when full."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def __contains__(self, key: K) -> bool:
        return key in self._data

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def discard(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


def fix_group_name(name: str) -> str:
    return GROUP_BAD_CHARS.sub(REPLACEMENT, name)[:GROUP_NAME_MAX]


def fix_stream_name(name: str) -> str:
    return STREAM_BAD_CHARS.sub(REPLACEMENT, name)[:STREAM_NAME_MAX]


class NameFixer:
    """Fixes names AWS would refuse; warns once per distinct bad name; remembers the answer."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self._groups: BoundedCache[str, str] = BoundedCache()
        self._streams: BoundedCache[str, str] = BoundedCache()
        self.fixed = 0

    def group(self, name: str) -> str:
        return self._fix(name, self._groups, fix_group_name, "log group")

    def stream(self, name: str) -> str:
        return self._fix(name, self._streams, fix_stream_name, "log stream")

    def _fix(self, name: str, cache: BoundedCache[str, str], fix: Callable[[str], str], what: str) -> str:
        known = cache.get(name)
        if known is not None:
            return known
        fixed = fix(name)
        if fixed != name:
            self.fixed += 1
            self._warn(f"invalid {what} name {name!r} (CloudWatch Logs refuses it) is sent as {fixed!r}")
        cache.put(name, fixed)
        return fixed


class Destinations:
    """Where each record goes, as fluent-plugin-cloudwatch-logs write() decides (group, then stream)."""

    def __init__(self, *, use_tag_as_group: bool, log_group_name_key: str | None, remove_group_key: bool,
                 use_tag_as_stream: bool, log_stream_name_key: str | None, remove_stream_key: bool,
                 fixer: NameFixer) -> None:
        self.use_tag_as_group = use_tag_as_group
        self.group_key = log_group_name_key
        self.remove_group_key = remove_group_key
        self.use_tag_as_stream = use_tag_as_stream
        self.stream_key = log_stream_name_key
        self.remove_stream_key = remove_stream_key
        self.fixer = fixer

    @property
    def per_record(self) -> bool:
        """True when names depend on the record or tag (otherwise one destination per chunk)."""
        return bool(self.use_tag_as_group or self.group_key or self.use_tag_as_stream or self.stream_key)

    def resolve(self, tag: str, record: dict[str, Any], group_template: str | None,
                stream_template: str | None) -> tuple[str | None, str | None]:
        """(group, stream) for one record, names fixed; None where the name is missing or empty.
        Removes the name keys from `record` when asked (the caller passes a copy it owns)."""
        if self.use_tag_as_group:
            group: Any = tag
        elif self.group_key:
            group = record.pop(self.group_key, None) if self.remove_group_key else record.get(self.group_key)
        else:
            group = group_template
        if self.use_tag_as_stream:
            stream: Any = tag
        elif self.stream_key:
            stream = record.pop(self.stream_key, None) if self.remove_stream_key else record.get(self.stream_key)
        else:
            stream = stream_template
        group_name = self.fixer.group(ruby_to_s(group)) if group not in (None, "") else None
        stream_name = self.fixer.stream(ruby_to_s(stream)) if stream not in (None, "") else None
        return group_name or None, stream_name or None
