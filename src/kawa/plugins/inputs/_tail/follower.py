"""One tailed file: its open descriptor, position entry, line reader and the batches not yet safe.

Each emit runs under a kawa.delivery Ticket; the position moves only when the tickets before it
settled (stored, or delivered with at_least_once_from_source), in read order. A refused batch is
kept (already parsed) and offered again later, so back-pressure never loses or duplicates a line.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

from kawa import delivery
from kawa.errors import BufferOverflowError
from kawa.event import StrValueEvents
from kawa.plugins.inputs._tail.held_lines import Replay, checksum, every_line_held
from kawa.plugins.inputs._tail.position_file import MemoryPositionEntry
from kawa.plugins.inputs._tail.reader import LineReader, ReadResult, line_starts

if TYPE_CHECKING:
    from kawa.plugins.inputs.tail import TailInput

# After a refused emit, offer the batch again after this long (Fluentd retries on its 1 s timer).
RETRY_INTERVAL = 1.0
# Bytes of one file read and emitted but not yet safe, at most; beyond it the file is not read until
# the oldest emits settle (back-pressure from a slow or unreachable output, bounding what memory
# buffers hold: per file, so a node's many files multiply it). Counted in bytes, not emits: many tiny
# emits (one line per write) must not stall the file. Stopping here hurries the outputs holding the
# lines (kawa.delivery.hurry), so the bound may sit below a memory chunk_limit_size (8 MiB): chunks
# are then queued by the hurry, not by size. 4 MiB kept the CloudWatch burst's peak RSS at 64 MiB
# (16 MiB: 90 MiB, 8 MiB: 75 MiB) at the same CPU (one 1M-line burst into bench/_fast_cwl.py each).
MAX_UNSETTLED_BYTES = 4 * 1024 * 1024
MAX_UNSETTLED = 100_000        # emits; a safety bound on the queue itself
# Group commit: when an emit is durable by the time it returns (a file buffer: a chunk's .meta and
# data files created, fsync'd, later written out and unlinked, ~2.5 ms of CPU and ~4 ms of wall a
# chunk), a file with a backlog goes out in emits of up to this many reads (read_lines_limit lines
# each) and this many bytes. 1M-line burst, file output (bench/ab.py): 4 reads / 1 MiB against one
# read an emit: x0.92 CPU and x0.89 wall, peak RSS 27.9 -> 33.6 MiB (one emit's events are held
# together); 8 reads / 2 MiB against 4 / 1 MiB: x0.96 CPU, x0.94 wall, peak RSS 32.8 -> 37.4-40.2 MiB.
# The burst's peak stays far below the CloudWatch burst's (a memory buffer: unaffected). Memory
# buffers (stored only once delivered) keep one read an emit.
GROUP_COMMIT_READS = 8
GROUP_COMMIT_BYTES = 2 * 1024 * 1024


@dataclass
class FileCounters:
    lines: int = 0
    emitted: int = 0
    unmatched: int = 0
    invalid: int = 0
    skipped_long: int = 0
    refused: int = 0
    opened: int = 0
    closed: int = 0
    rotated: int = 0
    throttled: int = 0


@dataclass
class Pending:
    events: list[Any]
    end_pos: int


@dataclass
class Follower:
    path: str
    dev: int
    ino: int
    pe: MemoryPositionEntry
    tag: str
    fd: int | None = None
    reader: LineReader | None = None
    pending: Pending | None = None
    draining: bool = False          # rotated away: read to the end, then release
    rotated_at: float = 0.0
    last_size: int = 0
    last_active: float = 0.0
    retry_at: float = 0.0
    partial_since: float | None = None
    open_path: str | None = None    # where the file is now, when not at `path` (resumed rotated file)
    linked: bool = False            # `path` is a symlink: inotify on its folder misses the target's writes
    lines_fed: int = 0              # lines given to a stateful parser so far
    held: dict[int, int] = field(default_factory=dict)   # line number -> offset of held groups
    held_since: float | None = None  # last read while a stateful parser held lines of this file
    window_start: float = 0.0
    window_bytes: int = 0
    counters: FileCounters = field(default_factory=FileCounters)
    # (future that settles the emit, or None: safe already; the position to save then), read order
    # (gate, end position, its delivery ticket) of emits not yet reflected in the pos_file, in order
    unsettled: deque[tuple["asyncio.Future[None] | None", int, "delivery.Ticket | None"]] = field(
        default_factory=deque)
    blocked: bool = False           # not read: too much read and emitted is not yet safe
    # where the next emit's events begin: the safe position of the last emit (None: the position
    # entry's, nothing emitted since it was set)
    next_start: int | None = None
    lines_in_order: bool = False    # the last read's lines became one event each, in order
    # after a restart at a position a filter held lines from: which lines to read again (held_lines)
    replay: Replay | None = None
    group_commit: bool = False      # the last emit was stored when it returned: see GROUP_COMMIT_READS

    # -- descriptor ---------------------------------------------------------------------------

    def open(self, host: "TailInput") -> bool:
        """(Re)open the file; False when it is gone or is now another file (caller handles it)."""
        if self.fd is not None:
            return True
        try:
            fd = os.open(self.open_path or self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                host.log.warn(str(exc))
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (self.dev, self.ino):
            os.close(fd)
            return False
        self.fd = fd
        host.opened_files += 1
        self.counters.opened += 1
        if self.reader is None:
            self.reader = LineReader(fd, self.pe.pos, host.options.max_line_size)
            self.replay = host.replay_for(self)
        else:
            self.reader.fd = fd
        return True

    def close(self, host: "TailInput") -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            host.closed_files += 1
            self.counters.closed += 1

    @property
    def key(self) -> tuple[int, int]:
        """The stream name given to stateful parsers: the file itself, whatever its name."""
        return self.dev, self.ino

    @property
    def idle(self) -> bool:
        r = self.reader
        return self.pending is None and (r is None or (not r.partial and not r.skipping))

    # -- reading ------------------------------------------------------------------------------

    async def pump(self, host: "TailInput", now: float, max_batches: int = 8, *, statted: bool = False) -> bool:
        """Offer a refused batch again, then read up to `max_batches` batches and emit them.

        Returns True when there is more to read right away (the caller comes back soon).
        `statted`: the caller just refreshed `last_size` (a stat), so an unchanged size means nothing
        to read: the idle 1 s watch timer then costs that stat alone, not a read as well.
        """
        if self.pending is not None:
            if now < self.retry_at or not await self._emit(host, self.pending.events, now, self.pending.end_pos):
                return False
            self.pending = None
        if statted and self.reader is not None and not self.draining and self.last_size == self.reader.read_offset:
            return False
        if self.fd is None:
            # Closed by the descriptor budget: reopen only when the file grew (the caller's stat
            # refreshed last_size), so idle files cost one stat, not an open/read/close.
            if self.reader is not None and self.last_size <= self.reader.read_offset and not self.draining:
                return False
            if not self.open(host):
                return False
        reader = self.reader
        assert reader is not None
        reads = 0
        while reads < max_batches:
            lines_before = self.counters.lines
            batch = self._read_batch(host, reader, now)
            reads += 1
            if batch is None:
                return False
            # blocks: the reads of this emit while each line is one event (concat finds a held
            # line's offset in them)
            events, result, blocks = batch
            size = len(result.data)
            if self.group_commit:
                # Group commit: while the file has a backlog, several reads go out as one emit, so
                # one buffer chunk (its files, fsyncs, write-out and unlinks: ~2.5 ms of CPU each)
                # carries up to GROUP_COMMIT_READS reads instead of one.
                per_read = host.options.read_lines_limit
                while not result.eof and size < GROUP_COMMIT_BYTES and reads < max_batches and \
                        self.counters.lines - lines_before <= (GROUP_COMMIT_READS - 1) * per_read:
                    more = self._read_batch(host, reader, now)
                    reads += 1
                    if more is None:
                        break
                    events = _joined(events, more[0])
                    result = more[1]
                    size += len(result.data)
                    blocks = blocks + more[2] if blocks is not None and more[2] is not None else None
            if events:
                if not await self._emit(host, events, now, result.end_pos, blocks):
                    self.pending = Pending(events, result.end_pos)
                    return False
                host.emit_size += size
            else:
                self._commit(host, result.end_pos, None)
            if result.eof:
                return False
        return True

    def _read_batch(self, host: "TailInput", reader: LineReader,
                    now: float) -> "tuple[list[Any], ReadResult, list[tuple[int, bytes]] | None] | None":
        """Read and parse the next batch (about read_lines_limit lines): its events, the read, and
        its lines as runs of (offset, bytes) when each line became one event, in order (else None).
        None when there is nothing to read now (no complete line, back-pressure,
        read_bytes_limit_per_second)."""
        if self._over_unsettled():
            if not self.blocked:
                # outputs holding these lines until a timer (memory buffer) deliver them now
                delivery.hurry(ticket for _gate, _pos, ticket in self.unsettled)
            self.blocked = True          # _settled() wakes the scheduler for this file
            return None
        limit = self._bytes_allowed(host, now)
        if limit == 0:
            host.throttled += 1
            self.counters.throttled += 1
            return None
        before = reader.read_offset
        result = reader.read(host.options.read_lines_limit, limit)
        self.window_bytes += reader.read_offset - before
        self._note_partial(reader, now)
        if result is None:
            return None
        self.last_active = now
        self.counters.skipped_long += result.skipped_long
        for _i in range(result.skipped_long):
            host.log.warn(f"received line length is longer than {host.options.max_line_size}")
        data = result.data
        runs: list[tuple[int, bytes]] | None = [(result.start_pos, data)]
        if self.replay is not None:
            data, runs = self._replayed(host, result)
        if not data:        # every line skipped (stored before a restart, or over max_line_size)
            return [], result, []
        events = host.to_events(self, data, result.start_pos, now)
        return events, result, runs if self.lines_in_order and not result.skipped_long else None

    def _replayed(self, host: "TailInput", result: ReadResult) -> tuple[bytes, list[tuple[int, bytes]]]:
        """The part of a read after a restart that is read again (held_lines): up to the replay's
        end, only the lines a filter held; the others were stored before the restart."""
        replay = self.replay
        assert replay is not None
        if result.start_pos >= replay.end or result.skipped_long:
            # past it, or lines cut out of the read (max_line_size): read as it is (at worst twice)
            self.replay = None
            return result.data, [(result.start_pos, result.data)]
        data, runs = replay.keep(result.data, result.start_pos)
        if result.end_pos >= replay.end:
            self.replay = None
        skipped = len(result.data) - len(data)
        if skipped:
            host.log.debug("skipped lines stored before the restart", path=self.path, bytes=skipped)
        return data, runs

    def _note_partial(self, reader: LineReader, now: float) -> None:
        if not reader.partial:
            self.partial_since = None
        elif self.partial_since is None:
            self.partial_since = now

    def _bytes_allowed(self, host: "TailInput", now: float) -> int | None:
        limit = host.options.read_bytes_limit_per_second
        if limit <= 0:
            return None
        if now - self.window_start >= 1.0:
            self.window_start, self.window_bytes = now, 0
        return max(0, limit - self.window_bytes)

    async def flush_partial(self, host: "TailInput", now: float) -> None:
        """multiline_flush_interval passed with an unterminated line held: emit it as a line."""
        if self.pending is not None or self.reader is None:
            return
        taken = self.reader.take_partial()
        self.partial_since = None
        if taken is None:
            return
        data, end = taken
        events = host.to_events(self, data + b"\n", end - len(data), now)
        if not events:
            self._commit(host, end, None)
        elif not await self._emit(host, events, now, end):
            self.pending = Pending(events, end)

    async def flush_held(self, host: "TailInput", now: float) -> bool:
        """Emit what a stateful parser holds for this file (flush interval, release, shutdown).

        False when it could not be emitted now (kept as the pending batch, retried later)."""
        if self.pending is not None:
            return False
        events = host.held_events(self)
        end = self.reader.offset if self.reader is not None else self.pe.pos
        if not events:
            self._commit(host, end, None)
        elif not await self._emit(host, events, now, end):
            self.pending = Pending(events, end)
            return False
        return True

    async def _emit(self, host: "TailInput", events: list[Any], now: float, end_pos: int,
                    blocks: list[tuple[int, bytes]] | None = None) -> bool:
        """Emit under a delivery ticket; on success the position `end_pos` waits for it to settle.
        `blocks`: (file offset, bytes) of the reads whose lines are `events`, one event a line."""
        safe = self._safe_pos(end_pos)
        key = host.checkpoint_key(self.ino)
        start = self.next_start if self.next_start is not None else self.pe.pos
        ticket = delivery.Ticket((key, safe) if key is not None else None, start=start)
        if blocks is not None and key is not None:
            ticket.locate = LineStarts(events, blocks)
        try:
            with delivery.tracking(ticket):
                await host.emitter.emit(self.tag, events)
        except BufferOverflowError:
            self.counters.refused += 1
            self.retry_at = now + RETRY_INTERVAL
            return False
        except Exception as exc:   # any refusal: keep the lines, never move past what was accepted
            self.counters.refused += 1
            self.retry_at = now + RETRY_INTERVAL
            host.log.limited("tail emit failed", "warn", "emit failed; the lines are kept and retried",
                             path=self.path, error=f"{type(exc).__name__}: {exc}")
            return False
        finally:
            ticket.locate = None        # only while the emit runs: it keeps the reads' bytes
        self.counters.emitted += len(events)
        host.emit_records += len(events)
        ticket.seal()
        self.group_commit = ticket.stored.done()
        if ticket.holds and ticket.checkpoint is not None:
            # a filter keeps some lines for a later emit: once the outputs stored the rest, the
            # position may move up to the first held line (the ticket's lowered checkpoint)
            stored, delivered = ticket.downstream()
            part = delivered if host.settle_on_delivered else stored
            part.add_done_callback(lambda _done: self._settled(host))     # (soon, when done already)
        self._commit(host, safe, ticket.delivered if host.settle_on_delivered else ticket.stored, ticket)
        return True

    def _safe_pos(self, end_pos: int) -> int:
        # Never past a line a stateful parser still holds: after a crash it must be read again.
        # Computed when the batch is emitted (the parser's state then), not when it settles.
        if self.held:
            end_pos = min(end_pos, min(self.held.values()))
        return end_pos

    def _commit(self, host: "TailInput", end_pos: int, gate: "asyncio.Future[None] | None",
                ticket: "delivery.Ticket | None" = None) -> None:
        """Save `end_pos` once `gate` and every earlier emit of this file settled."""
        if gate is None:
            end_pos = self._safe_pos(end_pos)
        self.next_start = end_pos
        if not self.unsettled and (gate is None or gate.done()):
            self.pe.update_pos(end_pos)
            if ticket is not None:
                ticket.commit()
            return
        self.unsettled.append((gate, end_pos, ticket))
        if gate is not None and not gate.done():
            gate.add_done_callback(lambda _done: self._settled(host))

    def _over_unsettled(self) -> bool:
        queue = self.unsettled
        return bool(queue) and (len(queue) >= MAX_UNSETTLED
                                or queue[-1][1] - self.pe.pos >= MAX_UNSETTLED_BYTES)

    def _settled(self, host: "TailInput") -> None:
        """A ticket settled: save the position after the oldest run of settled emits."""
        pos = None
        queue = self.unsettled
        saved: list[delivery.Ticket] = []
        while queue and (queue[0][0] is None or queue[0][0].done()):
            _gate, pos, ticket = queue.popleft()
            if ticket is not None:
                saved.append(ticket)
        partly = self._partly_safe(host)
        if partly is not None:
            held_from, end, held_lines = partly
            base = self.pe.pos if pos is None else pos
            if held_from >= base and held_from < end and held_lines is not None and self.fd is not None \
                    and not every_line_held(self.fd, held_from, end, held_lines):
                # what a restart from there reads again (also while the first held line stays the
                # same and the stored run grows); without it, everything from there is read again.
                # (One stream's open group is every line from its first on: nothing to write then.)
                crc = checksum(self.fd, held_from, end)
                if crc is not None:
                    host.note_replay(Replay(self.ino, held_from, end, crc, tuple(held_lines)))
            if held_from > base:
                pos = held_from
        if pos is None:
            return
        self.pe.update_pos(pos)
        for ticket in saved:           # after the pos_file write: a restart will not read them again
            ticket.commit()
        wake = self.blocked and not self._over_unsettled()
        if wake:
            self.blocked = False
        host.on_settled(self, wake)

    def _partly_safe(self, host: "TailInput") -> tuple[int, int, list[int] | None] | None:
        """How far the position may move past the settled emits while a filter (concat) holds
        lines of the oldest unsettled ones: the first line held at the end of the run of emits
        whose outputs stored everything but what is held, with the run's end and the offsets of
        the lines held then (None: not known)."""
        found = None
        # (first held line, held lines) after the last emit of the run that concat saw: an emit it
        # did not see (an earlier filter dropped all of it) settles at once, and leaves it holding
        # what it held before; the position must stay before those lines all the same
        floor: tuple[int, list[int] | None] | None = None
        for gate, end, ticket in self.unsettled:
            if ticket is None or ticket.checkpoint is None:
                break
            if not (gate is not None and gate.done()):
                if not ticket.holds:
                    break
                stored, delivered = ticket.downstream()
                if not (delivered if host.settle_on_delivered else stored).done():
                    break
            if ticket.held_back:
                floor = (ticket.checkpoint[1], ticket.held_lines)
            found = (end, end, None) if floor is None else (floor[0], end, floor[1])
        return found

    # -- rotation -----------------------------------------------------------------------------

    def truncated(self, size: int) -> bool:
        consumed = self.reader.read_offset if self.reader is not None else self.pe.pos
        return size < consumed or size < self.last_size

    def restart_from_head(self, host: "TailInput") -> None:
        """copytruncate: the same inode got shorter; read it again from 0."""
        held = host.held_events(self)          # what the parser held from before the truncation
        if held:
            if self.pending is None:
                self.pending, self.retry_at = Pending(held, 0), 0.0
            else:
                self.pending.events.extend(held)
        if self.pending is not None:
            self.pending.end_pos = 0
        # What is unsettled came from the content before the truncation: its positions mean
        # nothing in the new content (settling later must not move the position past 0).
        for _gate, _pos, ticket in self.unsettled:
            if ticket is not None:
                ticket.commit()        # that content is gone: it can never be read (and sent) again
        self.unsettled.clear()
        self.blocked = False
        # Before the position goes back to 0: a crash in between leaves the old position (lines
        # read twice, never skipped).
        host.forget_offsets(self.ino, self.path)
        self.pe.update_pos(0)
        self.next_start = None
        if self.reader is not None:
            self.reader.reset(0)
        self.partial_since = None

    def lag(self) -> int:
        try:
            size = os.fstat(self.fd).st_size if self.fd is not None else os.stat(self.path).st_size
        except OSError:
            return 0
        return max(0, size - self.pe.pos)

    def at_end(self) -> bool:
        return self.pending is None and self.reader is not None and self.reader.eof and not self.unsettled


class LineStarts:
    """An emit's `Ticket.locate` when each line of its reads became one event, in order: the file
    offset of the line of one of its records (found by identity: a filter may have dropped others)."""

    __slots__ = ("events", "blocks", "_starts", "_index")

    def __init__(self, events: list[Any], blocks: list[tuple[int, bytes]]) -> None:
        self.events = events
        self.blocks = blocks
        self._starts: list[int] | None = None
        self._index: dict[int, int] | None = None

    def __call__(self, record: Any) -> int | None:
        # computed once, when a filter first asks (an emit whose lines it holds): concat asks for
        # every line it holds, so a scan per question would cost the emit's length squared
        index_of = self._index
        if index_of is None:
            index_of = self._index = {id(event[1]): i for i, event in enumerate(self.events)}
        index = index_of.get(id(record))
        if index is None:
            return None
        starts = self._starts
        if starts is None:
            starts = self._starts = [start for pos, data in self.blocks for start in line_starts(data, pos)]
        # a decoding where a line is not one b"\n"-ended run of bytes (UTF-16): unknown
        return starts[index] if len(starts) == len(self.events) else None


def _joined(first: list[Any], second: list[Any]) -> list[Any]:
    """`first + second` as a new list (a parser may keep the lists it gave), a StrValueEvents when
    both are (a list's `+` makes a plain list)."""
    if type(first) is StrValueEvents and type(second) is StrValueEvents:
        return StrValueEvents(chain(first, second))
    return first + second
