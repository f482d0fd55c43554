"""`@type cloudwatch_logs`: fluent-plugin-cloudwatch-logs' options and record handling, without its
losses (discard after throttling, missing group skipped) and duplicates (whole-chunk resend).
"""

from __future__ import annotations

import asyncio
import os
from sys import getsizeof
from concurrent.futures import ThreadPoolExecutor
from itertools import compress, repeat
from operator import floordiv, itemgetter
from typing import Any, Callable, Iterator

import msgpack
import orjson

from kawa.buffer.chunk import HeldFrames, frame_lists, iter_frames
from kawa.buffer.output import BufferedOutput
from kawa.engine.registry import register
from kawa.errors import ConfigError, RetryableError
from kawa.event import Event, StrValueEvents
from kawa.plugins.inject import Injector
from kawa.plugins.outputs.cloudwatch_logs import batcher
from kawa.plugins.outputs.cloudwatch_logs.journal import SentJournal
from kawa.plugins.outputs.cloudwatch_logs.sender import Delivery
from kawa.plugins.outputs.cloudwatch_logs.messages import (
    NS_PER_MS, ChunkRecords, MessageBuilder, Plan, pack_frames, plan_destination, plan_in_order)
from kawa.plugins.outputs.cloudwatch_logs.names import BoundedCache, Destinations, NameFixer
from kawa.plugins.outputs.cloudwatch_logs.options import RETENTION_DAYS, CloudwatchLogsOptions
from kawa.plugins.outputs.cloudwatch_logs.progress import ProgressStore
from kawa.plugins.outputs.cloudwatch_logs.resume import JournalKeeper

# Ruby plugin configure(): exactly one source for each name (presence in the config counts).
GROUP_SOURCES = ("log_group_name", "use_tag_as_group", "log_group_name_key")
STREAM_SOURCES = ("log_stream_name", "use_tag_as_stream", "log_stream_name_key")
MISSING_NAME_KEY = "\0missing-name"      # progress key for records without a group/stream name
# Progress entries kept before pruning those of chunks that left the buffer (dead-lettered, dropped).
PROGRESS_PRUNE_AT = 256
# Memory a held event takes beyond its message str (HeldFrames' size): its time (an int of 32 bytes)
# and two list slots. The tag's length is counted per event too, as packed frames repeat it.
HELD_EVENT_OVERHEAD = 48


