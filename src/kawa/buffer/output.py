"""BufferedOutput: the base of every output that writes through Fluentd's `<buffer>` (and `<secondary>`).

Contract for subclasses (the CloudWatch Logs output, out_file, ...):

* `async write(chunk)` sends one chunk. Success = return. Failure = raise
  `kawa.errors.RetryableError` (transient; `slow_down=True` backs off the whole output, e.g.
  throttling) or `UnrecoverableError` (the chunk goes to `<secondary>` or the dead-letter dir
  `<root_dir|$FLUENT_BACKUP_DIR|/tmp/fluent>/backup/worker<N>/<plugin_id>/<chunk_id>.log`).
  Never sleep or retry inside `write`; the buffer owns the retry schedule (retry_* options).
  Any other exception counts as retryable (TypeError/ValueError/UnicodeError as unrecoverable).
* A chunk offers: `chunk.id` (32 hex chars), `chunk.metadata.tag` / `.timekey` (epoch seconds of
  the time range start) / `.variables` (record chunk key -> value; None without record keys),
  `chunk.events()` -> iterator of `(time_ns, record)` in arrival order, `chunk.record_count`,
  `chunk.bytesize`, `chunk.read()` -> bytes (msgpack stream of `[time_ns, record]`, or the text of
  `format_events` when the output defines it; then `events()` is not available and
  `chunk.formatted` is True). A chunk may be written several times (retries): write idempotently
  or accept duplicates (at-least-once).
* Optional `format_events(tag, events) -> bytes`: format at emit time (out_file does, to inject
  the tag); the chunk then holds that text.
* Class attributes: `default_chunk_keys` (e.g. ("time",)), `buffer_defaults` (option defaults
  such as {"timekey": 86400}); the default buffer @type is the Options `buffer` section's
  `default_type` (memory unless a subclass redeclares the section).
* `extract_placeholders(template, chunk)` fills `${tag}`, `${tag[N]}`, `${key}`, `${chunk_id}`, strftime;
  `validate_placeholders(name, template)` raises Fluentd's ConfigError texts at configure time.

Delivery acks (`<system> at_least_once_from_source`): `emit(tag, events, ack=DeliveryAck(cb))`
calls `cb` once the events are safe: for a persistent (file) buffer when the chunk data was
fsync'ed (durable before emit returns), for a memory buffer when every chunk holding them was
written by the output (or moved to the dead-letter directory). Inputs advance checkpoints in `cb`.

Delivery tickets (kawa.delivery): when the emit runs inside `delivery.tracking(ticket)`, the output
joins the ticket; its share is delivered when every chunk holding the events is committed (written
or dead-lettered), and stored when the events are fsync'd (file buffer) or delivered (memory
buffer: nothing in memory survives kill -9). A file buffer stores the ticket's checkpoint in the
chunk .meta with the same fsync.
"""

from __future__ import annotations

import asyncio
import copy
import os
from contextvars import ContextVar
from typing import Any, ClassVar, Iterator

from kawa import delivery
from kawa.buffer.buffer import Buffer, DeliveryAck
from kawa.buffer.chunk import Chunker
from kawa.buffer.flusher import Flusher
from kawa.buffer.options import BufferOptions, apply_defaults, resolve
from kawa.buffer.placeholders import Placeholders, validate
from kawa.config.element import Element
from kawa.config.schema import ENCLOSING_TYPE, Options, PluginSpec, section
from kawa.engine import registry
from kawa.errors import BufferOverflowError, ConfigError
from kawa.event import Event
from kawa.metrics import catalog as c
from kawa.plugins.base import Output, PluginContext

__all__ = ["BufferedOutput", "DeliveryAck"]

# The primary whose <secondary> is being built. Fluentd output.rb acts_as_secondary: the secondary
# takes the primary's chunk keys, timekey and zone (it writes the primary's chunks).
_BUILDING_SECONDARY_OF: ContextVar["BufferedOutput | None"] = ContextVar("kawa_secondary_of", default=None)


