"""The generic buffer: staged chunks per Metadata, a queue of chunks to flush, limits and overflow.

Backends (kawa.plugins.buffers.memory / file) subclass Buffer and only create and resume chunks.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, ClassVar, Iterable, Iterator

import msgpack

from kawa.buffer.chunk import Chunk, HeldFrames, Metadata, new_chunk_id
from kawa.buffer.compression import compress
from kawa.buffer.options import BufferOptions, BufferSettings
from kawa.errors import BufferOverflowError
from kawa.event import Event
from kawa.plugins.base import Plugin

FormatFn = Callable[[str, list[Event]], bytes]


def _default(value: Any) -> Any:
    # Values msgpack cannot carry (datetime, set, ...) are kept as their text, never lost silently.
    return str(value)


class DeliveryAck:
    """Settled once every chunk holding a batch is committed (or durably stored, see BufferedOutput.emit).

    `callback()` runs once, in the event loop. Used by inputs for delivery-gated checkpoints.
    """

    __slots__ = ("pending", "callback", "settled", "ticket")

    def __init__(self, callback: Callable[[], None], ticket: Any = None) -> None:
        self.pending = 0
        self.callback = callback
        self.settled = False
        self.ticket = ticket          # the kawa.delivery Ticket whose share this ack settles, if any

    def hold(self) -> None:
        self.pending += 1

    def unhold(self) -> None:
        """Return a hold whose chunk went away unwritten (a failed write undone): nothing settles."""
        self.pending -= 1

    def release(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and not self.settled:
            self.settled = True
            self.callback()


class BufferWrite:
    """One Buffer.write call: how its pieces go in, what they touched, and what `make_durable` needs
    to take the write back when its fsync fails (each chunk's state before and size right after)."""

    __slots__ = ("enqueue", "ack", "checkpoint", "touched", "marks", "sizes")

    def __init__(self, enqueue: bool, ack: DeliveryAck | None, checkpoint: tuple[str, int] | None) -> None:
        self.enqueue = enqueue
        self.ack = ack
        self.checkpoint = checkpoint
        self.touched: list[Chunk] = []                  # in write order
        self.marks: dict[Chunk, Any] = {}               # chunk -> its state before (None: created here)
        self.sizes: dict[Chunk, int] = {}               # chunk -> its size when the write returned (make_durable)


class Buffer(Plugin):
    """Stage (one open chunk per Metadata) -> queue -> dequeued (being written) -> purged."""

    Options: ClassVar[type[BufferOptions]] = BufferOptions
    persistent: ClassVar[bool] = False
    # Chunks may keep an output's HeldFrames as objects (uncompressed memory chunks); others store
    # their packed bytes.
    holds_objects: ClassVar[bool] = False

    def __init__(self, options: BufferOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.settings: BufferSettings | None = None
        self.formatted = False
        self.compress = False             # chunks store gzip members (<buffer> compress gzip)
        self.stage: dict[Metadata, Chunk] = {}
        self.queue: deque[Chunk] = deque()
        self.dequeued: dict[str, Chunk] = {}
        self.stage_size = 0
        self.queue_size = 0
        self.dropped_records = 0          # counted, logged: records too large for any chunk
        self._pack = msgpack.Packer(default=_default, unicode_errors="surrogateescape").pack
        self.on_change: Callable[[], None] = lambda: None   # the flusher wakes on new queued chunks / space
        self.on_stage: Callable[[], None] = lambda: None    # a new chunk is staged (the enqueue timer wakes)

    # -- wiring -----------------------------------------------------------------------------------
    def configure(self, settings: BufferSettings, *, formatted: bool, owner: Any = None) -> None:
        """Called by the owning output once its defaults are applied."""
        self.settings = settings
        self.formatted = formatted
        self.chunk_limit_size = settings.chunk_limit_size
        self.chunk_limit_records = settings.chunk_limit_records
        self.full_threshold = settings.chunk_full_threshold
        self.compress = settings.compress == "gzip"

    async def start(self) -> None:
        staged, queued = self.resume()
        for chunk in staged:
            self.stage[chunk.metadata] = chunk
            self.stage_size += chunk.bytesize
        for chunk in sorted(queued, key=lambda c: c.modified_at):
            self.queue.append(chunk)
            self.queue_size += chunk.bytesize

    async def sync(self, chunks: list[Chunk], checkpoint: tuple[str, int] | None = None) -> None:
        """Make the data of `chunks` durable (persistent backends fsync; memory: nothing to do).

        `checkpoint` (key, offset) of the input that emitted the data: persistent backends commit
        it with the chunks (see kawa.delivery) so a restart does not read those events again; until
        then the data appended under it is pending, and dropped at resume (the input reads it again)."""

    async def stop(self) -> None:
        for chunk in self.chunks():
            chunk.close()

    # -- backend hooks ----------------------------------------------------------------------------
    def generate_chunk(self, unique_id: bytes, metadata: Metadata) -> Chunk:
        raise NotImplementedError

    def resume(self) -> tuple[list[Chunk], list[Chunk]]:
        return [], []

    def new_queued_chunk(self, metadata: Metadata, data: bytes, records: int,
                         checkpoint: tuple[str, int] | None = None) -> Chunk:
        """A new chunk holding `data`, already queued (backends may write it in fewer steps and
        store the emitting input's `checkpoint` with it; see `sync`)."""
        chunk = self.generate_chunk(new_chunk_id(self.ctx.clock), metadata)
        try:
            chunk.append(data, records, self.ctx.clock(), checkpoint)
        except OSError:
            chunk.purge()
            raise
        chunk.enqueued()
        return chunk

    # -- state ------------------------------------------------------------------------------------
    def chunks(self) -> Iterator[Chunk]:
        yield from self.stage.values()
        yield from self.queue
        yield from self.dequeued.values()

    def storable(self) -> bool:
        assert self.settings is not None
        return self.settings.total_limit_size > self.stage_size + self.queue_size

    def queued_records(self) -> int:
        return sum(c.record_count for c in self.queue)

    def _full(self, chunk: Chunk) -> bool:
        return (chunk.bytesize >= self.chunk_limit_size * self.full_threshold
                or (self.chunk_limit_records is not None
                    and chunk.record_count >= self.chunk_limit_records * self.full_threshold))

    def _room(self, chunk: Chunk) -> tuple[int, int | None]:
        records = None if self.chunk_limit_records is None else self.chunk_limit_records - chunk.record_count
        return self.chunk_limit_size - chunk.bytesize, records

    # -- writing ----------------------------------------------------------------------------------
    def write(self, tag: str, groups: dict[Metadata, list[Event]], *, format_fn: FormatFn | None,
              enqueue: bool, ack: DeliveryAck | None = None,
              checkpoint: tuple[str, int] | None = None) -> BufferWrite:
        """Append every group to its staged chunk, splitting at the chunk limits; the returned write
        lists the chunks it `touched` (for `make_durable`).
        `checkpoint`: the emitting input's (kawa.delivery); persistent chunks keep it pending with the
        data until `sync` commits it.

        Raises BufferOverflowError before writing anything when the buffer is full; an OSError of
        the backend (ENOSPC) leaves already-buffered data intact, undoes what this write appended (the
        input retries the whole emit) and is re-raised as overflow.
        """
        if not self.storable():
            raise BufferOverflowError("buffer space has too many data")
        w = BufferWrite(enqueue, ack, checkpoint)
        try:
            for meta, events in groups.items():
                for data, count in self._serialize(tag, events, format_fn):
                    self._write_piece(meta, data, count, w)
        except BufferOverflowError:
            # A disk-full (or EIO) part-way through an emit that spans chunks (timekeys, record
            # keys): the input retries the whole emit, so what this write already appended must go,
            # or each retry during the outage would buffer the first part again.
            self._roll_back(w.marks, ack)
            raise
        return w

    async def make_durable(self, write: BufferWrite) -> None:
        """`sync` of the chunks `write` touched, committing its checkpoint. When the sync fails (fsync
        EIO) the write is taken back before the error reaches the emitter, which offers the events
        again: kept, the retry would buffer them twice, and the data may not be on disk (after a
        failed fsync, the next one may succeed without the lost pages). Raises BufferOverflowError.
        Await it right after `write` returns (no other task may append in between)."""
        write.sizes = {chunk: chunk.bytesize for chunk in write.marks}
        try:
            await self.sync(write.touched, checkpoint=write.checkpoint)
        except OSError as exc:
            self._undo(write)       # in the loop step where sync raised: before a flush can take the chunks
            self.log.error("could not make the buffered events durable (fsync); the write is undone "
                           "and the emitter retries it", error=f"{type(exc).__name__}: {exc}")
            raise BufferOverflowError(f"cannot sync buffer chunk: {exc}") from exc

    def _undo(self, write: BufferWrite) -> bool:
        """Take back a write that returned. False when some chunk took other appends since (its part
        stays: read twice, never lost)."""
        whole = True
        marks = {}
        for chunk, mark in write.marks.items():
            if chunk.state == "purged" or chunk.bytesize != write.sizes[chunk]:
                whole = False
            else:
                marks[chunk] = mark
        if not whole:
            self.log.warn("a buffer chunk took other events after a write whose fsync failed; that write's "
                          "events stay in it and may be buffered twice")
        return self._roll_back(marks, write.ack) and whole

    def _write_piece(self, meta: Metadata, data: bytes, count: int, w: BufferWrite) -> None:
        if w.enqueue and meta not in self.stage:
            # flush_mode immediate: the chunk is queued as soon as it holds this data
            try:
                chunk = self.new_queued_chunk(meta, data, count, w.checkpoint)
            except OSError as exc:
                raise BufferOverflowError(f"cannot write buffer chunk: {exc}") from exc
            w.marks[chunk] = None                      # new in this write: removed whole
            self.queue.append(chunk)
            self.queue_size += chunk.bytesize
            self._touch(chunk, w)
            self.on_change()
            return
        chunk = self._staged_chunk(meta)
        room_bytes, room_records = self._room(chunk)
        if chunk.record_count and (len(data) > room_bytes or (room_records is not None and count > room_records)):
            self.enqueue_chunk(meta)
            chunk = self._staged_chunk(meta)
        if chunk not in w.marks:
            w.marks[chunk] = chunk.mark()
        try:
            before = chunk.bytesize
            chunk.append(data, count, self.ctx.clock(), w.checkpoint)
        except OSError as exc:
            raise BufferOverflowError(f"cannot write buffer chunk: {exc}") from exc
        self.stage_size += chunk.bytesize - before
        if not w.touched or w.touched[-1] is not chunk:
            self._touch(chunk, w)
        if w.enqueue or self._full(chunk):
            self.enqueue_chunk(meta)

    @staticmethod
    def _touch(chunk: Chunk, w: BufferWrite) -> None:
        w.touched.append(chunk)
        if w.ack is not None:
            w.ack.hold()
            chunk.acks.append(w.ack)

    def _roll_back(self, marks: dict[Chunk, Any], ack: DeliveryAck | None) -> bool:
        """Undo a failed write: each chunk it touched back to its state before (new queued chunks
        removed). A chunk that cannot be cut back keeps the data: read twice, never lost (False)."""
        whole = True
        for chunk, mark in reversed(list(marks.items())):
            if ack is not None and ack in chunk.acks:
                chunk.acks.remove(ack)
                ack.unhold()
            staged = chunk.state == "staged"
            size = chunk.bytesize
            try:
                if mark is None:          # new in this write: it goes whole
                    chunk.purge()
                else:
                    chunk.rollback(mark)
            except OSError as exc:
                self.log.warn("could not remove the part of a failed buffer write; those events may "
                              "be buffered twice", chunk_id=chunk.id, error=str(exc))
                whole = False
                continue
            removed = size if mark is None else size - chunk.bytesize
            if staged:
                self.stage_size -= removed
            else:
                self.queue_size -= removed
            if mark is None or chunk.record_count == 0:
                if staged:
                    if self.stage.get(chunk.metadata) is chunk:
                        del self.stage[chunk.metadata]
                else:
                    self.queue.remove(chunk)
                if chunk.state != "purged":
                    try:
                        chunk.purge()
                    except OSError:
                        pass              # an empty chunk left on disk is dropped at resume
        return whole

    def _serialize(self, tag: str, events: list[Event], format_fn: FormatFn | None) -> list[tuple[bytes, int]]:
        """Stored bytes of the events (gzip members with compress gzip), cut into pieces that each
        fit in one chunk. As Fluentd's, the size limits apply to the stored (compressed) bytes."""
        limit = self.chunk_limit_size
        rec_limit = self.chunk_limit_records
        if format_fn is None:
            pack = self._pack
            parts = [pack(e) for e in events]
            if sum(map(len, parts)) <= limit and (rec_limit is None or len(parts) <= rec_limit):
                groups = [(0, parts)]
            else:
                groups = self._cut(parts)
            if not self.compress:
                return [(b"".join(group), len(group)) for _, group in groups]
            return [piece for first, group in groups for piece in self._encode_parts(group, first)]
        data = format_fn(tag, events)
        if data.__class__ is HeldFrames and (self.compress or not self.holds_objects):
            data = data.packed()  # type: ignore[attr-defined]
        stored = self.encode(data, len(events)) if self.compress else data
        if len(stored) <= limit and (rec_limit is None or len(events) <= rec_limit):
            return [(stored, len(events))]
        if len(events) == 1:
            self._too_large(len(stored))
            return []
        half = len(events) // 2
        return self._serialize(tag, events[:half], format_fn) + self._serialize(tag, events[half:], format_fn)

    def _cut(self, parts: list[bytes]) -> list[tuple[int, list[bytes]]]:
        """Groups of consecutive parts (with the index of their first) within the chunk limits."""
        out: list[tuple[int, list[bytes]]] = []
        current: list[bytes] = []
        first = size = 0
        for nth, part in enumerate(parts):
            if len(part) > self.chunk_limit_size and not self.compress:
                self._too_large(len(part), nth)
                continue
            full_records = self.chunk_limit_records is not None and len(current) >= self.chunk_limit_records
            if current and (size + len(part) > self.chunk_limit_size or full_records):
                out.append((first, current))
                current, size = [], 0
            if not current:
                first = nth
            current.append(part)
            size += len(part)
        if current:
            out.append((first, current))
        return out

    def _encode_parts(self, parts: list[bytes], first: int) -> list[tuple[bytes, int]]:
        """One gzip member for the parts, halved until it fits chunk_limit_size compressed (a record
        bigger than the limit uncompressed may fit compressed, as in Fluentd)."""
        stored = self.encode(b"".join(parts), len(parts))
        if len(stored) <= self.chunk_limit_size:
            return [(stored, len(parts))]
        if len(parts) == 1:
            self._too_large(len(stored), first)
            return []
        half = len(parts) // 2
        return self._encode_parts(parts[:half], first) + self._encode_parts(parts[half:], first + half)

    def encode(self, data: bytes, records: int) -> bytes:
        """What a compressed chunk stores for `records` serialized as `data`: one gzip member."""
        return compress(self.frame(data, records))

    def frame(self, data: bytes, records: int) -> bytes:
        """Hook: how a backend frames appended data inside its gzip members (file: formatted batches)."""
        return data

    def _too_large(self, size: int, nth: int = 0) -> None:
        # Fluentd buffer.rb BufferChunkOverflowError texts (write_step_by_step: a compressed record is
        # only known too large once appended); the record is dropped, counted, logged.
        self.dropped_records += 1
        what = "concatenated/appended a" if self.compress else "a"
        self.log.limited("buffer.too_large", "warn",
                         f"{what} {size} bytes record (nth: {nth}) is larger than buffer chunk limit size "
                         f"({self.chunk_limit_size})")

    def _staged_chunk(self, meta: Metadata) -> Chunk:
        chunk = self.stage.get(meta)
        if chunk is None:
            chunk = self.generate_chunk(new_chunk_id(self.ctx.clock), meta)
            self.stage[meta] = chunk
            self.on_stage()
        return chunk

    # -- queue ------------------------------------------------------------------------------------
    def enqueue_chunk(self, meta: Metadata) -> None:
        chunk = self.stage.pop(meta, None)
        if chunk is None:
            return
        self.stage_size -= chunk.bytesize
        if chunk.record_count == 0:
            chunk.purge()
            return
        chunk.enqueued()
        self.queue.append(chunk)
        self.queue_size += chunk.bytesize
        self.on_change()

    def enqueue_all(self, predicate: Callable[[Metadata, Chunk], bool] | None = None, *, force: bool = False) -> None:
        """Queue staged chunks (all, or those `predicate` selects); timers stop at queued_chunks_limit_size."""
        assert self.settings is not None
        for meta, chunk in list(self.stage.items()):
            if not force and len(self.queue) >= self.settings.queued_chunks_limit_size:
                return
            if predicate is None or predicate(meta, chunk):
                self.enqueue_chunk(meta)

    def dequeue(self, ready: Callable[[Chunk], bool] = lambda c: True) -> Chunk | None:
        for chunk in self.queue:
            if ready(chunk):
                self.queue.remove(chunk)
                self.queue_size -= chunk.bytesize
                self.dequeued[chunk.id] = chunk
                return chunk
        return None

    def takeback(self, chunk: Chunk) -> None:
        """A write failed: the chunk goes back to the queue, at its old place (the front)."""
        if self.dequeued.pop(chunk.id, None) is not None:
            self.queue.appendleft(chunk)
            self.queue_size += chunk.bytesize

    def purge(self, chunk: Chunk) -> None:
        """The chunk was written (or moved to the dead-letter directory): delete it, settle acks."""
        if self.dequeued.pop(chunk.id, None) is None:
            try:
                self.queue.remove(chunk)
                self.queue_size -= chunk.bytesize
            except ValueError:
                pass
        chunk.purge()
        for ack in chunk.acks:
            ack.release()
        chunk.acks.clear()
        self.on_change()

    def drop_oldest(self) -> Chunk | None:
        """overflow_action drop_oldest_chunk: remove the oldest queued chunk."""
        if not self.queue:
            return None
        chunk = self.queue.popleft()
        self.queue_size -= chunk.bytesize
        chunk.purge()
        for ack in chunk.acks:
            ack.release()
        return chunk

    def iter_queued(self) -> Iterable[Chunk]:
        return list(self.queue)

    def stats(self) -> dict[str, Any]:
        return {"stage_length": len(self.stage), "stage_byte_size": self.stage_size,
                "queue_length": len(self.queue), "queue_byte_size": self.queue_size,
                "buffer_dropped_records": self.dropped_records}