@register("output", "cloudwatch_logs")
class CloudwatchLogsOutput(BufferedOutput):
    """Buffered CloudWatch Logs output; see docs of every option in CloudwatchLogsOptions.

    IAM: logs:PutLogEvents (plus logs:CreateLogGroup, logs:CreateLogStream, logs:PutRetentionPolicy
    when creating). Optional: logs:GetLogEvents. With a file buffer, a PutLogEvents call whose answer
    was lost (kill -9 or a dropped connection mid-call) is read back from the stream before it is
    resent (verify.py), so it is neither doubled nor lost; without logs:GetLogEvents (or when the read
    fails) it is resent with a warning that its events may be duplicated (stats inflight_unverified).
    Memory buffers verify after a lost connection too; across a kill -9 the sent journal (journal.py,
    next to the tail pos_file or under root_dir) tells the restarted output which re-read events
    CloudWatch Logs already holds, so they are not sent twice.
    """

    Options = CloudwatchLogsOptions
    compat_sections = ("buffer", "inject")

    def __init__(self, options: CloudwatchLogsOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        o = options
        given = set(o._element.attrs) if o._element is not None else set()
        problems = []
        if sum(k in given for k in GROUP_SOURCES) != 1:
            problems.append("Set only one of log_group_name, use_tag_as_group and log_group_name_key")
        if sum(k in given for k in STREAM_SOURCES) != 1:
            problems.append("Set only one of log_stream_name, use_tag_as_stream and log_stream_name_key")
        if {"log_group_aws_tags", "log_group_aws_tags_key"} <= given:
            problems.append("Set only one of log_group_aws_tags, log_group_aws_tags_key")
        if {"retention_in_days", "retention_in_days_key"} <= given:
            problems.append("Set only one of retention_in_days, retention_in_days_key")
        if problems:
            raise ConfigError(problems)
        self.max_events = o.max_events_per_batch
        if self.max_events > batcher.MAX_BATCH_EVENTS:
            self.log.warn(f"max_events_per_batch {self.max_events} is above CloudWatch Logs' limit; "
                          f"using {batcher.MAX_BATCH_EVENTS}")
            self.max_events = batcher.MAX_BATCH_EVENTS
        self.auto_create_group = o.auto_create_stream if o.auto_create_group is None else o.auto_create_group
        self.injector = Injector(o.inject, self.log, ctx.worker_id)
        if o.include_time_key and o.inject is not None and o.inject._element is not None \
                and "time_type" not in o.inject._element.attrs:
            # Fluentd compat_parameters: include_time_key injects the time as a string.
            self.injector = Injector(_with(o.inject, time_type="string"), self.log, ctx.worker_id)
        formatter: Callable[[str, int, dict[str, Any]], str] | None = None
        if o.format is not None:
            formatter = self.build_child(o.format, "format").format  # type: ignore[attr-defined]
        remove = []
        if o.log_group_aws_tags_key and o.remove_log_group_aws_tags_key:
            remove.append(o.log_group_aws_tags_key)
        if o.retention_in_days_key and o.remove_retention_in_days_key:
            remove.append(o.retention_in_days_key)
        self.builder = MessageBuilder(message_keys=o.message_keys, formatter=formatter,
                                      max_message_length=o.max_message_length, remove_keys=tuple(remove))
        self.fixer = NameFixer(lambda msg: self.log.warn(msg))
        self.destinations = Destinations(
            use_tag_as_group=o.use_tag_as_group, log_group_name_key=o.log_group_name_key,
            remove_group_key=o.remove_log_group_name_key, use_tag_as_stream=o.use_tag_as_stream,
            log_stream_name_key=o.log_stream_name_key, remove_stream_key=o.remove_log_stream_name_key,
            fixer=self.fixer)
        self.copy_records = bool(o.remove_log_group_name_key or o.remove_log_stream_name_key or remove)
        # Messages are built once, at emit, and the chunk holds their text, when nothing about the
        # destination depends on the record: saves packing each record into the chunk, unpacking it
        # again and building then (~8 of ~14 µs per event). Records needed for @ERROR come back
        # from the text (see _error_records).
        self.prebuild = not (o.log_group_name_key or o.log_stream_name_key or o.retention_in_days_key
                             or o.log_group_aws_tags_key or remove)
        self.progress = ProgressStore(self._progress_dir())
        self.retention: BoundedCache[str, int] = BoundedCache()   # groups we created, with their retention
        self.known_streams: BoundedCache[tuple[str, str], bool] = BoundedCache()
        self.counters: dict[str, int] = dict.fromkeys((
            "events_sent", "batches_sent", "rejected_too_old", "rejected_too_new", "rejected_expired",
            "window_too_old", "window_too_new", "window_expired", "invalid_batches", "invalid_events",
            "truncated", "split", "empty_skipped", "missing_name", "groups_created", "streams_created",
            "throttled", "failed_calls", "inflight_found", "inflight_found_events", "inflight_missing",
            "inflight_unverified", "inflight_unverified_events", "resent_skipped", "leftovers_expired"), 0)
        self._packer = _new_packer()
        self.delivery: Delivery | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.resume = JournalKeeper(self)       # memory buffers across kill -9 (resume.py, journal.py)

    # -- buffer side ----------------------------------------------------------------------------
    def _progress_dir(self) -> str | None:
        """Next to a persistent buffer's files (durable progress), else memory only."""
        if not self.buffer.persistent:
            return None
        path = getattr(self.buffer.options, "path", None)
        if path:
            base = path if os.path.isdir(path) or "*" not in os.path.basename(path) and not \
                os.path.splitext(path)[1] else os.path.dirname(path)
        else:
            base = os.path.join(getattr(self.ctx.system, "root_dir", None) or "/tmp/fluent", self.plugin_id)
        return os.path.join(base, "cloudwatch_logs_progress")

    def format_events(self, tag: str, events: list[Event]) -> bytes:
        """Like the Ruby plugin's format(): inject, then msgpack [tag, time, record] (tag per event);
        with `prebuild`, [tag, time, message text] instead."""
        events = self.injector.inject_batch(tag, events)
        pack = self._packer.pack
        if not self.prebuild:
            return b"".join([pack((tag, t, r)) for t, r in events])
        times = list(map(itemgetter(0), events))
        messages = self.builder.build_batch(tag, times, list(map(itemgetter(1), events)),
                                            str_values=type(events) is StrValueEvents)
        if messages is not None:
            if "" in messages:
                kept = list(map(bool, messages))
                for _ in range(kept.count(False)):
                    self._empty_message()
                times, messages = list(compress(times, kept)), list(compress(messages, kept))
            # kept as objects by a memory buffer (read back by _plan_held), packed by any other;
            # sized as the memory they take, so the buffer's byte limits bound the process's memory
            size = sum(map(getsizeof, messages)) + len(messages) * (len(tag) + HELD_EVENT_OVERHEAD)
            return HeldFrames((tag, times, messages), size, _pack_held)  # type: ignore[return-value]
        build = self.builder.build
        out = []
        for t, r in events:
            if not isinstance(r, dict):
                self.log.limited("cwl.nil_record", "warn", f"record is nil (tag={tag})")
                continue
            message = build(tag, t, r)
            if not message:
                self._empty_message()
                continue
            out.append(pack((tag, t, message)))
        return b"".join(out)

    def _empty_message(self) -> None:
        self.counters["empty_skipped"] += 1
        self.log.limited("cwl.empty", "warn", "Within specified message_key(s): "
                         f"({','.join(self.options.message_keys)}) do not have non-empty record. Skip.")

    def _error_records(self, chunk: Any) -> Iterator[tuple[str, int, Any]]:
        """The chunk's records for @ERROR: a message built at emit goes back to its record (the
        message JSON), or {"message": text} when it is not JSON (message_keys, <format>)."""
        for tag, t, r in self._iter_chunk(chunk):
            yield tag, t, (_record_of_message(r) if r.__class__ is str else r)

    def chunk_events(self, chunk: Any) -> Iterator[tuple[int, Any]]:
        """For <secondary> secondary_file: the chunk's events as records (messages parsed back)."""
        return ((t, r) for _tag, t, r in self._error_records(chunk))

    def _iter_chunk(self, chunk: Any) -> Iterator[tuple[str, int, Any]]:
        if not chunk.formatted:   # a chunk of plain [time, record] frames (other writer): tag from metadata
            tag = chunk.metadata.tag or ""
            for t, r in chunk.events():
                yield tag, t, r
            return
        # fed in slices: a gzip chunk (compress gzip) can be bigger decompressed than one feed allows
        for item in iter_frames(chunk.read_pieces()):
            if len(item) == 3:
                yield item[0], item[1], item[2]
            else:
                yield chunk.metadata.tag or "", item[0], item[1]

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        self.progress.prune(c.id for c in self.buffer.chunks())
        if not self.buffer.persistent and self.options.sent_journal and not self.ctx.dry_run:
            await self.resume.open()

    async def stop(self) -> None:
        await super().stop()
        self.progress.sweep(c.id for c in self.buffer.chunks())
        self.resume.close()
        if self.delivery is not None:
            self.delivery.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _ensure_delivery(self) -> Delivery:
        if self.delivery is None or self.delivery.stale:
            if self._executor is None:
                workers = self.options.concurrency * self.buffer_settings.flush_thread_count + 1
                self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"{self.plugin_id}.cwl")
            old = self.delivery
            self.delivery = await asyncio.to_thread(Delivery.connect, self, self._executor)
            if old is not None:
                old.close()
        return self.delivery

    # -- writing --------------------------------------------------------------------------------
    async def write(self, chunk: Any) -> None:
        delivery = await self._ensure_delivery()
        self.progress.sweep(c.id for c in self.buffer.chunks())
        if len(self.progress) > PROGRESS_PRUNE_AT:
            self.progress.prune([c.id for c in self.buffer.chunks()] + [chunk.id])
        progress = self.progress.load(chunk.id)
        plans, missing = await asyncio.to_thread(self._plan_chunk, chunk)
        if missing:
            self._route_missing(progress, missing)
        if not progress.reported:
            await self.resume.before_first_send(delivery, chunk, plans, progress)
            self._report_changes(plans)
            progress.reported = True
        done_before = progress.done_total()
        failures = await delivery.send_all(plans, progress)
        if failures:
            throttled = any(f.slow_down for f in failures)
            text = "; ".join(dict.fromkeys(f.message for f in failures))
            raise RetryableError(f"CloudWatch Logs: {text}", slow_down=throttled,
                                 progress=progress.done_total() > done_before)
        self.progress.retire(chunk.id)
        self.resume.chunk_written(chunk)

    @property
    def journal(self) -> SentJournal | None:
        """The sent journal the sender writes to (memory buffers with a place to keep it), or None."""
        return self.resume.journal

    def note_call(self, chunk_id: str, jid: int) -> None:
        self.resume.note_call(chunk_id, jid)

    def _plan_chunk(self, chunk: Any) -> tuple[list[Plan], list[tuple[int, str, int, Any, str]]]:
        """Group records by destination, build messages, sort and batch (runs in a worker thread)."""
        o = self.options
        group_tpl = self.extract_placeholders(o.log_group_name, chunk) if o.log_group_name else None
        stream_tpl = self.extract_placeholders(o.log_stream_name, chunk) if o.log_stream_name else None
        tags = o.log_group_aws_tags
        if tags:
            tags = {self.extract_placeholders(str(k), chunk): self.extract_placeholders(str(v), chunk)
                    for k, v in tags.items()}
        plans: dict[tuple[str, str], Plan] = {}
        pending: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
        missing: list[tuple[int, str, int, Any, str]] = []
        resolve = self.destinations.resolve
        per_record = self.destinations.per_record
        if self.prebuild and chunk.formatted and not per_record:
            held = chunk.held()
            plan = (self._plan_prebuilt(chunk, group_tpl, stream_tpl, tags) if held is None
                    else self._plan_held(chunk, held, group_tpl, stream_tpl, tags))
            if plan is not None:
                return [plan], []
        build = self.builder.build
        copy = self.copy_records
        fixed: tuple[str | None, str | None] | None = None
        for idx, (tag, time_ns, record) in enumerate(self._iter_chunk(chunk)):
            prebuilt = record.__class__ is str            # the message, built at emit (format_events)
            if not prebuilt and not isinstance(record, dict):
                self.log.limited("cwl.nil_record", "warn", f"record is nil (tag={tag})")
                continue
            original = record if prebuilt else dict(record) if copy else record
            if per_record or fixed is None:
                dest = resolve(tag, record, group_tpl, stream_tpl)
                if not per_record:
                    fixed = dest
            else:
                dest = fixed
            group, stream = dest
            if group is None or stream is None:
                what = "log group" if group is None else "log stream"
                if prebuilt:         # decoded only here: parsing every message back cost ~25% of planning
                    original = _record_of_message(record)
                missing.append((idx, tag, time_ns, original, f"{what} name is missing (group={group}, stream={stream})"))
                continue
            plan = plans.get(dest)  # type: ignore[arg-type]
            if plan is None:
                plan = plans[dest] = self._new_plan(chunk, group, stream,  # type: ignore[index]
                                                    {} if prebuilt else record, tags)
                pending[dest] = []  # type: ignore[index]
            rec_index = plan.records.add(idx)  # type: ignore[union-attr]
            message = record if prebuilt else build(tag, time_ns, record)
            if not message:
                self._empty_message()
                continue
            pending[dest].append((time_ns // NS_PER_MS, message, rec_index))  # type: ignore[index]
        for dest, plan in plans.items():
            plan_destination(plan, pending[dest], max_events=self.max_events, oversize=o.oversize_policy)
        return list(plans.values()), missing

    def _plan_prebuilt(self, chunk: Any, group_tpl: str | None, stream_tpl: str | None,
                       tags: dict[str, str] | None) -> Plan | None:
        """_plan_chunk for the usual chunk: every event a [tag, time, message] frame built at emit, one
        destination for all. A slice of frames at a time in C (map) instead of a Python step per
        event. None for anything else (a frame without its tag, an empty message, a name missing):
        _plan_chunk's loop handles those, with their warnings."""
        tag = None
        times_ms: list[int] = []
        messages: list[str] = []
        for frames in frame_lists(chunk.read_pieces()):
            if set(map(len, frames)) != {3}:
                return None
            texts = list(map(itemgetter(2), frames))
            if set(map(type, texts)) != {str} or "" in texts:
                return None
            tag = frames[0][0] if tag is None else tag
            times_ms.extend(map(floordiv, map(itemgetter(1), frames), repeat(NS_PER_MS)))
            messages.extend(texts)
        return self._plan_columns(chunk, tag, times_ms, messages, group_tpl, stream_tpl, tags)

    def _plan_held(self, chunk: Any, held: list[HeldFrames], group_tpl: str | None, stream_tpl: str | None,
                   tags: dict[str, str] | None) -> Plan | None:
        """_plan_prebuilt for a memory chunk of HeldFrames: the (tag, times, messages) columns that
        format_events built, without packing them at emit and unpacking them here (messages there
        are never empty: format_events dropped those)."""
        times_ms: list[int] = []
        messages: list[str] = []
        for frames in held:
            _, times, texts = frames.columns
            times_ms.extend(map(floordiv, times, repeat(NS_PER_MS)))
            messages.extend(texts)
        return self._plan_columns(chunk, held[0].columns[0], times_ms, messages, group_tpl, stream_tpl, tags)

    def _plan_columns(self, chunk: Any, tag: str | None, times_ms: list[int], messages: list[str],
                      group_tpl: str | None, stream_tpl: str | None, tags: dict[str, str] | None) -> Plan | None:
        """The one plan of a chunk whose every event is a non-empty message for one destination, given
        as columns; the record index is the position. None when there is no event or a name is
        missing (_plan_chunk's loop reports those)."""
        if not messages:
            return None
        group, stream = self.destinations.resolve(tag or "", {}, group_tpl, stream_tpl)
        if group is None or stream is None:
            return None
        plan = self._new_plan(chunk, group, stream, {}, tags)
        plan.records.add_range(0, len(messages))  # type: ignore[union-attr]
        plan_in_order(plan, times_ms, messages, max_events=self.max_events, oversize=self.options.oversize_policy)
        return plan

    def _new_plan(self, chunk: Any, group: str, stream: str, record: dict[str, Any], tags: Any) -> Plan:
        # records are read again from the chunk only if one must go to @ERROR: holding the decoded
        # chunk while it is sent cost ~26 MiB per 8 MiB chunk (tracemalloc)
        plan = Plan(group, stream, records=ChunkRecords(lambda: self._error_records(chunk)))
        plan.tags, plan.retention = self._group_settings(record, tags)
        return plan

    def _group_settings(self, record: dict[str, Any], tags: Any) -> tuple[Any, int | None]:
        """Tags and retention for a group this chunk may create, from its first record (Ruby)."""
        o = self.options
        if o.log_group_aws_tags_key:
            tags = record.get(o.log_group_aws_tags_key)
            tags = tags if isinstance(tags, dict) else None
        retention = o.retention_in_days
        if o.retention_in_days_key:
            raw = record.get(o.retention_in_days_key)
            try:
                retention = int(raw) if raw is not None else None
            except (TypeError, ValueError):
                retention = None
            if retention is not None and retention not in RETENTION_DAYS:
                self.log.limited("cwl.retention", "warn", f"retention_in_days {raw!r} from the record is not "
                                 "accepted by CloudWatch Logs; the group is created without retention")
                retention = None
        return tags, retention

    def _route_missing(self, progress: Any, missing: list[tuple[int, str, int, Any, str]]) -> None:
        """Records without a group or stream name go to @ERROR (the Ruby plugin skips them silently)."""
        for idx, tag, time_ns, record, reason in missing:
            if progress.remaining(MISSING_NAME_KEY, idx, idx + 1):
                self.counters["missing_name"] += 1
                self.log.limited("cwl.missing_name", "warn", f"record routed to @ERROR: {reason}", tag=tag)
                self.emit_error(tag, time_ns, record, reason)
                progress.mark(MISSING_NAME_KEY, idx, idx + 1)

    def _report_changes(self, plans: list[Plan]) -> None:
        for plan in plans:
            r = plan.result
            if r is None:
                continue
            if r.truncated:
                self.counters["truncated"] += r.truncated
                self.log.warn(f"{r.truncated} log events over {batcher.MAX_MESSAGE_BYTES} bytes were truncated",
                              group=plan.group, stream=plan.stream)
            if r.split:
                self.counters["split"] += r.split
                self.log.warn(f"{r.split} log events over {batcher.MAX_MESSAGE_BYTES} bytes were split into "
                              f"{r.split + r.split_extra} events", group=plan.group, stream=plan.stream)

    def emit_error(self, tag: str, time_ns: int, record: Any, reason: str) -> None:
        if self.ctx.emitter is not None:
            self.ctx.emitter.emit_error_event(tag, time_ns, record, reason)
        else:
            self.log.warn("dump an error event", error=reason, tag=tag)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), **self.counters, "names_fixed": self.fixer.fixed,
                "known_streams": len(self.known_streams)}