def _share_ack(inner: DeliveryAck | None, share: delivery.Share) -> DeliveryAck:
    """One chunk-level ack settling a delivery share (and the caller's own memory-buffer ack)."""
    def settled() -> None:
        share.mark_delivered()
        if inner is not None:
            inner.hold()
            inner.release()
    return DeliveryAck(settled, share.ticket)


class BufferedOptions(Options):
    """Sections every buffered output has."""

    buffer = section(plugin_kind="buffer", default_type="memory", doc="Buffer (chunk keys as the argument).")
    secondary = section(plugin_kind="output", default_type=ENCLOSING_TYPE,
                        doc="Output used when the primary cannot write a chunk (default @type: the primary's).")


class BufferedOutput(Output):
    Options: ClassVar[type[Options]] = BufferedOptions
    default_chunk_keys: ClassVar[tuple[str, ...]] = ()
    buffer_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        primary = _BUILDING_SECONDARY_OF.get()
        _BUILDING_SECONDARY_OF.set(None)          # only this output is that secondary, not its children
        self.as_secondary = primary is not None
        self.primary: BufferedOutput | None = primary     # the output whose chunks this secondary writes
        self.buffer_spec_given = getattr(options, "buffer", None) is not None
        self.buffer: Buffer = self._build_buffer(getattr(options, "buffer", None))
        opts: BufferOptions = self.buffer.options  # type: ignore[assignment]
        apply_defaults(opts, self.buffer_defaults)
        self.configure_buffer_options(opts)
        if primary is not None:
            # its own buffer is never started (it writes the primary's chunks); its keys are the primary's
            self.buffer_settings = primary.buffer_settings
        else:
            self.buffer_settings = resolve(opts, default_chunk_keys=self.default_chunk_keys,
                                           persistent=self.buffer.persistent, log=self.log)
        self.formatted = type(self).format_events is not BufferedOutput.format_events
        self.buffer.configure(self.buffer_settings, formatted=self.formatted, owner=self)
        s = self.buffer_settings
        self.chunk_keys = s.keys
        self.chunker = Chunker(s.keys, s.timekey, s.utc_offset)
        self.placeholders = Placeholders(s.keys, s.utc_offset, self.log)
        self.secondary: Any = self._build_secondary(getattr(options, "secondary", None))
        self.flusher = Flusher(self, self.buffer, s, clock=ctx.clock, secondary=self.secondary,
                               rand=ctx.extras.get("random", __import__("random").random),
                               backup_base=getattr(ctx.system, "root_dir", None))
        self.emit_count = 0
        self.early_flush_count = 0      # staged chunks queued early for an input waiting on them
        self.emit_records = 0
        self._stopping = False

    # -- building -------------------------------------------------------------------------------
    def _build_buffer(self, spec: PluginSpec | None) -> Buffer:
        if spec is None:
            sec = type(self.options)._sections.get("buffer")
            type_name = (sec.default_type if sec is not None else None) or "memory"
            cls = registry.lookup("buffer", type_name)
            if cls is None:
                raise ConfigError(f"Unknown buffer plugin '{type_name}'")
            spec = PluginSpec(cls, cls.Options.defaults(), Element("buffer", ""))
        if self.ctx.build is not None:
            return self.build_child(spec, "buffer")  # type: ignore[return-value]
        return spec.cls(spec.options, self.ctx.child(f"{self.plugin_id}.buffer"))  # type: ignore[no-any-return]

    def _build_secondary(self, spec: PluginSpec | None) -> Any:
        """Fluentd output.rb configure: the <secondary> checks and warnings; a secondary always acts
        as a buffered output (without a buffer of its own) of the primary's chunk keys."""
        if spec is None:
            return None
        for name in ("buffer", "secondary"):
            if any(child.name == name for child in spec.element.elements):
                raise ConfigError(f"<secondary> section cannot have <{name}> section")
        if self.buffer_settings.retry_forever:
            self.log.warn("<secondary> with 'retry_forever', only unrecoverable errors are moved to secondary")
        primary_type = _type_name(getattr(self.options, "_element", None)) or type(self).__name__
        secondary_type = _type_name(spec.element) or primary_type
        if not issubclass(spec.cls, BufferedOutput):
            sections = spec.cls.Options._sections
            if "store" in sections:    # copy: a multi output (Fluentd's MultiOutput has no acts_as_secondary)
                raise ConfigError(f"Failed to setup secondary plugin in '{primary_type}'. '{secondary_type}' "
                                  "plugin in not allowed due to non buffered output")
            buffer_section = sections.get("buffer")
            if buffer_section is None or buffer_section.plugin_kind != "buffer":
                raise ConfigError(f"secondary plugin '{_ruby_class(spec.cls)}' must support buffering, but doesn't.")
            # stdout, null: a <buffer> selects their buffered variant; a secondary is buffered without one
            cls = registry.lookup("buffer", buffer_section.default_type or "memory")
            assert cls is not None, "BUG: the default buffer plugin is missing"
            spec = PluginSpec(spec.cls, copy.copy(spec.options), spec.element)
            spec.options.buffer = PluginSpec(cls, cls.Options.defaults(), Element("buffer", ""))  # type: ignore[attr-defined]
        token = _BUILDING_SECONDARY_OF.set(self)
        try:
            secondary = self.build_child(spec, "secondary")
        finally:
            _BUILDING_SECONDARY_OF.reset(token)
        if not isinstance(secondary, BufferedOutput):
            raise ConfigError(f"secondary plugin '{_ruby_class(type(secondary))}' must support buffering, but doesn't.")
        if (secondary_type != "secondary_file" and type(secondary) is not type(self)
                and (self.formatted or secondary.formatted)):
            self.log.warn("Use different plugin for secondary. Check the plugin works with primary like secondary_file",
                          primary=_ruby_class(type(self)), secondary=_ruby_class(type(secondary)))
        return secondary

    def configure_buffer_options(self, opts: BufferOptions) -> None:
        """Hook: adjust buffer options before they are resolved (out_file sets the buffer path)."""

    # -- placeholders ---------------------------------------------------------------------------
    def extract_placeholders(self, template: str, chunk: Any) -> str:
        return self.placeholders.extract(template, chunk)

    def validate_placeholders(self, name: str, template: str) -> None:
        # as <secondary>, only time placeholders are checked (out_file.rb): the primary's chunks may
        # carry keys the secondary's path does not use
        validate(name, template, self.chunk_keys, self.buffer_settings.timekey,
                 check_tag=not self.as_secondary, check_keys=not self.as_secondary)

    # -- subclass API ---------------------------------------------------------------------------
    async def write(self, chunk: Any) -> None:
        raise NotImplementedError("BUG: buffered outputs implement write(chunk)")

    def format_events(self, tag: str, events: list[Event]) -> bytes:
        raise NotImplementedError("BUG: not called unless a subclass defines it")

    def chunk_events(self, chunk: Any) -> Iterator[Event] | None:
        """A chunk's events for a <secondary> that stores events (secondary_file), or None when only
        its bytes exist (an output's own text, as out_file's). Outputs whose chunks hold their own
        frames give the events back here (cloudwatch_logs: the records of its messages)."""
        if chunk.formatted:
            return None
        return chunk.events()  # type: ignore[no-any-return]

    # -- data path ------------------------------------------------------------------------------
    async def emit(self, tag: str, events: list[Event], ack: DeliveryAck | None = None) -> None:
        if not events:
            return
        self.emit_count += 1
        groups = self.chunker.split(tag, events)
        fmt = self.format_events if self.formatted else None
        enqueue = self.buffer_settings.flush_mode == "immediate"
        chunk_ack = None if self.buffer.persistent else ack
        ticket = delivery.current()             # an input tracks this emit (kawa.delivery)
        at_least_once = getattr(self.ctx.system, "at_least_once_from_source", False)
        share = ticket.join() if ticket is not None else None
        if share is not None:
            # delivered once every chunk holding the events is committed (written or dead-lettered);
            # held across the write so it settles even when no chunk took any event
            chunk_ack = _share_ack(chunk_ack, share)
            chunk_ack.hold()
            if not self.buffer.persistent or at_least_once:
                ticket.on_hurry(self._deliver_sooner)     # type: ignore[union-attr]
        checkpoint = ticket.checkpoint if ticket is not None and self.buffer.persistent else None
        while True:
            try:
                write = self.buffer.write(tag, groups, format_fn=fmt, enqueue=enqueue, ack=chunk_ack,
                                          checkpoint=checkpoint)
                break
            except BufferOverflowError as exc:
                await self._overflow(exc)
        if self.buffer.persistent and (at_least_once or ack is not None or share is not None
                                       or checkpoint is not None):  # a checkpoint stays pending until sync commits it
            await self.buffer.make_durable(write)
        self.emit_records += len(events)
        if self.buffer.persistent:
            if ack is not None:
                ack.hold()
                ack.release()
            if share is not None:
                share.mark_stored()             # fsync'd: survives kill -9 (and power loss)
        # a memory buffer is "stored" only once delivered: nothing in memory survives kill -9
        if chunk_ack is not None and share is not None:
            chunk_ack.release()
        if self.buffer.queue:
            self.flusher.wake()

    def _deliver_sooner(self) -> None:
        """An input stopped reading until events staged here settle (kawa.delivery hurry): queue the
        staged chunks now rather than at flush_interval / timekey, as SIGUSR1 would."""
        if not self.buffer.stage:
            return
        self.early_flush_count += 1
        self.log.debug("queueing staged chunks before their flush time: an input waits for them to be delivered",
                       chunks=len(self.buffer.stage))
        self.buffer.enqueue_all()
        self.flusher.wake()

    async def _overflow(self, exc: BufferOverflowError) -> None:
        action = self.buffer_settings.overflow_action
        cause = exc.__cause__
        if isinstance(cause, OSError):
            # Not the buffer's limits but its file system (disk full, EIO): Fluentd's "by buffer
            # overflow" would send whoever reads it at 3 a.m. to total_limit_size.
            pattern = getattr(self.buffer, "pattern", "")
            self.log.error("failed to write data into buffer: its file system refused the write; the events "
                           "were not buffered", **({"path": os.path.dirname(pattern)} if pattern else {}),
                           action=action, error=f"{type(cause).__name__}: {cause}")
        else:
            self.log.warn("failed to write data into buffer by buffer overflow", action=action)
        if action == "throw_exception" or self._stopping:
            raise exc
        if action == "block":
            self.log.debug("buffer.write is now blocking")
            waiter = asyncio.Event()
            previous = self.buffer.on_change

            def changed() -> None:
                previous()
                waiter.set()

            self.buffer.on_change = changed
            try:
                await asyncio.wait_for(waiter.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            finally:
                self.buffer.on_change = previous
            return
        oldest = self.buffer.drop_oldest()
        if oldest is None:
            self.log.warn("no queued chunks to be dropped for new event")
            raise exc
        self.log.warn("dropping oldest chunk to make space after buffer overflow", chunk_id=oldest.id)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.flusher.running:
            return
        await self.buffer.start()
        self.flusher.start()

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        budget = getattr(self.ctx.system, "shutdown_timeout", None) or 25
        await self.flusher.stop(float(budget))
        await self.buffer.stop()

    async def flush(self) -> None:
        await self.flusher.flush_all()

    def stats(self) -> dict[str, Any]:
        out = {**self.buffer.stats(), "emit_count": self.emit_count, "emit_records": self.emit_records,
               "write_count": self.flusher.write_count, "rollback_count": self.flusher.rollback_count,
               "retry_count": self.flusher.num_errors, "dead_letter_count": self.flusher.dead_lettered,
               "early_flush_count": self.early_flush_count}
        if self.flusher.lost_records:
            out[c.DROPPED_RECORDS] = {"chunk_file_gone": self.flusher.lost_records}
        return out


def _type_name(element: Element | None) -> str | None:
    if element is None:
        return None
    attr = element.attrs.get("@type") or element.attrs.get("type")
    return attr.value if attr is not None else None


def _ruby_class(cls: type) -> str:
    """The Fluentd class name of an output class, as Fluentd's messages print it (Fluent::Plugin::FileOutput)."""
    name = cls.__name__
    return "Fluent::Plugin::" + (name[len("Buffered"):] if name.startswith("Buffered") else name)
