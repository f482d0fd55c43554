"""kawa's own log, in Fluentd's line format so operators' grep patterns keep working.

    2026-11-27 12:00:00 +0000 [info]: #0 following tail of /var/log/nginx/access.log

Plugin loggers prefix `#<worker>`; `<system><log> format json` switches to one JSON object per line.
Log lines can also be emitted as events tagged `fluent.<level>` (Fluentd's @FLUENT_LOG routing).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

import orjson

LEVELS = {"trace": 0, "debug": 1, "info": 2, "warn": 3, "error": 4, "fatal": 5}


def _quote(value: Any) -> str:
    """Fluentd prints field values with Ruby's String#inspect for strings."""
    if isinstance(value, str):
        return ruby_inspect(value)
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\f": "\\f",
            "\v": "\\v", "\b": "\\b", "\a": "\\a", "\x1b": "\\e", "#": "#"}


def ruby_inspect(s: str) -> str:
    """Ruby's String#inspect: double quotes, backslash escapes, `#{` escaped as `\\#{`."""
    out = ['"']
    prev = ""
    for ch in s:
        if ch == "{" and prev == "#":
            out[-1] = "\\#"
            out.append("{")
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "\ufffd" or (ord(ch) < 0x20) or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}" if ord(ch) < 0x100 else ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:          # a raw byte kept by surrogateescape
            out.append(f"\\x{ord(ch) - 0xDC00:02X}")
        else:
            out.append(ch)
        prev = ch
    out.append('"')
    return "".join(out)


DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"


class LogSink:
    """Where log lines go: one stream (stdout by default, `-o PATH`), text or JSON, a level threshold."""

    def __init__(self, stream: TextIO | None = None, level: str = "info", fmt: str = "text",
                 time_format: str = DEFAULT_TIME_FORMAT) -> None:
        self.stream = stream or sys.stdout
        self.path: str | None = None        # the file `stream` was opened from (-o, <log> path)
        self.level = LEVELS[level]
        self.format = fmt
        self.event_hook: Callable[[str, str, dict[str, Any]], None] | None = None
        self._lock = threading.Lock()
        self._stamp: Callable[[float], str] = _local_stamp
        self.set_time_format(time_format)

    def open_file(self, path: str) -> None:
        """Log to `path` (appending), from now on."""
        stream = open(path, "a", buffering=1)
        with self._lock:
            old, self.stream, self.path = self.stream, stream, path
        if old not in (sys.stdout, sys.stderr):
            old.close()

    def reopen(self) -> None:
        """SIGUSR1, as Fluentd: open the log file again by its name, so a logrotate that moved it
        (then sent the signal) gets a fresh file instead of writes to the moved one."""
        if self.path is not None:
            self.open_file(self.path)

    def set_time_format(self, time_format: str) -> None:
        """`<system><log> time_format`: Ruby's strftime (%N, %L, %:z ...) through kawa.timeformat,
        loaded only when a format other than Fluentd's default is configured."""
        self.time_format = time_format
        if time_format == DEFAULT_TIME_FORMAT:
            self._stamp = _local_stamp
            return
        from kawa.timeformat import TimeFormatter

        formatter = TimeFormatter(time_format)
        self._stamp = lambda now: str(formatter.format(int(now * 1_000_000_000)))

    def write(self, level: str, prefix: str, message: str, fields: dict[str, Any]) -> None:
        stamp = self._stamp(time.time())
        tail = "".join(f" {k}={_quote(v)}" for k, v in fields.items())
        if self.format == "json":
            # Fluentd's JSON line: the fields stay in the message as in text; a worker's "#N " prefix
            # becomes "worker_id"
            record: dict[str, Any] = {"time": stamp, "level": level, "message": message + tail}
            if prefix.startswith("#") and prefix[1:].strip().isdigit():
                record["worker_id"] = int(prefix[1:])
            elif prefix:
                record["message"] = prefix + record["message"]
            line = orjson.dumps(record, default=str).decode()
        else:
            line = f"{stamp} [{level}]: {prefix}{message}{tail}"
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
        hook = self.event_hook
        # Only the worker's own lines ("#0 ...") become fluent.* events, as in Fluentd where the
        # supervisor's lines never reach a worker's router.
        if hook is not None and prefix:
            hook(level, message + tail, fields)


def _local_stamp(now: float) -> str:
    return time.strftime(DEFAULT_TIME_FORMAT, time.localtime(now))


class Logger:
    """A named logger (the engine's, or a plugin's with its own @log_level)."""

    def __init__(self, sink: LogSink, prefix: str = "", level: str | None = None) -> None:
        self.sink = sink
        self.prefix = prefix
        self._level = LEVELS[level] if level else None
        self._limits: dict[str, tuple[float, int]] = {}

    def reopen_file(self) -> None:
        """SIGUSR1 (worker and supervisor): the sink's file opened again by name; if that fails, say
        so and keep writing to the file open now."""
        try:
            self.sink.reopen()
        except OSError as exc:
            self.warn("could not reopen the log file", path=self.sink.path, error=f"{type(exc).__name__}: {exc}")

    def child(self, prefix: str | None = None, level: str | None = None) -> "Logger":
        return Logger(self.sink, self.prefix if prefix is None else prefix, level)

    def enabled(self, level: str) -> bool:
        threshold = self._level if self._level is not None else self.sink.level
        return LEVELS[level] >= threshold

    def log(self, level: str, message: str, **fields: Any) -> None:
        if self.enabled(level):
            self.sink.write(level, self.prefix, message, fields)

    def trace(self, message: str, **fields: Any) -> None:
        self.log("trace", message, **fields)

    def debug(self, message: str, **fields: Any) -> None:
        self.log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("info", message, **fields)

    def warn(self, message: str, **fields: Any) -> None:
        self.log("warn", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("error", message, **fields)

    def fatal(self, message: str, **fields: Any) -> None:
        self.log("fatal", message, **fields)

    def limited(self, key: str, level: str, message: str, *, per_second: int = 20, **fields: Any) -> None:
        """Log at most `per_second` lines with this key each second; then say how many were held back.

        Used for per-line warnings ("pattern not matched") so a flood of bad lines cannot turn the
        log itself into the bottleneck (or into an input that feeds itself, pain point 14).
        """
        now = time.monotonic()
        start, count = self._limits.get(key, (now, 0))
        if now - start >= 1.0:
            if count > per_second:
                self.log(level, f"{count - per_second} more '{key}' messages suppressed in the last second")
            start, count = now, 0
        count += 1
        self._limits[key] = (start, count)
        if count <= per_second:
            self.log(level, message, **fields)