def _pack_held(columns: tuple[str, list[int], list[str]]) -> bytes:
    """The msgpack frames of HeldFrames columns, as format_events packs them for a buffer of bytes."""
    tag, times, messages = columns
    return pack_frames(_new_packer().pack, tag, times, messages)   # a Packer of its own: any thread may read


def _new_packer() -> msgpack.Packer:
    """How this output packs its frames (Ruby's msgpack keeps invalid UTF-8: surrogateescape)."""
    return msgpack.Packer(unicode_errors="surrogateescape", default=str)


def _record_of_message(message: str) -> dict[str, Any]:
    try:
        record = orjson.loads(message)
    except orjson.JSONDecodeError:
        return {"message": message}
    return record if isinstance(record, dict) else {"message": message}


def _with(options: Any, **changes: Any) -> Any:
    clone = type(options).__new__(type(options))
    clone.__dict__.update(options.__dict__)
    clone.__dict__.update(changes)
    return clone


def check_aws(plugin: CloudwatchLogsOutput) -> list[str]:
    """`kawa --dry-run --check-aws`: credentials resolve (sts:GetCallerIdentity) and the configured
    log groups exist or may be created. Blocking; returns problems (empty = all good)."""
    from kawa.plugins.outputs.cloudwatch_logs.sender import check

    return check(plugin)
