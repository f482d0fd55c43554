"""Fluentd's <inject> section: add hostname, worker id, tag and event time to records at output time.

Outputs declare `inject = section(InjectOptions)` and call `Injector.inject_batch(tag, events)`;
records are copied only when something is added, so the router's records stay untouched.
"""

from __future__ import annotations

import socket
from typing import Any

from kawa.config.schema import Options, option
from kawa.event import Event
from kawa.log import Logger
from kawa.timeformat import TimeFormatter

# plugin_helper/inject.rb time_type list
TIME_TYPES = ("float", "unixtime", "unixtime_millis", "unixtime_micros", "unixtime_nanos", "string")


class InjectOptions(Options):
    """`<inject>`: which keys to add to each record before formatting."""

    hostname_key = option(None, doc="Key for the host name.")
    hostname = option(None, doc="Host name to inject (default: this machine's name).")
    worker_id_key = option(None, doc="Key for the worker id.")
    tag_key = option(None, doc="Key for the event tag.")
    time_key = option(None, doc="Key for the event time.")
    time_type = option("float", "enum", choices=TIME_TYPES, doc="How the time is written.")
    time_format = option(None, doc="strftime format for time_type string (%N: nanoseconds); default ISO 8601.")
    localtime = option(True, "bool", doc="Format times in local time.")
    utc = option(False, "bool", doc="Format times in UTC.")
    timezone = option(None, doc="Time zone for formatting, e.g. +09:00 or Asia/Tokyo.")
    time_format_fallbacks = option([], "array", no_effect="used by parsers only", doc="Unused by <inject>.")


class Injector:
    """The configured <inject>; `enabled` is False when it adds nothing (then batches pass through)."""

    def __init__(self, options: InjectOptions | None, log: Logger, worker_id: int = 0) -> None:
        self.enabled = False
        self._static: dict[str, Any] = {}
        self._tag_key: str | None = None
        self._time_key: str | None = None
        self._format_time: Any = None
        if options is None:
            return
        static: dict[str, Any] = {}
        if options.hostname_key:
            host = options.hostname
            if not host:
                host = socket.gethostname()
                log.info("using hostname for specified field", host_key=options.hostname_key, host_name=host)
            static[options.hostname_key] = host
        if options.worker_id_key:
            static[options.worker_id_key] = worker_id
        self._static = static
        self._tag_key = options.tag_key
        self._time_key = options.time_key
        if options.time_key:
            localtime = options.localtime and not options.utc
            self._format_time = TimeFormatter(options.time_format, localtime=localtime, utc=options.utc,
                                              timezone=options.timezone, time_type=options.time_type).format
        elif options.time_format:
            log.warn("'time_format' specified without 'time_key', will be ignored")
        # Key order matters for the output bytes: hostname, worker id, tag, time (inject.rb).
        self.enabled = bool(static or self._tag_key or self._time_key)

    def inject_batch(self, tag: str, events: list[Event]) -> list[Event]:
        if not self.enabled:
            return events
        static = dict(self._static)
        if self._tag_key:
            static[self._tag_key] = tag
        time_key = self._time_key
        if time_key is None:
            return [(t, {**r, **static}) for t, r in events]
        fmt = self._format_time
        if time_key in static:   # the time key repeats an earlier key: keep Fluentd's assignment order
            del static[time_key]
        return [(t, {**r, **static, time_key: fmt(t)}) for t, r in events]

    def added_keys(self, tag: str) -> tuple[dict[str, Any], str | None, Any]:
        """(static keys in output order incl. the tag, time key or None, time formatter) for `tag`:
        what `inject_batch` merges, for writers that splice the keys instead of copying records."""
        static = dict(self._static)
        if self._tag_key:
            static[self._tag_key] = tag
        time_key = self._time_key
        if time_key is not None and time_key in static:
            del static[time_key]
        return static, time_key, self._format_time

    def inject(self, tag: str, time: int, record: dict[str, Any]) -> dict[str, Any]:
        return self.inject_batch(tag, [(time, record)])[0][1]
