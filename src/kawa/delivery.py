"""Delivery tracking: lets an input learn when what it emitted is safe, so it can checkpoint then.

An input wraps an emit in `tracking(ticket)`; every buffered output that takes a share of the
events registers with the ticket (contextvars carry it through the router and filters, so no
plugin API changes). The ticket settles when each share is settled: "stored" when the events
are durably in a buffer (file buffer: fsync'd), "delivered" when the output confirmed the write
(or the chunk went to <secondary>/dead letters: handed over, never silently dropped).

    ticket = Ticket()
    with tracking(ticket):
        await emitter.emit(tag, events)
    ticket.seal()                 # no more shares can join
    await ticket.stored           # or ticket.delivered with <system> at_least_once_from_source

Events dropped by a filter or written by an unbuffered output settle at once (nothing to wait for).
Once the input's own checkpoint moved past the events (its pos_file written), it calls
`ticket.commit()`: a restart cannot emit them again.

An output whose share waits for a timer (a memory buffer's flush_interval, a timekey) registers
`on_hurry`: an input that stops reading until its oldest emits settle calls `hurry(tickets)`, and
those outputs queue their staged chunks now. Without it a filter that keeps few lines would leave a
chunk far from full, and the input waiting on it would read nothing until the timer (60 s, a day).

A ticket may carry a `checkpoint=(key, offset)`: where the input may resume once the events are
safe. A persistent buffer stores it durably with the events (file buffer: in the chunk's .meta)
and, when it resumes such chunks at start, reports it through `note_recovered_checkpoint`; outputs
start before inputs, so an input asks `recovered_checkpoint(key)` at its start and skips what is
already buffered (lines durably buffered but not yet reflected in its own position file).
"""

from __future__ import annotations

import asyncio
import contextvars
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

_current: contextvars.ContextVar["Ticket | None"] = contextvars.ContextVar("kawa_delivery_ticket", default=None)


