"""Background threads that keep the metadata store fresh: list+watch loops and an on-demand fetcher.

They never raise into the pipeline: an API outage only means lookups miss until it recovers.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from typing import Any, Callable

from kawa.log import Logger
from kawa.plugins.filters._kubernetes.api import ApiClient, ApiError, Gone, NotFound
from kawa.plugins.filters._kubernetes.store import MetadataStore

# Cap of the exponential watch backoff. Fluentd raises UnrecoverableError after
# watch_retry_max_times and restarts the worker; kawa keeps retrying at this pace instead.
MAX_BACKOFF_SECONDS = 60.0
# After a failed GET, on-demand fetches pause this long so an outage costs one error per window.
FETCH_PAUSE_SECONDS = 5.0


class Stats:
    """Thread-safe counters, reported by the filter's stats() and its periodic info line."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class Watcher(threading.Thread):
    """LIST a resource into the store, then WATCH it from the list's resourceVersion; on any
    failure back off (watch_retry_interval * base^n) and start over."""

    def __init__(self, kind: str, client: ApiClient, store: MetadataStore, stats: Stats, log: Logger,
                 stop: threading.Event, *, field_selector: str | None, node_name: str | None,
                 retry_interval: float, backoff_base: float, max_retries: int) -> None:
        super().__init__(name=f"kawa-k8s-watch-{kind}", daemon=True)
        self.kind = kind                      # "pods" | "namespaces"
        self.client = client
        self.store = store
        self.stats = stats
        self.log = log
        self.stop_event = stop
        self.field_selector = field_selector
        self.node_name = node_name
        self.retry_interval = retry_interval
        self.backoff_base = backoff_base
        self.max_retries = max_retries
        self.resource_version: str | None = None
        self.synced = threading.Event()       # the first LIST has been stored

    def _query(self) -> dict[str, str]:
        return {"fieldSelector": self.field_selector} if self.field_selector else {}

    def _list(self) -> None:
        # resourceVersion=0: the API server's cache answers (as the plugin does)
        body = self.client.get(self.kind, {**self._query(), "resourceVersion": "0"})
        for item in body.get("items") or ():
            if self.kind == "pods":
                self.store.put_pod(item)
            else:
                self.store.put_namespace(item)
        self.stats.bump(f"{self.kind}_listed", len(body.get("items") or ()))
        self.resource_version = (body.get("metadata") or {}).get("resourceVersion")
        self.synced.set()

    def _apply(self, notice: dict[str, Any]) -> None:
        kind, obj = notice.get("type"), notice.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone("watch: resourceVersion too old", 410)
            raise ApiError(f"watch {self.kind}: {obj.get('message', obj)}", obj.get("code"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind in ("ADDED", "MODIFIED"):
            if self.kind == "pods":
                stored = self.store.watched_pod(obj, self.node_name)
                self.stats.bump("pod_cache_watch_updates" if stored else "pod_cache_watch_misses")
            else:
                self.store.watched_namespace(obj)
                self.stats.bump("namespace_cache_watch_updates")
        # DELETED is ignored on purpose (as the plugin): late lines of a deleted pod keep metadata
        # until the entry ages out; BOOKMARK only moves the resourceVersion.

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                for notice in self.client.watch(self.kind, {**self._query(),
                                                            "resourceVersion": self.resource_version or "0"}):
                    self._apply(notice)
                    failures = 0
                    if self.stop_event.is_set():
                        return
                failures = 0                  # the server closed the stream at timeoutSeconds
            except Gone:
                self.stats.bump(f"{self.kind}_watch_gone")
                self.log.info(f"410 Gone encountered. Restarting {self.kind} watch to reset resource versions.")
                self.resource_version = None
            except Exception as exc:  # any failure: the thread must survive to retry
                if self.stop_event.is_set():
                    return
                self.stats.bump(f"{self.kind}_watch_failures")
                delay = min(self.retry_interval * self.backoff_base ** failures, MAX_BACKOFF_SECONDS)
                failures += 1
                level = "error" if failures >= self.max_retries else "info"
                self.log.limited(f"k8s watch {self.kind}", level,
                                 f"Exception encountered in {self.kind} watch; retrying in {delay:g}s: {exc}",
                                 per_second=1)
                if self.stop_event.wait(delay):
                    return


class Fetcher(threading.Thread):
    """GETs pods and namespaces the filter asked for (cache misses), one at a time, deduplicated."""

    def __init__(self, client: ApiClient, store: MetadataStore, stats: Stats, log: Logger,
                 stop: threading.Event, clock: Callable[[], float] = time.monotonic,
                 pause_seconds: float | None = None) -> None:
        super().__init__(name="kawa-k8s-fetch", daemon=True)
        self.pause_seconds = FETCH_PAUSE_SECONDS if pause_seconds is None else pause_seconds
        self.client = client
        self.store = store
        self.stats = stats
        self.log = log
        self.stop_event = stop
        self.clock = clock
        self.queue: queue.SimpleQueue[tuple[str, ...] | None] = queue.SimpleQueue()
        self._pending: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()
        self.paused_until = 0.0               # after an error: the API is treated as down until then
        self.last_error: str | None = None

    @property
    def api_down(self) -> bool:
        return self.clock() < self.paused_until

    def request(self, key: tuple[str, ...]) -> None:
        """Ask for ("pod", ns, name) or ("namespace", ns); cheap and idempotent (called per batch)."""
        if self.api_down:
            return
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self.queue.put(key)

    def run(self) -> None:
        while not self.stop_event.is_set():
            key = self.queue.get()
            if key is None:
                return
            try:
                if not self.api_down:
                    self._fetch(key)
            finally:
                with self._lock:
                    self._pending.discard(key)

    def _fetch(self, key: tuple[str, ...]) -> None:
        try:
            if key[0] == "pod":
                self.store.put_pod(self.client.get_pod(key[1], key[2]))
                self.stats.bump("pod_cache_api_updates")
            else:
                self.store.put_namespace(self.client.get_namespace(key[1]))
                self.stats.bump("namespace_cache_api_updates")
        except NotFound:
            if key[0] == "pod":
                self.store.pod_missing(key[1], key[2])
            else:
                self.store.namespace_missing(key[1])
            self.stats.bump(f"{key[0]}_cache_api_not_found")
        except Exception as exc:  # outage, TLS, auth: pause, warn (rate-limited), keep going
            self.stats.bump(f"{key[0]}_cache_api_nil_error")
            self.paused_until = self.clock() + self.pause_seconds
            self.last_error = str(exc)
            self.log.limited("k8s fetch", "error",
                             f"Exception '{exc}' encountered fetching {key[0]} metadata from Kubernetes API "
                             f"{self.client.settings.api_version} endpoint {self.client.settings.url}",
                             per_second=1)

    def stop(self) -> None:
        self.queue.put(None)
