"""The single task that drives a tail source: which files to read now, rotation, refresh, timers.

Idle files cost nothing: inotify (one watch per directory) marks files dirty; the watch timer
(Fluentd's enable_watch_timer) is one stat per file, every second, or less often while inotify has
reported every change (SweepPacer). Wake-ups are coalesced for a short delay.
"""

# Cost per wake-up is what a busy sidecar pays (nginx writes a line per request): while a read is
# due or under way the inotify fd is not read at all, so the kernel merges the writes' IN_MODIFY
# events into one instead of waking the loop per write; and the timed wait is a bare future with a
# call_later, one loop iteration instead of asyncio.wait_for's task and cancellation.

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

from kawa import delivery
from kawa.plugins.inputs._tail.follower import Follower
from kawa.plugins.inputs._tail.offset_marks import MARK_INTERVAL, NEW_MARK_DELAY, rotated_key
from kawa.plugins.inputs._tail.position_file import MemoryPositionEntry
from kawa.plugins.inputs._tail.rotated_file import RotatedEntry, RotatedRecord, current_path, find_by_inode
from kawa.plugins.inputs._tail.watcher import NEW_NAME_MASK, DirectoryWatcher, InotifyUnavailable
from kawa.plugins.inputs._tail import paths as tailpaths

if TYPE_CHECKING:
    from kawa.plugins.inputs.tail import TailInput

WATCH_TIMER_INTERVAL = 1.0      # Fluentd TimerTrigger.new(1, ...)
QUIET_SWEEP_INTERVAL = 8.0      # the longest gap between sweeps while inotify is trusted (SweepPacer)
SHUTDOWN_TIMEOUT = 5.0          # Fluentd IOHandler::SHUTDOWN_TIMEOUT: reading what is left at stop
# A rotated file past its rotate_wait that cannot be released yet (lines not delivered: an output
# outage) is looked at again this often; its last delivery also wakes the loop (TailInput.on_settled).
DRAIN_RECHECK = 1.0


class Wake:
    """A flag the loop sleeps on with a timeout (asyncio.Event + wait_for, one loop iteration)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float) -> bool:
        """True when set (now or within `timeout` seconds), False on timeout."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _time_out, waiter) if timeout != float("inf") else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return self._set


