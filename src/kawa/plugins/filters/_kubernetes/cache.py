"""A thread-safe LRU cache with a time-to-live, the bounded store behind the metadata filter.

Fluentd's plugin uses lru_redux's TTL::ThreadSafeCache(cache_size, cache_ttl); this is the same idea.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


class TtlLru(Generic[K, V]):
    """At most `max_size` entries; each expires `ttl` seconds after it was written (None: never).

    Reads refresh recency but not expiry, like lru_redux: a watch or a re-fetch refreshes expiry.
    """

    def __init__(self, max_size: int, ttl: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_size = max(1, max_size)
        self.ttl = ttl
        self._clock = clock
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            item = self._data.get(key, _MISSING)
            if item is _MISSING:
                return default
            value, expires = item  # type: ignore[misc]
            if expires and expires <= self._clock():
                del self._data[key]
                return default
            self._data.move_to_end(key)
            return value  # type: ignore[no-any-return]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Store `value`; `ttl` overrides the cache's own (used for short negative entries)."""
        life = self.ttl if ttl is None else ttl
        expires = self._clock() + life if life else 0.0
        with self._lock:
            self._data[key] = (value, expires)
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def pop(self, key: K) -> None:
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def keys(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._data))
