"""The output's side of the sent journal (journal.py) for memory buffers: open it at start, read back
the calls a kill -9 cut off, skip re-read events CloudWatch Logs already holds, retire entries.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any, Callable

from kawa import delivery
from kawa.plugins.outputs.cloudwatch_logs import verify
from kawa.plugins.outputs.cloudwatch_logs.journal import Entry, Leftovers, SentJournal, digest, expire_at, leftovers_of
from kawa.plugins.outputs.cloudwatch_logs.messages import Plan

if TYPE_CHECKING:
    from kawa.plugins.outputs.cloudwatch_logs.plugin import CloudwatchLogsOutput
    from kawa.plugins.outputs.cloudwatch_logs.sender import Delivery


class JournalKeeper:
    """One output's journal state. Inactive (journal None) with a persistent buffer, or nowhere to
    keep the file (no root_dir and no tail pos_file: then no input reads anything twice either)."""

    def __init__(self, out: "CloudwatchLogsOutput") -> None:
        self.out = out
        self.log = out.log
        self.journal: SentJournal | None = None
        self.restart: list[Entry] | None = None        # the previous process's entries, unchecked
        self.leftovers: Leftovers | None = None
        self.leftover_tickets: list[Any] = []            # tickets of chunks that dropped leftovers
        self.chunk_calls: dict[str, list[int]] = {}      # chunk id -> journal ids of its sent calls

    def path(self) -> str | None:
        out = self.out
        o = out.options
        if o.sent_journal_path:
            return str(o.sent_journal_path)
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in out.plugin_id)
        root = getattr(out.ctx.system, "root_dir", None)
        if root:
            return os.path.join(root, f"worker{out.ctx.worker_id}", name, "cloudwatch_logs.journal")
        dirs = delivery.state_dirs()
        if dirs:
            return os.path.join(dirs[0], f".kawa-cloudwatch_logs.{name}.worker{out.ctx.worker_id}.journal")
        return None

    async def open(self) -> None:
        path = self.path()
        if path is None:
            self.log.debug("no sent journal: no root_dir and no tail pos_file (nothing is read twice)")
            return
        self.journal = SentJournal(path, warn=self.log.warn)
        try:
            self.restart = await asyncio.to_thread(self.journal.open) or None
        except OSError as exc:
            self.log.warn("sent journal unavailable; a restart after kill -9 may send re-read lines twice",
                          path=path, error=str(exc))
            self.journal = None

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()

    # -- while sending --------------------------------------------------------------------------
    def note_call(self, chunk_id: str, jid: int) -> None:
        """A call of this chunk is stored in CloudWatch Logs (journal id `jid`)."""
        self.chunk_calls.setdefault(chunk_id, []).append(jid)

    def chunk_written(self, chunk: Any) -> None:
        """Forget the chunk's calls once every input that emitted its events checkpointed past them."""
        jids = self.chunk_calls.pop(chunk.id, [])
        journal = self.journal
        if journal is None or not jids:
            return
        _when_all_committed(_source_tickets(chunk), lambda: journal.forget(jids))

    async def before_first_send(self, sender: "Delivery", chunk: Any, plans: list[Plan], progress: Any) -> None:
        """First plan of a chunk: check what the previous process left (once), then mark as done the
        events CloudWatch Logs already has."""
        if self.restart is not None:
            await self._check_leftovers(sender)
        if self.leftovers is not None:
            self._skip_leftovers(chunk, plans, progress)

    # -- after a restart ------------------------------------------------------------------------
    async def _check_leftovers(self, sender: "Delivery") -> None:
        """What the previous process sent (or had in flight) may come back: read the cut-off calls back."""
        entries, self.restart = self.restart or [], None
        journal = self.journal
        assert journal is not None
        counters = self.out.counters
        if any(e.state != "ok" for e in entries):
            await asyncio.sleep(verify.SETTLE_SECONDS)   # a cut-off call may still be processed by AWS

        def stored(entry: Entry) -> bool | None:
            events = len(entry.stamps) // 8
            outcome = verify.check_digests(sender.client, entry.group, entry.stream, entry.digests(), digest)
            if outcome.stored is None:
                self.log.warn(f"could not tell whether CloudWatch Logs stored a PutLogEvents call cut off by the "
                              f"last stop ({outcome.reason}); its events are sent again: up to {events} may be "
                              "duplicated", group=entry.group, stream=entry.stream)
            elif outcome.stored:
                counters["inflight_found"] += 1
                counters["inflight_found_events"] += events
                self.log.info("a PutLogEvents call whose answer was lost is stored in CloudWatch Logs; its events "
                              "are not sent again", group=entry.group, stream=entry.stream, events=events)
            else:
                counters["inflight_missing"] += 1
                self.log.info("a PutLogEvents call whose answer was lost is not in CloudWatch Logs; its events are "
                              "sent again", group=entry.group, stream=entry.stream, events=events)
            return outcome.stored

        left, gone, unknown = await asyncio.to_thread(leftovers_of, entries, stored)
        counters["inflight_unverified_events"] += unknown
        await asyncio.to_thread(journal.forget, gone)
        if left.empty:
            await asyncio.to_thread(journal.forget, left.entries)
            return
        left.expires = expire_at()
        self.leftovers = left
        self.log.info("sent journal: events CloudWatch Logs got before the last stop will not be sent again "
                      "when read again", events=sum(sum(c.values()) for c in left.by_dest.values()))

    def _skip_leftovers(self, chunk: Any, plans: list[Plan], progress: Any) -> None:
        left = self.leftovers
        assert left is not None
        counters = self.out.counters
        for plan in plans:
            hits = left.take(plan.group, plan.stream, plan.pieces)
            for pos in hits:
                progress.mark(plan.key, pos, pos + 1)
            counters["resent_skipped"] += len(hits)
            if hits:
                self.leftover_tickets.extend(_source_tickets(chunk))
        expired = left.expires is not None and time.monotonic() > left.expires
        if not (left.empty or expired):
            return
        if expired:
            n = sum(sum(c.values()) for c in left.by_dest.values())
            counters["leftovers_expired"] += n
            self.log.info("sent journal: events sent before the last stop did not come back; forgotten", events=n)
        self.leftovers = None
        journal, ids = self.journal, left.entries
        tickets, self.leftover_tickets = self.leftover_tickets, []
        if journal is not None:
            # the chunks that dropped them must be committed first (a second kill before that: the
            # next start needs these entries again)
            _when_all_committed(tickets, lambda: journal.forget(ids))


def _source_tickets(chunk: Any) -> list[Any]:
    """Delivery tickets of the inputs that can emit the chunk's events again after a restart (tail)."""
    tickets = {id(a.ticket): a.ticket for a in getattr(chunk, "acks", ())
               if getattr(a, "ticket", None) is not None and a.ticket.checkpoint is not None}
    return list(tickets.values())


def _when_all_committed(tickets: list[Any], then: Callable[[], None]) -> None:
    pending = [t.committed for t in tickets if not t.committed.done()]
    if not pending:
        then()
        return
    left = [len(pending)]

    def one_done(_fut: Any) -> None:
        left[0] -= 1
        if left[0] == 0:
            then()

    for fut in pending:
        fut.add_done_callback(one_done)