class Ticket:
    """Counts the outstanding shares of one emit; two futures resolve when all shares settle."""

    __slots__ = ("_stored_pending", "_delivered_pending", "_sealed", "stored", "delivered", "failed",
                 "checkpoint", "committed", "_hurry", "_held_stored", "_held_delivered", "_downstream",
                 "start", "locate", "held_lines", "_hold_backs")

    def __init__(self, checkpoint: tuple[str, int] | None = None, start: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._stored_pending = 0
        self._delivered_pending = 0
        self._sealed = False
        self.stored: asyncio.Future[None] = loop.create_future()
        self.delivered: asyncio.Future[None] = loop.create_future()
        self.failed = False
        self.checkpoint = checkpoint
        # Resolved by the input once its own checkpoint (tail: the pos_file) is past these events, or
        # once it will never read them again: from then on a restart cannot emit them twice. Outputs
        # that remember what they sent for a restart (cloudwatch_logs' journal) forget it then.
        self.committed: asyncio.Future[None] = loop.create_future()
        self._hurry: list[Callable[[], None]] | None = None
        # shares a filter holds on to (concat keeps events for a later emit) and, once asked for,
        # the futures of the other shares only: what the outputs did with this emit's events
        self._held_stored = 0
        self._held_delivered = 0
        self._downstream: tuple[asyncio.Future[None], asyncio.Future[None]] | None = None
        # where this emit's events begin in the input (the checkpoint's key), and, during the emit
        # only, the input's way to find an event's own offset there (None: not known)
        self.start = start
        self.locate: Callable[[Any], int | None] | None = None
        # set by hold_back: the offsets of every line a filter still holds at the end of this emit
        # (sorted; None: some held line's offset is not known)
        self.held_lines: list[int] | None = None
        self._hold_backs = 0

    @property
    def holds(self) -> bool:
        """A filter keeps some of the events for a later emit."""
        return self._held_stored > 0

    @property
    def held_back(self) -> bool:
        """A filter that holds lines of this input saw this emit (hold_back): `checkpoint` and
        `held_lines` say where the lines it held at the emit's end are."""
        return self._hold_backs > 0

    def offset_of(self, record: Any) -> int | None:
        """The input offset where a restart reads `record` again (None without a checkpoint): its
        own line's when the input can tell, else where this emit's events begin (an input without
        `start`: 0, read again from the beginning rather than skipped)."""
        if self.checkpoint is None:
            return None
        found = self.line_offset(record)
        if found is not None:
            return found
        return self.start if self.start is not None else 0

    def line_offset(self, record: Any) -> int | None:
        """The offset of `record`'s own line in the input, when the input can tell (during the emit)."""
        return self.locate(record) if self.checkpoint is not None and self.locate is not None else None

    def hold_back(self, offset: int, lines: list[int] | None = None) -> None:
        """Events from `offset` on are not all stored with this emit (a filter holds some): the
        checkpoint stored with the outputs' share of it stays before them. `lines`: the offset of
        each line held (None: not all known); once the outputs stored the rest, a restart from the
        lowered checkpoint needs to read only those again up to the emit's end (kawa's tail)."""
        if self.checkpoint is not None and offset < self.checkpoint[1]:
            self.checkpoint = (self.checkpoint[0], offset)
        if not self._hold_backs:
            self.held_lines = lines
        elif self.held_lines is None or lines is None:
            self.held_lines = None          # two filters hold lines: known only when both know theirs
        else:
            self.held_lines = sorted(set(self.held_lines).union(lines))
        self._hold_backs += 1

    def on_hurry(self, deliver_sooner: Callable[[], None]) -> None:
        """Called by an output whose share waits for a timer: how to deliver it now instead."""
        if self._hurry is None:
            self._hurry = [deliver_sooner]
        elif deliver_sooner not in self._hurry:
            self._hurry.append(deliver_sooner)

    def commit(self) -> None:
        if not self.committed.done():
            self.committed.set_result(None)

    def join(self, hold: bool = False) -> "Share":
        """Called by a buffered output that took some of the events; `hold`: by a filter that keeps
        some of them to pass on in a later emit (settled when that emit's outputs settle)."""
        self._stored_pending += 1
        self._delivered_pending += 1
        if hold:
            self._held_stored += 1
            self._held_delivered += 1
        return Share(self, hold)

    def downstream(self) -> tuple["asyncio.Future[None]", "asyncio.Future[None]"]:
        """(stored, delivered) of the outputs' shares alone, leaving out the shares filters hold: a
        filter that passes held events on in this emit settles their own emits with these."""
        if self._downstream is None:
            loop = self.stored.get_loop()
            self._downstream = (loop.create_future(), loop.create_future())
            self._check()
        return self._downstream

    def seal(self) -> None:
        self._sealed = True
        self._check()

    def _check(self) -> None:
        if not self._sealed:
            return
        if self._stored_pending == 0 and not self.stored.done():
            self.stored.set_result(None)
        if self._delivered_pending == 0 and not self.delivered.done():
            self.delivered.set_result(None)
        if self._downstream is not None:
            stored, delivered = self._downstream
            if self._stored_pending == self._held_stored and not stored.done():
                stored.set_result(None)
            if self._delivered_pending == self._held_delivered and not delivered.done():
                delivered.set_result(None)


class Share:
    """One output's part of a ticket. Settle `stored` then `delivered` exactly once each."""

    __slots__ = ("ticket", "hold", "_stored", "_delivered")

    def __init__(self, ticket: Ticket, hold: bool = False) -> None:
        self.ticket = ticket
        self.hold = hold
        self._stored = False
        self._delivered = False

    def mark_stored(self) -> None:
        if not self._stored:
            self._stored = True
            self.ticket._stored_pending -= 1
            if self.hold:
                self.ticket._held_stored -= 1
            self.ticket._check()

    def mark_delivered(self) -> None:
        self.mark_stored()
        if not self._delivered:
            self._delivered = True
            self.ticket._delivered_pending -= 1
            if self.hold:
                self.ticket._held_delivered -= 1
            self.ticket._check()


def hurry(tickets: Iterable[Ticket | None]) -> int:
    """Ask every output holding a share of these tickets to deliver it now (each asked once);
    returns how many were asked."""
    calls: dict[Callable[[], None], None] = {}
    for ticket in tickets:
        if ticket is not None and ticket._hurry and not ticket.delivered.done():
            calls.update(dict.fromkeys(ticket._hurry))
    for deliver_sooner in calls:
        deliver_sooner()
    return len(calls)


def current() -> Ticket | None:
    """The ticket of the emit in progress, if its input asked for tracking."""
    return _current.get()


# key -> highest offset found in chunks a persistent buffer resumed at start (this process only).
_recovered: dict[str, int] = {}


def note_recovered_checkpoint(key: str, offset: int) -> None:
    """Called by a persistent buffer for each checkpoint of a chunk it resumed."""
    if offset > _recovered.get(key, -1):
        _recovered[key] = offset


def recovered_checkpoint(key: str) -> int | None:
    """The highest offset durably buffered for `key` by the previous run, if any."""
    return _recovered.get(key)


# Persistent buffers that store checkpoints with their chunks (FileBuffer registers at start).
_stores: list[Any] = []


def register_store(store: Any) -> None:
    """`store.forget_checkpoint(key)` drops `key` from what it stored (see `forget`)."""
    if store not in _stores:
        _stores.append(store)


def unregister_store(store: Any) -> None:
    if store in _stores:
        _stores.remove(store)


def forget(key: str) -> None:
    """The input's offsets for `key` now name other content (tail: a file truncated in place, same
    inode): drop every checkpoint stored under it. Otherwise a restart would take an offset of the
    old content as one of the new (resume past lines never read: a loss), and judge an uncommitted
    append of the new content committed by the old offsets (read twice)."""
    _recovered.pop(key, None)
    for store in list(_stores):
        store.forget_checkpoint(key)


# Directories where inputs keep durable state (tail: its pos_file's), in configuration order: an output
# without a persistent buffer keeps what must survive a restart there, next to what it protects.
_state_dirs: list[str] = []


def note_state_dir(path: str) -> None:
    if path not in _state_dirs:
        _state_dirs.append(path)


def state_dirs() -> list[str]:
    return list(_state_dirs)


@contextmanager
def tracking(ticket: Ticket) -> Iterator[Ticket]:
    token = _current.set(ticket)
    try:
        yield ticket
    finally:
        _current.reset(token)
