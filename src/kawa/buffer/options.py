"""Fluentd's whole `<buffer>` section declared once, and its resolution into BufferSettings.

Backends (kawa.plugins.buffers.memory / file) subclass BufferOptions; outputs choose defaults.
"""

from __future__ import annotations

import re
import time as _time
from dataclasses import dataclass
from typing import Any, Mapping

from kawa.config import values
from kawa.config.schema import Options, option
from kawa.errors import ConfigError

# Fluentd lib/fluent/plugin/buffer.rb DEFAULT_CHUNK_LIMIT_SIZE / DEFAULT_TOTAL_LIMIT_SIZE / DEFAULT_CHUNK_FULL_THRESHOLD
MEMORY_CHUNK_LIMIT_SIZE = 8 * 1024 * 1024
MEMORY_TOTAL_LIMIT_SIZE = 512 * 1024 * 1024
CHUNK_FULL_THRESHOLD = 0.95
# Fluentd output.rb CHUNK_KEY_PATTERN and CHUNKING_FIELD_WARN_NUM
CHUNK_KEY_PATTERN = re.compile(r"[-_.@a-zA-Z0-9]+")
NESTED_KEY_PATTERN = re.compile(r"\$(\.[-_@a-zA-Z0-9]+)+")
CHUNKING_FIELD_WARN_NUM = 4


class BufferOptions(Options):
    """Every `<buffer>` option Fluentd has (output.rb config_section :buffer + buffer.rb)."""

    # chunking
    timekey = option(None, "time", doc="Time range of one chunk when 'time' is a chunk key.")
    timekey_wait = option(600, "time", doc="Seconds to wait after a time range ends before flushing it.")
    timekey_use_utc = option(False, "bool", doc="Use UTC for timekey boundaries and path placeholders.")
    timekey_zone = option(_time.strftime("%z"), doc="Time zone (-0700 or Asia/Tokyo) of timekey and placeholders.")
    # limits (buffer.rb)
    chunk_limit_size = option(MEMORY_CHUNK_LIMIT_SIZE, "size", doc="Maximum bytes of one chunk.")
    chunk_limit_records = option(None, "integer", doc="Maximum records of one chunk.")
    total_limit_size = option(MEMORY_TOTAL_LIMIT_SIZE, "size", doc="Maximum bytes of the whole buffer.")
    queue_limit_length = option(None, "integer", doc="Deprecated: total_limit_size = chunk_limit_size * this.")
    chunk_full_threshold = option(CHUNK_FULL_THRESHOLD, "float", doc="Fill ratio at which a chunk is queued.")
    queued_chunks_limit_size = option(None, "integer", doc="Maximum queued chunks (default flush_thread_count).")
    compress = option("text", "enum", choices=("text", "gzip"),
                      doc="Store chunk data gzip-compressed (chunk limits count compressed bytes).")
    disable_chunk_backup = option(False, "bool", doc="Throw away unrecoverable chunks instead of backing them up.")
    # flushing (output.rb)
    flush_at_shutdown = option(None, "bool", doc="Flush everything at shutdown (default: true for memory).")
    flush_mode = option("default", "enum", choices=("default", "lazy", "interval", "immediate"),
                        doc="default = lazy with a time key, interval otherwise.")
    flush_interval = option(60, "time", doc="Seconds between flushes in interval mode.")
    flush_thread_count = option(1, "integer", doc="Chunks written in parallel.")
    flush_thread_interval = option(1.0, "float", doc="Seconds between checks for chunks to flush.")
    flush_thread_burst_interval = option(1.0, "float", doc="Seconds between flushes when many chunks are queued.")
    # Fluentd output.rb uses it only for outputs that implement try_write (delayed commit)
    delayed_commit_timeout = option(60, "time", no_effect="used only by outputs with delayed commit "
                                    "(Fluentd's try_write); no kawa output commits late",
                                    doc="Timeout of delayed commits.")
    overflow_action = option("throw_exception", "enum", choices=("throw_exception", "block", "drop_oldest_chunk"),
                             doc="What emit does when the buffer is full.")
    # retries (output.rb, plugin_helper/retry_state.rb)
    retry_forever = option(False, "bool", doc="Retry forever (ignore retry_timeout and retry_max_times).")
    retry_timeout = option(72 * 3600, "time", doc="Give up on a chunk after this many seconds of failures.")
    retry_max_times = option(None, "integer", doc="Give up on a chunk after this many retries.")
    retry_secondary_threshold = option(0.8, "float", doc="Ratio of retry_timeout after which <secondary> is used.")
    retry_type = option("exponential_backoff", "enum", choices=("exponential_backoff", "periodic"),
                        doc="Backoff shape.")
    retry_wait = option(1, "time", doc="First wait (constant factor of exponential backoff).")
    retry_exponential_backoff_base = option(2.0, "float", doc="Base of exponential backoff.")
    retry_max_interval = option(None, "time", doc="Cap of one backoff interval.")
    retry_randomize = option(True, "bool", doc="Randomize waits by +-12.5% so retries do not burst.")

    def check(self) -> Any:
        if self.retry_secondary_threshold is not None and not 0 < self.retry_secondary_threshold < 1:
            yield "retry_secondary_threshold: must be between 0 and 1 (exclusive)"
        if self.flush_thread_count is not None and self.flush_thread_count < 1:
            yield "flush_thread_count: must be 1 or more"


