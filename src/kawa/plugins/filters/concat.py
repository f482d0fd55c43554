"""fluent-plugin-concat: joins the `key` values of consecutive events of one stream into one event
(multiline stack traces, Docker's 16 KiB partial lines, CRI's P/F log tags), as AWS's Container Insights
Fluentd configuration uses it:

    <filter **>
      @type concat
      key log
      multiline_end_regexp /\\n$/
      separator ""
    </filter>

Modes (one of): n_lines; multiline_start_regexp / multiline_end_regexp (continuous_line_regexp);
partial_key + partial_value; use_partial_metadata (Docker's fluentd / journald drivers);
use_partial_cri_logtag. A stream is the tag (plus stream_identity_key's value). A stream that gets no
event for flush_interval seconds is flushed to timeout_label's router, else as an error event
("Timeout flush: <stream>"), as the plugin does.

Held lines are not lost to a kill -9: an emit whose events this filter holds stays unsettled
(kawa.delivery) until the events it became part of are stored downstream, so tail's pos_file stays
before them and reads them again after a crash (Fluentd's in_tail moves past them at once). The
checkpoint the outputs store with the emit's other events (a file buffer skips to it at restart) is
held back to the oldest held line too, and tail's pos_file moves up to that line once the rest is
stored: after a crash the lines before the group are not read again. The emit also carries the
offset of every line still held (`Ticket.hold_back`), so that with several streams in one file a
restart reads only those again, not the other streams' lines stored after them (tail's held_lines).
"""

from __future__ import annotations

import asyncio
import re
import time as _time
from typing import Any

from kawa import delivery
from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event, Record
from kawa.plugins.base import Emitter, Filter, PluginContext
from kawa.plugins.parsers._common import ruby_to_i
from kawa.ruby_values import ruby_to_s
from kawa.rubyregex import compile_ruby_regexp

_LOG_TAG = re.compile(r"\Afluent\.(?:trace|debug|info|warn|error|fatal)\Z")
_PARTIAL_METADATA_FIELDS = {
    # format: (message, id, ordinal, last, indicator)
    "docker-fluentd": ("partial_message", "partial_id", "partial_ordinal", "partial_last", "partial_message"),
    "docker-journald": ("CONTAINER_PARTIAL_MESSAGE", "CONTAINER_PARTIAL_ID", "CONTAINER_PARTIAL_ORDINAL",
                        "CONTAINER_PARTIAL_LAST", "CONTAINER_PARTIAL_ID"),
    "docker-journald-lowercase": ("container_partial_message", "container_partial_id",
                                  "container_partial_ordinal", "container_partial_last", "container_partial_id"),
}


class TimeoutError(Exception):       # noqa: A001 - the plugin's class name, shown in error events
    error_class = "Fluent::Plugin::ConcatFilter::TimeoutError"


class ConcatOptions(Options):
    key = option(doc="The key whose values are joined.")
    separator = option("\n", doc="Put between the joined values.")
    n_lines = option(None, "integer", doc="Join every N events.")
    multiline_start_regexp = option(None, doc="/regexp/ of a group's first value.")
    multiline_end_regexp = option(None, doc="/regexp/ of a group's last value.")
    continuous_line_regexp = option(None, doc="/regexp/ of the values that continue a group.")
    stream_identity_key = option(None, doc="The key whose value (with the tag) names a stream.")
    flush_interval = option(60.0, "time", doc="Flush a stream idle this long (0: never).")
    timeout_label = option(None, doc="The label that gets events flushed by the timeout (else: error events).")
    use_first_timestamp = option(False, "bool", doc="Give the joined event the first event's time.")
    partial_key = option(None, doc="The key that says an event is partial.")
    partial_value = option(None, doc="partial_key's value of a partial event.")
    keep_partial_key = option(False, "bool", doc="Keep partial_key in the joined event.")
    use_partial_metadata = option(False, "bool", doc="Join by Docker's partial message metadata.")
    partial_metadata_format = option("docker-fluentd", "enum", choices=tuple(_PARTIAL_METADATA_FIELDS),
                                     doc="Which Docker log driver's metadata.")
    keep_partial_metadata = option(False, "bool", doc="Keep the partial metadata in the joined event.")
    use_partial_cri_logtag = option(False, "bool", doc="Join by the CRI log tag (P / F).")
    partial_cri_logtag_key = option(None, doc="The key holding the CRI log tag.")
    partial_cri_stream_key = option("stream", doc="The key holding the CRI stream (removed when joined).")
    buffer_limit_size = option(500 * 1024, "size", doc="Bytes a stream holds before buffer_overflow_method.")
    buffer_overflow_method = option("ignore", "enum", choices=("ignore", "truncate", "drop", "new"),
                                    doc="partial_key mode: what a full stream does.")


