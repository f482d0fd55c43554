"""Per-output flush tasks: dequeue a chunk, `await output.write(chunk)`, commit; retries and dead letters.

Unlike Fluentd, exhausted retries move only the failing chunk aside (never the whole queue).
"""

from __future__ import annotations

import asyncio
import json
import os
import random as _random
import re
import time as _time
from typing import Any, Callable

from kawa.buffer.buffer import Buffer
from kawa.buffer.chunk import Chunk
from kawa.buffer.options import BufferSettings
from kawa.buffer.retry import RetryState, retry_state_from
from kawa.errors import RetryableError, UnrecoverableError
from kawa.event import NS_PER_SEC

# Fluentd output.rb UNRECOVERABLE_ERRORS, in Python terms: bugs in formatting data are not transient.
UNRECOVERABLE = (UnrecoverableError, TypeError, ValueError, UnicodeError)
# Fluentd buffer.rb DEFAULT_BACKUP_DIR (env.rb): $FLUENT_BACKUP_DIR or /tmp/fluent
DEFAULT_BACKUP_DIR = "/tmp/fluent"
_UNSAFE_ID = re.compile(r'[ "/\\:;|*<>?]')


def _fmt_time(seconds: float) -> str:
    return _time.strftime("%Y-%m-%d %H:%M:%S %z", _time.localtime(round(seconds)))

# Longest sleep of a flush loop with nothing queued (a safety net: enqueueing wakes it at once).
IDLE_WAIT = 30.0