@dataclass(frozen=True)
class ChunkKeys:
    """The `<buffer KEYS>` argument split as Fluentd does: time, tag and record keys."""

    time: bool = False
    tag: bool = False
    records: tuple[str, ...] = ()

    @property
    def simple(self) -> bool:
        """True when chunking needs no per-event work (no time, no record keys)."""
        return not self.time and not self.records


def parse_chunk_keys(arg: str, default: tuple[str, ...]) -> ChunkKeys:
    """Fluentd output.rb configure: chunk keys from the section argument, validated."""
    keys = list(default) if arg.strip() == "" else values.array(arg, "string")
    use_time = "time" in keys
    use_tag = "tag" in keys
    records = tuple(k for k in keys if k not in ("time", "tag"))
    for key in records:
        if key.startswith("$["):
            raise ConfigError("in chunk_keys: bracket notation is not allowed")
        if key.startswith("$"):
            if not NESTED_KEY_PATTERN.fullmatch(key):
                raise ConfigError(f"in chunk_keys: invalid record accessor '{key}'")
        elif not CHUNK_KEY_PATTERN.fullmatch(key):
            raise ConfigError("chunk_keys specification includes invalid char")
    return ChunkKeys(use_time, use_tag, tuple(dict.fromkeys(records)))


@dataclass(frozen=True)
class BufferSettings:
    """The resolved buffer behaviour of one output: options plus what Fluentd derives from them."""

    options: BufferOptions
    keys: ChunkKeys
    flush_mode: str               # lazy | interval | immediate
    flush_at_shutdown: bool
    queued_chunks_limit_size: int
    total_limit_size: int
    utc_offset: Any               # int seconds, or a zoneinfo.ZoneInfo for named zones

    def __getattr__(self, name: str) -> Any:  # every raw option stays reachable: settings.retry_wait
        return getattr(self.options, name)


def apply_defaults(opts: BufferOptions, defaults: Mapping[str, Any]) -> None:
    """Output-specific defaults (out_file: timekey 1d) for options the <buffer> section does not set."""
    element = opts._element
    for name, value in defaults.items():
        if element is None or name not in element.attrs:
            setattr(opts, name, value)


def resolve(opts: BufferOptions, *, default_chunk_keys: tuple[str, ...], persistent: bool,
            log: Any = None) -> BufferSettings:
    """Fluentd output.rb configure: derive flush mode, limits and time zone; raise ConfigError."""
    keys = parse_chunk_keys(opts._arg, default_chunk_keys)
    element = opts._element
    given = set(element.attrs) if element is not None else set()
    utc_offset: Any = 0
    if keys.time:
        if not opts.timekey:
            raise ConfigError("<buffer ...> argument includes 'time', but timekey is not configured")
        if opts.timekey <= 0:
            raise ConfigError(f"timekey should be greater than 0. current timekey: {opts.timekey}")
        utc_offset = 0 if opts.timekey_use_utc else zone_offset(opts.timekey_zone)
    if log is not None and (1 if keys.tag else 0) + len(keys.records) >= CHUNKING_FIELD_WARN_NUM:
        log.warn("many chunk keys specified, and it may cause too many chunks on your system.")
    mode = opts.flush_mode
    if mode == "default":
        mode = "lazy" if keys.time else "interval"
    if mode != "interval" and "flush_interval" in given:
        if "flush_mode" in given:
            raise ConfigError(f"'flush_interval' can't be specified when 'flush_mode' is not 'interval' "
                              f"explicitly: '{mode}'")
        if log is not None:
            log.warn(f"'flush_interval' is ignored because default 'flush_mode' is not 'interval': '{mode}'")
    at_shutdown = opts.flush_at_shutdown
    if at_shutdown is None:
        at_shutdown = not persistent
    total = opts.total_limit_size
    if opts.queue_limit_length is not None:
        total = opts.chunk_limit_size * opts.queue_limit_length
    queued_limit = opts.queued_chunks_limit_size or opts.flush_thread_count
    return BufferSettings(opts, keys, mode, bool(at_shutdown), queued_limit, total, utc_offset)


_OFFSET_RE = re.compile(r"([+-])(\d\d):?(\d\d)")


def zone_offset(zone: str) -> Any:
    """'+0900' / '-07:00' -> seconds east of UTC; 'Asia/Tokyo' -> ZoneInfo (offset varies with DST)."""
    m = _OFFSET_RE.fullmatch(zone.strip())
    if m:
        seconds = int(m.group(2)) * 3600 + int(m.group(3)) * 60
        return -seconds if m.group(1) == "-" else seconds
    if zone.strip().upper() in ("UTC", "Z", "GMT"):
        return 0
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(zone.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"Unsupported timezone '{zone}'") from None