def _slashed(text: str | None) -> re.Pattern[str] | None:
    """The plugin takes these regexps as "/.../" strings and drops the first and last character."""
    if text is None:
        return None
    try:
        return compile_ruby_regexp(text[1:-1])
    except ValueError as exc:
        raise ConfigError(f"invalid regexp {text}: {exc}") from None


class _Stream:
    __slots__ = ("identity", "events", "size", "shares", "tickets", "resume", "lines", "seen", "hurry")

    def __init__(self, identity: str, hurry: Any) -> None:
        self.identity = identity
        self.events: list[tuple[str, int, Record]] = []     # (tag, time, record)
        self.size = 0
        self.shares: list[delivery.Share] = []              # the emits these events came from
        self.tickets: set[int] = set()
        # input checkpoint key -> where that input reads the first held event again after a restart
        self.resume: dict[str, int] = {}
        # input checkpoint key -> the offset of each held event's own line there (None: not known)
        self.lines: dict[str, list[int | None]] = {}
        self.seen = _time.monotonic()
        # an input that stopped reading until this stream's emits settle: flush it now
        self.hurry = lambda: hurry(identity)


@register("filter", "concat")
class ConcatFilter(Filter):
    Options = ConcatOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        modes = {"n_lines": o.n_lines is not None,
                 "multiline_start_regexp/multiline_end_regexp": bool(o.multiline_start_regexp or o.multiline_end_regexp),
                 "partial_key": o.partial_key is not None, "use_partial_metadata": o.use_partial_metadata,
                 "use_partial_cri_logtag": o.use_partial_cri_logtag}
        if not any(modes.values()):
            raise ConfigError("Either n_lines, multiline_start_regexp, multiline_end_regexp, partial_key, "
                              "use_partial_metadata or use_partial_cri_logtag is required")
        for a, b in (("n_lines", "multiline_start_regexp/multiline_end_regexp"), ("partial_key", "n_lines"),
                     ("partial_key", "multiline_start_regexp/multiline_end_regexp"),
                     ("use_partial_metadata", "n_lines"),
                     ("use_partial_metadata", "multiline_start_regexp/multiline_end_regexp"),
                     ("use_partial_metadata", "partial_key"), ("use_partial_cri_logtag", "n_lines"),
                     ("use_partial_cri_logtag", "multiline_start_regexp/multiline_end_regexp"),
                     ("use_partial_cri_logtag", "partial_key")):
            if modes[a] and modes[b]:
                raise ConfigError(f"{a} and {b} are exclusive")
        if o.partial_key is not None and o.partial_value is None:
            raise ConfigError("partial_value is required when partial_key is specified")
        if o.use_partial_cri_logtag and not o.partial_cri_logtag_key:
            raise ConfigError("partial_cri_logtag_key is required with use_partial_cri_logtag")
        self.mode = ("line" if o.n_lines is not None else "partial" if o.partial_key is not None
                     else "partial_metadata" if o.use_partial_metadata
                     else "partial_cri" if o.use_partial_cri_logtag else "regexp")
        self.key: str = o.key
        self.start_re = _slashed(o.multiline_start_regexp)
        self.end_re = _slashed(o.multiline_end_regexp)
        self.continuous_re = _slashed(o.continuous_line_regexp)
        (self.pm_message, self.pm_id, self.pm_ordinal, self.pm_last,
         self.pm_indicator) = _PARTIAL_METADATA_FIELDS[o.partial_metadata_format]
        self.streams: dict[str, _Stream] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timeout_emitter: Emitter | None = None
        self._running = False
        self.counters = {"joined_events": 0, "joined_lines": 0, "timeout_flushes": 0, "dropped_events": 0}

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        label = self.options.timeout_label
        router = getattr(self.ctx.emitter, "router", None)
        if label and router is not None:
            if label not in router.labels:
                raise ConfigError(f"{label} label not found")
            self._timeout_emitter = router.bind(label)

    async def stop(self) -> None:
        """Flush what is held, as the plugin's shutdown does ("Flush remaining buffer")."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for identity, stream in list(self.streams.items()):
            if stream.events:
                tag, first_time, record = self._joined(stream)
                message = f"Flush remaining buffer: {identity}"
                await self._timed_out(tag, first_time, record, message, stream)
                self.log.info(message)
        self.streams.clear()

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "held_streams": sum(1 for s in self.streams.values() if s.events),
                "held_events": sum(len(s.events) for s in self.streams.values())}

    # -- the filter ---------------------------------------------------------------------------------
    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        if _LOG_TAG.match(tag):
            return events
        out: list[Event] = []
        key = self.key
        mode = self.mode
        ticket = delivery.current()
        for time, record in events:
            if key not in record or (mode == "partial" and self.options.partial_key not in record) \
                    or (mode == "partial_metadata" and self.pm_indicator not in record):
                out.append((time, record))
                continue
            try:
                for flushed_time, joined in self._process(tag, time, record, ticket):
                    event_time = flushed_time if self.options.use_first_timestamp else time
                    merged = {**record, **joined}
                    self._strip(merged)
                    out.append((event_time, merged))
            except Exception as exc:   # the plugin: the event goes to the error stream
                if self.ctx.emitter is not None:
                    self.ctx.emitter.emit_error_event(tag, time, record, exc)
        if ticket is not None and ticket.checkpoint is not None:
            # The outputs store this emit's other events with its checkpoint, where a restart
            # resumes: it must stay before every line still held (from this emit or earlier ones).
            source = ticket.checkpoint[0]
            held = [s.resume[source] for s in self.streams.values() if source in s.resume]
            if held:
                lines = [offset for s in self.streams.values() for offset in s.lines.get(source, ())]
                ticket.hold_back(min(held), None if None in lines else sorted(lines))  # type: ignore[type-var]
        if self.streams and self._timer is None and self.options.flush_interval > 0 and self._running:
            self._arm()
        return out

    def _strip(self, merged: Record) -> None:
        o = self.options
        if self.mode == "partial":
            if not o.keep_partial_key:
                merged.pop(o.partial_key, None)
        elif self.mode == "partial_metadata":
            if not o.keep_partial_metadata:
                for field in (self.pm_message, self.pm_id, self.pm_ordinal, self.pm_last):
                    merged.pop(field, None)
        elif self.mode == "partial_cri":
            if not o.keep_partial_key:
                merged.pop(o.partial_cri_logtag_key, None)
            merged.pop(o.partial_cri_stream_key, None)

    def _identity(self, tag: str, record: Record) -> str:
        o = self.options
        if self.mode == "partial_metadata":
            extra = ruby_to_s(record.get(o.stream_identity_key)) if o.stream_identity_key else ""
            return f"{tag}:{extra}{ruby_to_s(record.get(self.pm_id))}"
        if o.stream_identity_key:
            return f"{tag}:{ruby_to_s(record.get(o.stream_identity_key))}"
        return f"{tag}:default"

    def _process(self, tag: str, time: int, record: Record, ticket: delivery.Ticket | None) -> list[tuple[int, Record]]:
        """The joined events this event completes: (first event's time, record), in order."""
        identity = self._identity(tag, record)
        stream = self.streams.get(identity)
        if stream is None:
            stream = self.streams[identity] = _Stream(identity, self._hurry)
        stream.seen = _time.monotonic()
        out: list[tuple[int, Record]] = []
        o = self.options
        if self.mode == "line":
            self._hold(stream, tag, time, record, ticket)
            if len(stream.events) >= o.n_lines:
                out.append(self._flush(stream, ticket))
        elif self.mode == "partial":
            self._process_partial(stream, tag, time, record, ticket, out)
        elif self.mode == "partial_metadata":
            self._hold(stream, tag, time, record, ticket)
            if ruby_to_s(record.get(self.pm_last)) == "true":
                out.append(self._flush(stream, ticket))
        elif self.mode == "partial_cri":
            self._hold(stream, tag, time, record, ticket)
            if ruby_to_s(record.get(o.partial_cri_logtag_key)).split(":")[0] == "F":
                out.append(self._flush(stream, ticket))
        else:
            self._process_regexp(stream, tag, time, record, ticket, out)
        return out

    def _process_partial(self, stream: _Stream, tag: str, time: int, record: Record,
                         ticket: delivery.Ticket | None, out: list[tuple[int, Record]]) -> None:
        o = self.options
        force = False
        size = _bytesize(record)
        if stream.size + size > o.buffer_limit_size:
            stream.size = 0
            method = o.buffer_overflow_method
            if method == "ignore":
                self._hold(stream, tag, time, record, ticket, size=0)
            elif method == "drop":
                self.counters["dropped_events"] += len(stream.events)
                self.log.warn("concat: a stream went over buffer_limit_size; its held events are dropped "
                              "(buffer_overflow_method drop)", stream=self._identity(tag, record),
                              events=len(stream.events), limit=o.buffer_limit_size)
                self._settle(stream, None)
                stream.events.clear()
            force = method in ("truncate", "new")
        else:
            self._hold(stream, tag, time, record, ticket, size=size)
        partial = record.get(o.partial_key) == o.partial_value
        if force or not partial:
            if stream.events:
                out.append(self._flush(stream, ticket))
        if force and o.buffer_overflow_method == "new":
            self._hold(stream, tag, time, record, ticket, size=size)
            if not partial:
                out.append(self._flush(stream, ticket))

    def _process_regexp(self, stream: _Stream, tag: str, time: int, record: Record,
                        ticket: delivery.Ticket | None, out: list[tuple[int, Record]]) -> None:
        value = record.get(self.key)
        text = value if type(value) is str else ruby_to_s(value)
        first = self.start_re is not None and self.start_re.search(text) is not None
        last = self.end_re is not None and self.end_re.search(text) is not None
        if first:
            if stream.events:
                out.append(self._flush(stream, ticket))
            self._hold(stream, tag, time, record, ticket)
            if last:
                out.append(self._flush(stream, ticket))
        elif last:
            self._hold(stream, tag, time, record, ticket)
            out.append(self._flush(stream, ticket))
        elif not stream.events:
            if self.start_re is None:
                self._hold(stream, tag, time, record, ticket)
            else:
                out.append((time, {}))          # not part of any group: passes as it is
        elif self.continuous_re is None or self.continuous_re.search(text) is not None:
            self._hold(stream, tag, time, record, ticket)
        else:
            flushed = self._flush(stream, ticket)
            out.append(flushed)
            # (the plugin gives this event the group's time too when use_first_timestamp is set)
            out.append((flushed[0] if self.options.use_first_timestamp else time, {}))

    # -- holding and flushing -----------------------------------------------------------------------
    def _hold(self, stream: _Stream, tag: str, time: int, record: Record, ticket: delivery.Ticket | None,
              size: int | None = None) -> None:
        stream.events.append((tag, time, record))
        if size is not None:
            stream.size += size
        if ticket is None:
            return
        if id(ticket) not in stream.tickets:
            # the emit stays unsettled until what this event becomes is stored downstream
            stream.tickets.add(id(ticket))
            stream.shares.append(ticket.join(hold=True))
            ticket.on_hurry(stream.hurry)
            if ticket.checkpoint is not None and ticket.checkpoint[0] not in stream.resume:
                stream.resume[ticket.checkpoint[0]] = ticket.offset_of(record)  # type: ignore[assignment]
        if ticket.checkpoint is not None:
            stream.lines.setdefault(ticket.checkpoint[0], []).append(ticket.line_offset(record))

    def _joined(self, stream: _Stream) -> tuple[str, int, Record]:
        """(tag, first time, the first record with the joined value)."""
        separator = self.options.separator
        events = stream.events
        if self.mode == "partial_metadata":
            ordinal = self.pm_ordinal
            events = sorted(events, key=lambda e: ruby_to_i(e[2].get(ordinal)))
        values = [r.get(self.key) for _tag, _time, r in events]
        joined = separator.join(v if type(v) is str else ruby_to_s(v) for v in values)
        tag, first_time, first = stream.events[0]
        self.counters["joined_events"] += 1
        self.counters["joined_lines"] += len(values)
        return tag, first_time, {**first, self.key: joined}

    def _flush(self, stream: _Stream, ticket: delivery.Ticket | None) -> tuple[int, Record]:
        _tag, first_time, record = self._joined(stream)
        self._settle(stream, ticket)
        stream.events = []
        stream.size = 0
        if self.mode == "partial_metadata":
            # every split message is a stream of its own (its partial_id): forget it once joined,
            # or the streams would pile up when no flush_interval timer sweeps them
            self.streams.pop(stream.identity, None)
        return first_time, record

    def _settle(self, stream: _Stream, ticket: delivery.Ticket | None) -> None:
        """The held events leave with the emit of `ticket` (None: handed over now): their own emits
        settle when that one does."""
        shares, stream.shares, stream.tickets = stream.shares, [], set()
        stream.resume = {}
        stream.lines = {}
        if not shares:
            return
        if ticket is None:
            for share in shares:
                share.mark_delivered()
            return
        # what the outputs do with this emit's events (not what filters hold of it) settles them
        stored, delivered = ticket.downstream()
        for share in shares:
            if share.ticket is ticket:
                share.mark_delivered()          # its own emit: that emit's outputs decide
            else:
                stored.add_done_callback(lambda _f, s=share: s.mark_stored())
                delivered.add_done_callback(lambda _f, s=share: s.mark_delivered())

    # -- timeouts -----------------------------------------------------------------------------------
    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(1.0, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        asyncio.get_running_loop().create_task(self._flush_expired())

    def _hurry(self, identity: str) -> None:
        """An input stopped reading until this stream's held events settle (4 MiB of its file wait
        behind them): flush the stream now, as its timeout would."""
        if self._running and identity in self.streams:
            self.log.info("concat: a stream held back its input's checkpoint too long; flushed early",
                          stream=identity)
            asyncio.get_running_loop().create_task(self._flush_expired(only=identity))

    async def _flush_expired(self, only: str | None = None) -> None:
        now = _time.monotonic()
        interval = self.options.flush_interval
        for identity, stream in list(self.streams.items()):
            if only is not None and identity != only:
                continue
            if only is None and interval > now - stream.seen:
                continue
            del self.streams[identity]
            if not stream.events:
                continue
            tag, first_time, record = self._joined(stream)
            message = f"Timeout flush: {identity}"
            self.counters["timeout_flushes"] += 1
            await self._timed_out(tag, first_time if self.options.use_first_timestamp else self.ctx.clock(),
                                  record, message, stream)
            self.log.info(message)
        if self.streams and self._running and self._timer is None:
            self._arm()

    async def _timed_out(self, tag: str, time: int, record: Record, message: str, stream: _Stream) -> None:
        """To timeout_label's router, else an error event (the plugin's handle_timeout_error)."""
        if self._timeout_emitter is None:
            if self.ctx.emitter is not None:
                self.ctx.emitter.emit_error_event(tag, time, record, TimeoutError(message))
            self._settle(stream, None)
            return
        ticket = delivery.Ticket()
        try:
            with delivery.tracking(ticket):
                await self._timeout_emitter.emit(tag, [(time, record)])
        except Exception as exc:
            self.log.error("concat: could not emit a timed-out event", tag=tag, error=f"{type(exc).__name__}: {exc}")
            self._settle(stream, None)
            return
        ticket.seal()
        self._settle(stream, ticket)


def _bytesize(record: Record) -> int:
    return sum(len(str(k).encode("utf-8", "surrogateescape")) for k in record) + \
        sum(len((v if type(v) is str else ruby_to_s(v)).encode("utf-8", "surrogateescape")) for v in record.values())