class Flusher:
    """Runs the enqueue timer and `flush_thread_count` writers for one buffered output."""

    def __init__(self, output: Any, buffer: Buffer, settings: BufferSettings, *,
                 clock: Callable[[], int], rand: Callable[[], float] = _random.random,
                 secondary: Any = None, backup_base: str | None = None) -> None:
        self.output = output
        self.buffer = buffer
        self.settings = settings
        self.clock = clock
        self.rand = rand
        self.secondary = secondary
        self.log = output.log
        self.backup_base = backup_base or os.environ.get("FLUENT_BACKUP_DIR") or DEFAULT_BACKUP_DIR
        self.retries: dict[str, RetryState] = {}
        self.paused_until = 0.0            # slow_down: the whole output waits (seconds)
        self.running = False
        self._wake = asyncio.Event()
        self._done = asyncio.Event()       # set after each write attempt (flush() waits on it)
        self._stopping = asyncio.Event()   # ends the enqueue timer at once
        self._staged = asyncio.Event()     # a chunk was staged, or stopping: the enqueue timer wakes
        self._tasks: list[asyncio.Task[None]] = []
        self.write_count = 0
        self.rollback_count = 0
        self.num_errors = 0
        self.dead_lettered = 0
        self.lost_records = 0       # in chunks whose file was removed under kawa (_file_gone)
        buffer.on_change = self.wake
        buffer.on_stage = self._staged.set

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self.running = True
        if self.settings.flush_mode != "immediate" or self.settings.keys.time:
            self._tasks.append(asyncio.create_task(self._enqueue_loop(), name=f"{self.output.plugin_id}.enqueue"))
        for n in range(self.settings.flush_thread_count):
            self._tasks.append(asyncio.create_task(self._flush_loop(), name=f"{self.output.plugin_id}.flush{n}"))
        if self.buffer.queue:
            self.wake()

    async def stop(self, budget: float) -> None:
        """Flush within `budget` seconds (all staged chunks too when flush_at_shutdown), then stop."""
        deadline = _time.monotonic() + budget
        if self.settings.flush_at_shutdown:
            self.buffer.enqueue_all(force=True)
            self.wake()
            while self.buffer.queue or self.buffer.dequeued:
                remaining = deadline - _time.monotonic()
                if remaining <= 0 or not self._tasks:
                    break
                if not self.buffer.dequeued and not any(self._ready(c) for c in self.buffer.queue):
                    soonest = min((self._next_time(c) for c in self.buffer.queue), default=0.0)
                    if soonest - self.clock() / NS_PER_SEC > remaining:
                        break
                await self._wait(self._done, min(remaining, 0.5))
        self.running = False
        self._stopping.set()
        self._staged.set()
        self.wake()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=max(0.0, deadline - _time.monotonic()) + 0.1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        left = list(self.buffer.chunks())
        if left:
            records = sum(c.record_count for c in left)
            if self.buffer.persistent:
                self.log.info("buffer chunks left for the next start", chunks=len(left), records=records)
            elif records:
                # tail did not advance its pos_file past these (delivery tickets): it reads them again
                # at the next start; inputs without checkpoints (sample, exec) lose them.
                self.log.warn("memory buffer not flushed in time: records not delivered at shutdown; "
                              "tail sources read them again at the next start, other inputs lose them",
                              chunks=len(left), records=records)

    def wake(self) -> None:
        self._wake.set()

    async def flush_all(self) -> None:
        """Force flush: queue every staged chunk; the writers (flush_thread_count of them, so chunk
        order holds) write every chunk not waiting for a retry; return when they are done."""
        self.buffer.enqueue_all(force=True)
        while True:
            if not self._tasks:      # not started: write here, in order
                chunk = self.buffer.dequeue(self._ready)
                if chunk is None:
                    return
                await self.flush_one(chunk)
                continue
            if not self.buffer.dequeued and not any(self._ready(c) for c in self.buffer.queue):
                return
            self.wake()
            await self._wait(self._done, 1.0)

    # -- loops ------------------------------------------------------------------------------------
    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _next_time(self, chunk: Chunk) -> float:
        state = self.retries.get(chunk.id)
        return max(state.next_time if state else 0.0, self.paused_until)

    def _ready(self, chunk: Chunk) -> bool:
        # A chunk whose fsync is in flight waits: written and purged before the emit that filled it
        # settles, a kill -9 would leave neither the chunk (with its checkpoint) nor the input's
        # moved position, and the input would read delivered lines again. The emit wakes us after.
        return not chunk.syncing and self._next_time(chunk) <= self.clock() / NS_PER_SEC

    async def _flush_loop(self) -> None:
        interval = self.settings.flush_thread_interval
        while self.running:
            chunk = self.buffer.dequeue(self._ready)
            if chunk is None:
                # Nothing queued: sleep until a chunk is queued (buffer.on_change wakes us), not every
                # flush_thread_interval as Fluentd's threads poll - an idle sidecar wakes less often.
                # chunks still fsyncing are left out: their emit wakes us once the sync is done
                waiting = [c for c in self.buffer.queue if not c.syncing]
                wait = interval if self.buffer.queue else IDLE_WAIT
                if waiting:
                    soonest = min(self._next_time(c) for c in waiting)
                    wait = max(0.001, min(interval, soonest - self.clock() / NS_PER_SEC))
                await self._wait(self._wake, wait)
                continue
            await self.flush_one(chunk)

    def enqueue_due(self) -> None:
        """Queue staged chunks whose time came (Fluentd output.rb enqueue_thread_run, one pass)."""
        now = self.clock() // NS_PER_SEC
        s = self.settings
        if s.flush_mode == "interval":
            interval_ns = int(s.flush_interval) * NS_PER_SEC
            now_ns = now * NS_PER_SEC
            self.buffer.enqueue_all(lambda m, c: c.created_at + interval_ns <= now_ns)
        if s.keys.time and s.timekey:
            unit = int(s.timekey)
            current = now - now % unit
            wait = s.timekey_wait
            self.buffer.enqueue_all(lambda m, c: m.timekey is not None and m.timekey < current
                                    and m.timekey + unit + wait <= now)

    async def _enqueue_loop(self) -> None:
        s = self.settings
        value = s.flush_interval if s.flush_mode == "interval" else None
        if s.keys.time and s.timekey and (value is None or s.timekey < value):
            value = min(s.timekey, s.timekey_wait)
        interval = max((value or s.flush_thread_interval) / 11.0, s.flush_thread_interval)
        while self.running:
            try:
                self.enqueue_due()
            except Exception as exc:  # a timer bug must not stop flushing
                self.log.error("unexpected error while checking flushed chunks. ignored.", error=exc)
            if self.buffer.stage:
                await self._wait_stop(interval)
            else:
                # Nothing staged, so nothing can come due: sleep until a chunk is staged (an idle
                # sidecar then has no timer here; Fluentd's enqueue thread polls every interval).
                await self._wait(self._staged, IDLE_WAIT)

    async def _wait_stop(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    # -- one chunk --------------------------------------------------------------------------------
    async def flush_one(self, chunk: Chunk) -> None:
        state = self.retries.get(chunk.id)
        use_secondary = self.secondary is not None and state is not None and state.secondary()
        target = self.secondary if use_secondary else self.output
        self.write_count += 1
        try:
            await target.write(chunk)
        except asyncio.CancelledError:
            self.buffer.takeback(chunk)
            raise
        except UNRECOVERABLE as exc:
            await self._unrecoverable(chunk, exc, use_secondary)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) and chunk.file_gone():
                self._file_gone(chunk, exc)
            elif self._failed(chunk, exc, use_secondary):
                await self._dead_letter(chunk, exc)
        else:
            self.retries.pop(chunk.id, None)
            self.buffer.purge(chunk)
        finally:
            self._done.set()

    def _failed(self, chunk: Chunk, exc: Exception, using_secondary: bool) -> bool:
        """Schedule the retry; True when retries are exhausted (the caller moves the chunk aside)."""
        self.num_errors += 1
        self.rollback_count += 1
        self.log.debug("taking back chunk for errors.", chunk=chunk.id)
        state = self.retries.get(chunk.id)
        if state is None or (isinstance(exc, RetryableError) and exc.progress):
            state = self.retries[chunk.id] = retry_state_from(
                self.settings, clock=self.clock, rand=self.rand, secondary=self.secondary is not None)
        else:
            state.step()
        if state.limit():
            self.log.error("Hit limit for retries. moving this chunk aside (the rest of the queue is kept).",
                           retry_times=state.steps, records=chunk.record_count, chunk=chunk.id, error=exc)
            self.retries.pop(chunk.id, None)
            return True
        self.buffer.takeback(chunk)
        if isinstance(exc, RetryableError) and exc.slow_down:
            self.paused_until = max(self.paused_until, state.next_time)
        msg = "failed to flush the buffer with secondary output." if using_secondary else "failed to flush the buffer."
        self.log.warn(msg, retry_times=state.steps, next_retry_time=_fmt_time(state.next_time),
                      chunk=chunk.id, error=exc)
        return False

    def _file_gone(self, chunk: Chunk, exc: Exception) -> None:
        """A chunk whose file was removed under kawa: no retry can send it, and retrying would
        warn about it for the whole retry_timeout (72 h by default). Counted, logged, dropped."""
        self.num_errors += 1
        self.retries.pop(chunk.id, None)
        self.lost_records += chunk.record_count
        self.log.error("the buffer chunk's file is gone (removed outside kawa?): its records cannot be sent "
                       "and are dropped", chunk=chunk.id, records=chunk.record_count, error=exc)
        self.buffer.purge(chunk)

    async def _unrecoverable(self, chunk: Chunk, exc: BaseException, using_secondary: bool) -> None:
        self.num_errors += 1
        self.retries.pop(chunk.id, None)
        if self.secondary is not None and not using_secondary and type(self.secondary) is not type(self.output):
            self.log.warn("got unrecoverable error in primary. Skip retry and flush chunk to secondary", error=exc)
            try:
                await self.secondary.write(chunk)
            except Exception as exc2:
                self.log.warn("got an error in secondary for unrecoverable error", error=exc2)
            else:
                self.buffer.purge(chunk)
                return
        elif using_secondary:
            self.log.warn("got unrecoverable error in secondary.", error=exc)
        else:
            self.log.warn("got unrecoverable error in primary and no secondary", error=exc)
        await self._dead_letter(chunk, exc)

    async def _dead_letter(self, chunk: Chunk, exc: BaseException) -> None:
        """Fluentd buffer.rb backup: <root_dir>/backup/worker<N>/<plugin_id>/<chunk_id>.log (+ .meta.json)."""
        try:
            if self.settings.disable_chunk_backup:
                self.log.warn(f"disable_chunk_backup is true. {chunk.id} chunk is thrown away")
            else:
                path = self.backup_path(chunk)
                self.log.warn(f"bad chunk is moved to {path}")
                await asyncio.to_thread(self._write_backup, path, chunk, repr(exc))
                self.dead_lettered += 1
        except OSError as err:
            # the chunk stays in the buffer rather than being lost; retried from the start
            self.log.error("could not write the dead-letter file; chunk kept", chunk=chunk.id, error=err)
            self.buffer.takeback(chunk)
            return
        self.buffer.purge(chunk)

    def backup_path(self, chunk: Chunk) -> str:
        safe_id = _UNSAFE_ID.sub("_", self.output.plugin_id)
        worker = getattr(self.output.ctx, "worker_id", 0)
        return os.path.join(self.backup_base, "backup", f"worker{worker}", safe_id, f"{chunk.id}.log")

    @staticmethod
    def _write_backup(path: str, chunk: Chunk, reason: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab") as f:
            f.write(chunk.read())
        meta = {"tag": chunk.metadata.tag, "timekey": chunk.metadata.timekey, "variables": chunk.metadata.variables,
                "records": chunk.record_count, "formatted": chunk.formatted, "reason": reason}
        with open(path + ".meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, default=str)