def _time_out(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


class SweepPacer:
    """Seconds until the next watch-timer sweep (the stat of every followed file).

    Fluentd sweeps every second in case inotify missed a change. At idle that second is nearly the
    whole cost of a sidecar: a bare asyncio loop that wakes once a second measured 0.039 % of a core
    here, against a 0.05 % budget. So while inotify covers every followed file (see
    TailScheduler._inotify_covers_all) and no sweep has found a change it did not report, the
    interval doubles after each sweep, up to QUIET_SWEEP_INTERVAL. A sweep that finds such a change
    (NFS or FUSE, a writer through mmap) returns to every second for the rest of the run. A miss
    costs latency, never lines: the sweep that finds the change reads it.
    """

    __slots__ = ("interval", "trusted")

    def __init__(self) -> None:
        self.interval = WATCH_TIMER_INTERVAL
        self.trusted = True

    def after_sweep(self, *, missed: bool, covered: bool) -> float:
        if missed:
            self.trusted = False
        if self.trusted and covered:
            self.interval = min(self.interval * 2, QUIET_SWEEP_INTERVAL)
        else:
            self.interval = WATCH_TIMER_INTERVAL
        return self.interval


class TailScheduler:
    def __init__(self, host: "TailInput") -> None:
        self.host = host
        self.o = host.options
        self.log = host.log
        self.tails: dict[str, Follower] = {}        # path -> follower of the file now at that path
        self.draining: list[Follower] = []          # rotated away, read until rotate_wait and EOF
        self.waiting: dict[str, float] = {}         # rotated paths whose new file is not there yet -> since
        self.dirty: set[int] = set()                # id() of followers to look at
        self.refresh_soon = False
        self.wake = Wake()
        # Set with `wake` when a follower blocked on its unsettled emits may read again (or at stop):
        # that must not wait notify_coalesce_interval, which is for gathering a writer's changes.
        # A memory buffer settles every MAX_UNSETTLED_BYTES, so waiting there stalled a burst.
        self.unblocked = Wake()
        self._listening = False                     # the inotify fd is registered with the loop
        self.task: asyncio.Task[None] | None = None
        self.inotify: DirectoryWatcher | None = None
        self.stopping = False
        self.startup = True
        self.sweeps = SweepPacer()
        self._heard: set[str] | None = None         # paths inotify reported while a sweep listens

    def all_followers(self) -> list[Follower]:
        return [*self.tails.values(), *self.draining]

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.o.enable_stat_watcher:
            try:
                self.inotify = DirectoryWatcher(self._on_inotify)
                self._listen(True)
            except (InotifyUnavailable, OSError, NotImplementedError) as exc:
                self.log.debug(f"inotify unavailable, polling every second: {exc}")
                self.inotify = None
        self._resume_rotated()
        if not self.o.skip_refresh_on_startup:
            self.refresh()
        self.startup = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"tail:{self.host.plugin_id}")

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.wake.set()
        self.unblocked.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), SHUTDOWN_TIMEOUT)
            except (asyncio.TimeoutError, Exception):
                self.task.cancel()
        # Read what is left (Fluentd reads remaining lines at shutdown, bounded by a timeout).
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT
        for f in self.all_followers():
            while time.monotonic() < deadline and await f.pump(self.host, time.monotonic()):
                pass
        if self.host.pf is None:
            # Nothing would read held lines again: emit them now, as Fluentd does at shutdown.
            for f in self.all_followers():
                if f.held:
                    await f.flush_held(self.host, time.monotonic())
        if self.inotify is not None:
            try:
                self._listen(False)
            except (RuntimeError, ValueError):
                pass
            self.inotify.close()
        for f in self.all_followers():
            f.close(self.host)

    # -- notifications ------------------------------------------------------------------------

    def _listen(self, on: bool) -> None:
        """Read the inotify fd (when waiting) or leave its events queued, merged by the kernel."""
        if self.inotify is None or on == self._listening:
            return
        loop = asyncio.get_running_loop()
        if on:
            loop.add_reader(self.inotify.fd, self.inotify.read_events)
        else:
            loop.remove_reader(self.inotify.fd)
        self._listening = on

    def _on_inotify(self, directory: str, name: str, mask: int) -> None:
        if self._heard is not None:
            self._heard.add(os.path.join(directory, name) if directory else "")
        if not directory:                      # queue overflow: look at everything
            self._mark_all()
            self.refresh_soon = True
        else:
            f = self.tails.get(os.path.join(directory, name))
            if f is not None:
                self.dirty.add(id(f))
            for d in self.draining:
                self.dirty.add(id(d))
            if mask & NEW_NAME_MASK or os.path.join(directory, name) in self.waiting:
                self.refresh_soon = True
        self.wake.set()

    def resume_reading(self, f: Follower) -> None:
        """`f` waited for its emits to settle and may read again: at once, not after the coalescing."""
        self.dirty.add(id(f))
        self.unblocked.set()
        self.wake.set()

    def _mark_all(self) -> None:
        self.dirty.update(id(f) for f in self.all_followers())

    def _watch_dirs(self) -> None:
        if self.inotify is None:
            return
        wanted = tailpaths.static_directories(self.paths_now(), self.o.glob_policy)
        wanted.update(os.path.dirname(p) for p in self.tails)
        for d in wanted - self.inotify.directories:
            self.inotify.watch(d)

    def paths_now(self) -> list[str]:
        now = time.time()
        return [tailpaths.strftime_path(p, now) for p in self.host.paths]

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        o = self.o
        now = time.monotonic()
        next_refresh = now + o.refresh_interval
        next_sweep = now + self.sweeps.interval if o.enable_watch_timer or self.inotify is None else float("inf")
        next_compact = now + o.pos_file_compaction_interval if o.pos_file_compaction_interval else float("inf")
        next_marks = now + MARK_INTERVAL     # saved on a round that runs anyway: no wake-up of its own
        next_new_marks = now + NEW_MARK_DELAY
        self._mark_all()
        while not self.stopping:
            timeout = max(0.0, min(next_refresh, next_sweep, next_compact, self._next_deadline()) - time.monotonic())
            if not self.dirty and not self.refresh_soon:
                self._listen(True)
                if await self.wake.wait(timeout):
                    self._listen(False)            # the rest of this round's writes: one event
                    if o.notify_coalesce_interval > 0 and not self.stopping:
                        await self.unblocked.wait(o.notify_coalesce_interval)
            else:
                self._listen(False)
            self.wake.clear()
            self.unblocked.clear()
            if self.stopping:
                break
            now = time.monotonic()
            if now >= next_refresh or self.refresh_soon:
                self.refresh_soon = False
                self.refresh()
                if now >= next_refresh:
                    next_refresh = now + o.refresh_interval
            sweeping = now >= next_sweep
            if sweeping:
                unreported = self._unreported()
                self._mark_all()
            if now >= next_compact and self.host.pf is not None:
                self.log.info("Clean up the pos file")
                self.host.pf.try_compact()
                next_compact = now + o.pos_file_compaction_interval
            await self._service(now)
            if now >= next_marks:
                self.host.save_marks()
                next_marks = now + MARK_INTERVAL
                next_new_marks = now + NEW_MARK_DELAY
            elif now >= next_new_marks:
                self.host.save_marks(missing_only=True)
                next_new_marks = now + NEW_MARK_DELAY
            if sweeping:
                missed = self._missed_by_inotify(unreported)
                next_sweep = now + self.sweeps.after_sweep(missed=missed, covered=self._sweeps_may_slow())

    # -- is inotify enough? (SweepPacer) -------------------------------------------------------

    def _sweeps_may_slow(self) -> bool:
        """Whether the sweep is only a check on inotify: inotify covers every file, and no read waits
        for the sweep (a file throttled by read_bytes_limit_per_second resumes on it, as in Fluentd)."""
        return self.o.read_bytes_limit_per_second <= 0 and self._inotify_covers_all()

    def _inotify_covers_all(self) -> bool:
        """Whether every followed file's changes reach inotify: each is a plain file (a link's target
        changes in a folder nobody watches: kubelet's /var/log/containers) in a watched folder, and
        no file is rotating (a rotated file may move to another folder)."""
        inotify = self.inotify
        if inotify is None or self.draining or self.waiting:
            return False
        return all(self._covered(f, inotify) for f in self.tails.values())

    @staticmethod
    def _covered(f: Follower, inotify: DirectoryWatcher) -> bool:
        return not f.linked and inotify.watches(os.path.dirname(f.path))

    def _unreported(self) -> list[tuple[Follower, int]]:
        """Before a sweep: the covered followers inotify said nothing about, with the size last seen."""
        inotify = self.inotify
        if inotify is None or not self.sweeps.trusted:
            return []
        inotify.read_events()                  # events queued while this round ran: served in it
        self.wake.clear()
        return [(f, f.last_size) for f in self.tails.values()
                if id(f) not in self.dirty and self._covered(f, inotify)]

    def _missed_by_inotify(self, unreported: list[tuple[Follower, int]]) -> bool:
        """After a sweep: did it find a change inotify never reported? The sweep's stat updated
        `last_size`; any other stat since the last one followed an event, which would have marked
        the file. An event racing the sweep is in the queue by now and excuses its file."""
        suspects = [f for f, size in unreported if f.last_size != size or self.tails.get(f.path) is not f]
        if not suspects or self.inotify is None:
            return False
        self._heard = heard = set()
        try:
            self.inotify.read_events()
        finally:
            self._heard = None
        if "" in heard:                        # the queue overflowed: it did report, in bulk
            return False
        for f in suspects:
            if f.path not in heard:
                self.log.info(f"inotify did not report a change of {f.path}; "
                              "looking at every file each second from now on")
                return True
        return False

    def _next_deadline(self) -> float:
        """Earliest timer of a file: a retry, a rotate_wait expiry, a multiline flush."""
        soonest = float("inf")
        now = time.monotonic()
        for f in self.all_followers():
            if f.pending is not None:
                soonest = min(soonest, f.retry_at)
            if f.draining:
                # Once rotate_wait is over, the expiry stays in the past while the file waits for its
                # lines to be delivered: as a deadline it would make the loop spin (a core at 100 %
                # through a CloudWatch outage). A slow recheck instead.
                expiry = f.rotated_at + self.o.rotate_wait
                soonest = min(soonest, expiry if expiry > now else now + DRAIN_RECHECK)
            if f.partial_since is not None and self.o.multiline_flush_interval:
                soonest = min(soonest, f.partial_since + self.o.multiline_flush_interval)
            if f.held_since is not None and self.o.multiline_flush_interval:
                soonest = min(soonest, f.held_since + self.o.multiline_flush_interval)
        return soonest

    async def _service(self, now: float) -> None:
        dirty, self.dirty = self.dirty, set()
        statted: set[int] = set()
        for f in list(self.tails.values()):
            due = id(f) in dirty or (f.pending is not None and now >= f.retry_at)
            if due and self.tails.get(f.path) is f:
                await self._check_rotation(f, now)
                if self.tails.get(f.path) is f:
                    statted.add(id(f))
        for f in self.all_followers():
            due = id(f) in dirty or (f.pending is not None and now >= f.retry_at)
            if due:
                more = await f.pump(self.host, now, statted=id(f) in statted)
                if more:
                    self.dirty.add(id(f))           # more to read: come back after others had a turn
                if more or f.last_active == now:
                    # it read: let other tasks run before the next file (an idle tick that found
                    # nothing new skips this extra loop turn; most of an idle second's CPU is turns)
                    await asyncio.sleep(0)
            flush = self.o.multiline_flush_interval
            if flush and f.partial_since is not None and now - f.partial_since >= flush:
                await f.flush_partial(self.host, now)
            if flush and f.held_since is not None and now - f.held_since >= flush:
                await f.flush_held(self.host, now)
        await self._release_drained(now)
        self._enforce_fd_budget()
        if self.o.open_on_every_update:
            for f in self.tails.values():
                f.close(self.host)

    # -- rotation -----------------------------------------------------------------------------

    async def _check_rotation(self, f: Follower, now: float) -> None:
        try:
            st = os.stat(f.path)
        except OSError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (f.dev, f.ino):
            if f.truncated(st.st_size):
                self.log.info(f"detected rotation of {f.path}")
                self.host.rotated_files += 1
                f.counters.rotated += 1
                f.restart_from_head(self.host)
                self.log.info(f"following tail of {f.path}")
            f.last_size = st.st_size
            return
        # Renamed or deleted: read the old file to its current end first (Fluentd#1055), then
        # keep it open for rotate_wait (and, unlike Fluentd, until it is fully read).
        await f.pump(self.host, now, max_batches=1_000_000)
        self.log.info(f"detected rotation of {f.path}; waiting {_seconds(self.o.rotate_wait)} seconds")
        self.host.rotated_files += 1
        f.counters.rotated += 1
        del self.tails[f.path]
        self._start_draining(f, now)
        if f.fd is None:
            f.reader = None
        if st is None:
            self.waiting[f.path] = now
        else:
            self._follow(f.path, st, from_head=True)

    def _start_draining(self, f: Follower, now: float) -> None:
        """Rotated away or no longer matched: read to its end, its position kept in the side file."""
        f.draining, f.rotated_at = True, now
        self.draining.append(f)
        rotated = self.host.rotated
        if rotated is not None:
            mirror = f.pe if self.o.follow_inodes else None
            where = current_path(f.fd) or f.open_path or f.path
            f.pe = rotated.add(RotatedRecord(f.dev, f.ino, f.pe.pos, f.path, where), mirror)
        elif not self.o.follow_inodes:
            f.pe = MemoryPositionEntry(f.pe.pos, f.pe.ino)      # Fluentd swap_state

    def _resume_rotated(self) -> None:
        """Finish the rotated files the previous run was still reading when it stopped or died."""
        rotated = self.host.rotated
        if rotated is None:
            return
        for record in rotated.load():
            found = find_by_inode(record, [os.path.dirname(record.current), os.path.dirname(record.watched)])
            if found is None:
                self.log.warn(f"rotated file {record.current} (inode {record.ino}) is gone; "
                              "its lines after the saved position could not be read")
                continue
            path, st = found
            if self.host.rewritten_while_stopped(path, st, rotated=True):
                self.log.warn(f"rotated file {record.current} (inode {record.ino}) is gone: {path} has that inode "
                              "now, with other content; the old file's lines after the saved position could "
                              "not be read")
                continue
            record.current = path
            record.pos = self._recovered(st, record.pos)
            if st.st_size < record.pos:
                self.host.forget_offsets(st.st_ino, rotated_key(st.st_dev, st.st_ino))   # truncated meanwhile
                record.pos = 0                  # truncated meanwhile: all of it is new
            f = Follower(record.watched, st.st_dev, st.st_ino, MemoryPositionEntry(record.pos, st.st_ino),
                         self.host.tag_for(record.watched), last_size=st.st_size, open_path=path)
            if not f.open(self.host):
                continue
            f.pe = rotated.add(record)
            f.draining, f.rotated_at = True, time.monotonic()
            self.draining.append(f)
            self.dirty.add(id(f))
            self.log.info(f"following rotated file {path} (was {record.watched}) from position {record.pos}")
        rotated.rewrite()                       # drop what could not be resumed

    async def _release_drained(self, now: float) -> None:
        keep: list[Follower] = []
        for f in self.draining:
            waited = now - f.rotated_at >= self.o.rotate_wait
            finished = f.fd is None or (f.pending is None and f.reader is not None and f.reader.eof)
            finished = finished and not f.unsettled     # its position must survive until its lines are safe
            if waited and finished and f.held and not await f.flush_held(self.host, now):
                finished = False                # the parser's last event was refused: retry later
            if waited and self.waiting:
                self.refresh_soon = True        # let refresh() give up on paths not recreated
            if waited and finished:
                f.close(self.host)
                if self.o.follow_inodes and self.host.pf is not None:
                    self.host.pf.unwatch(f.path, f.ino)
                if self.host.rotated is not None and isinstance(f.pe, RotatedEntry):
                    self.host.rotated.remove(f.pe)
            else:
                keep.append(f)
        self.draining = keep

    # -- refresh ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fluentd refresh_watchers: start new targets, stop vanished ones (pos set unwatched)."""
        targets = self.host.expand_paths()
        now = time.monotonic()
        for path in list(self.tails):
            if path not in targets:
                if not self.o.follow_inodes and not os.path.lexists(path):
                    # Renamed or deleted: a rotation. _check_rotation drains it and keeps the
                    # path's pos_file entry for the next file there (Fluentd updates that entry).
                    self.dirty.add(id(self.tails[path]))
                    continue
                f = self.tails.pop(path)
                pos = f.pe.pos
                if self.host.pf is not None and not self.o.follow_inodes:
                    self.host.pf.unwatch(path, f.ino)
                    f.pe = MemoryPositionEntry(pos, f.pe.ino)
                self._start_draining(f, time.monotonic())
                self.dirty.add(id(f))
        for path, since in list(self.waiting.items()):
            if path not in targets and now - since >= self.o.rotate_wait:
                del self.waiting[path]
                if self.host.pf is not None and not self.o.follow_inodes:
                    self.host.pf.unwatch(path, 0)
        for path, st in targets.items():
            existing = self.tails.get(path)
            if existing is not None:
                if (st.st_dev, st.st_ino) != (existing.dev, existing.ino):
                    self.dirty.add(id(existing))      # rotated: _check_rotation handles it
                continue
            from_head = path in self.waiting or not self.startup
            self.waiting.pop(path, None)
            self._follow(path, st, from_head=from_head)
        self._watch_dirs()

    def _follow(self, path: str, st: os.stat_result, *, from_head: bool) -> None:
        key = (st.st_dev, st.st_ino)
        for f in self.all_followers():
            if (f.dev, f.ino) != key:
                continue
            if f.draining:          # a rotated file matched again under its new name: adopt it
                self._adopt(f, path, st)
            else:
                self.log.debug(f"{path} is the same file as {f.path}; not read twice")
            return
        pe = self.host.position_entry(path, st.st_ino)
        if self.o.read_from_head and pe.ino == 0:
            pe.update(st.st_ino, 0)
        if pe.ino == st.st_ino:
            if self.startup:
                pe.update_pos(self._recovered(st, pe.pos))
            rewritten = 0 < pe.pos <= st.st_size and self.host.rewritten_while_stopped(path, st)
            if rewritten:
                self.log.warn(f"{path} was truncated and written again while it was not read (the bytes "
                              f"before its saved position {pe.pos} changed); reading it from the start")
            if rewritten or st.st_size < pe.pos:      # truncated while no follower read it
                self.host.forget_offsets(st.st_ino, path)
                pe.update(st.st_ino, 0)
        elif pe.ino != 0 or from_head:
            pe.update(st.st_ino, 0)       # a new file since we last saw this path: all of it is new
        else:
            pe.update(st.st_ino, 0 if self.o.read_from_head else st.st_size)
        f = Follower(path, st.st_dev, st.st_ino, pe, self.host.tag_for(path), last_size=st.st_size,
                     linked=os.path.islink(path))
        if not f.open(self.host):
            self.log.warn(f"stat() for {path} failed. Continuing without tailing it.")
            return
        self.tails[path] = f
        self.dirty.add(id(f))
        self.log.info(f"following tail of {path}")
        if self.inotify is not None:
            self.inotify.watch(os.path.dirname(path))

    def _recovered(self, st: os.stat_result, pos: int) -> int:
        """At start: past the lines a resumed file buffer already holds (kawa.delivery checkpoints)."""
        key = self.host.checkpoint_key(st.st_ino)
        held = delivery.recovered_checkpoint(key) if key is not None else None
        if held is not None and pos < held <= st.st_size:
            self.log.info(f"resuming {st.st_ino} at {held}: lines before it are in the buffer already")
            return held
        return pos

    def _adopt(self, f: Follower, path: str, st: os.stat_result) -> None:
        self.draining.remove(f)
        f.draining = False
        if self.host.rotated is not None and isinstance(f.pe, RotatedEntry):
            self.host.rotated.remove(f.pe)
        if not self.o.follow_inodes or isinstance(f.pe, RotatedEntry):
            pe = self.host.position_entry(path, st.st_ino)
            pe.update(st.st_ino, f.pe.pos)
            f.pe = pe
        f.path, f.tag, f.open_path = path, self.host.tag_for(path), None
        f.linked = os.path.islink(path)
        self.tails[path] = f
        self.dirty.add(id(f))

    # -- descriptors --------------------------------------------------------------------------

    def _enforce_fd_budget(self) -> None:
        limit = max(1, self.o.max_open_files)
        open_tails = [f for f in self.tails.values() if f.fd is not None]
        if len(open_tails) <= limit:
            return
        idle = sorted((f for f in open_tails if f.idle and f.reader is not None and f.reader.eof),
                      key=lambda f: f.last_active)
        for f in idle[: len(open_tails) - limit]:
            f.close(self.host)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
