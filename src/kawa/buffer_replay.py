"""`kawa buffer replay`: push the records of leftover chunks and dead letters through a config's outputs
again, chunk by chunk, undoing what a failed chunk left behind (see docs/buffer-tools.md)."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from kawa.buffer_tool import ChunkInfo, iter_events

REPLAY_BATCH = 1000       # events per router.emit: big chunks do not become one huge batch


class Progress:
    """`[#####.....] 3/10 chunks, 1200 records` on stderr, redrawn in place with \\r."""

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream, self.total = stream, total

    def update(self, done: int, records: int) -> None:
        filled = self.WIDTH * done // max(self.total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{self.total} chunks, "
                          f"{records} records")
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")


class _Probe:
    id = "probe"          # Flusher.backup_path only needs a chunk id to name the dead-letter directory


def _listdir(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


class _Watch:
    """One buffered output around one replayed chunk: what the replay left in its buffer or dead letters."""

    def __init__(self, output: Any) -> None:
        self.output = output
        self.before = {c.id for c in output.buffer.chunks()}
        self.backup_dir = os.path.dirname(output.flusher.backup_path(_Probe))
        self.backups = _listdir(self.backup_dir)

    def leftovers(self) -> list[Any]:
        return [c for c in self.output.buffer.chunks() if c.id not in self.before]

    def new_backups(self) -> list[str]:
        return sorted(_listdir(self.backup_dir) - self.backups)

    def undo(self) -> None:
        """The chunk stays where it was, so its copies in this output (queued for retry, or moved to
        the dead-letter directory) go: a later replay or restart must not deliver them twice."""
        buffer = self.output.buffer
        for chunk in self.leftovers():
            self.output.flusher.retries.pop(chunk.id, None)
            for meta, staged in list(buffer.stage.items()):
                if staged is chunk:
                    del buffer.stage[meta]
                    buffer.stage_size -= chunk.bytesize
            buffer.purge(chunk)
        for name in self.new_backups():
            os.unlink(os.path.join(self.backup_dir, name))


async def _replay_one(info: ChunkInfo, tag: str, pipeline: Any, outputs: list[Any]) -> str | None:
    """Emit the chunk's records through the root label and flush; None when every output took them."""
    from kawa.engine.router import ROOT_LABEL

    watches = [_Watch(o) for o in outputs]
    counters = pipeline.router.counters
    unmatched = counters["unmatched_records"]
    reason: str | None = None
    try:
        events = list(iter_events(info))
        for start in range(0, len(events), REPLAY_BATCH):
            await pipeline.router.emit(ROOT_LABEL, tag, events[start:start + REPLAY_BATCH])
        if counters["unmatched_records"] != unmatched:
            reason = f"no <match> for tag {tag!r}"
        else:
            for output in outputs:
                await output.flush()
            reason = next((f"output {w.output.plugin_id} did not write it" for w in watches
                           if w.leftovers() or w.new_backups()), None)
    except Exception as exc:  # any failure of any plugin: the chunk stays, the next one is tried
        reason = f"{type(exc).__name__}: {exc}"
    if reason is not None:
        for watch in watches:
            watch.undo()
    return reason


def _not_replayable(info: ChunkInfo, tag: str | None) -> str | None:
    if info.formatted:
        return "holds text formatted by the output, not events"
    if tag is None:
        return "has no tag (buffer without the tag chunk key): pass --tag"
    if info.records == 0:
        return "has no readable record"
    return None


def _buffer_dirs(plugins: list[Any]) -> dict[str, str]:
    dirs = {}
    for plugin in plugins:
        pattern = getattr(getattr(plugin, "buffer", None), "pattern", None)
        if pattern:
            dirs[os.path.realpath(os.path.dirname(pattern))] = plugin.plugin_id
    return dirs


async def replay(args: argparse.Namespace, chunks: list[ChunkInfo], out: TextIO, err: TextIO) -> int:
    from kawa.buffer.output import BufferedOutput
    from kawa.config.parser import parse_config_file
    from kawa.engine.match import compile_pattern
    from kawa.engine.pipeline import PipelineBuilder
    from kawa.errors import ConfigError
    from kawa.log import LogSink, Logger

    log = Logger(LogSink(err, level="info" if args.verbose else "warn"))
    try:
        pipeline = PipelineBuilder(parse_config_file(args.config), log, dry_run=args.dry_run).build()
    except ConfigError as exc:
        for problem in exc.problems:
            err.write(f"kawa buffer: {problem}\n")
        return 2
    owned = _buffer_dirs(pipeline.plugins)
    for info in chunks:
        owner = owned.get(os.path.realpath(os.path.dirname(info.path)))
        if owner is not None:
            err.write(f"kawa buffer: {info.path} is in the buffer of output {owner} of {args.config}; "
                      "starting kawa with that config resumes it\n")
            return 2
    pattern = compile_pattern(args.match) if args.match else None
    selected = [c for c in chunks if pattern is None or (c.tag is not None and pattern.match(c.tag))]
    skipped = len(chunks) - len(selected)
    outputs = [p for p in pipeline.plugins if isinstance(p, BufferedOutput)]
    failed = replayed_chunks = replayed_records = 0
    progress = Progress(err, len(selected))
    if not args.dry_run:
        for output in pipeline.outputs:
            await output.start()
        for filt in pipeline.filters:
            await filt.start()
    try:
        for done, info in enumerate(selected, 1):
            tag = info.tag if info.tag is not None else args.tag
            reason = _not_replayable(info, tag)
            if reason is None and args.dry_run:
                route = pipeline.router.labels[""].route(tag)
                target = route.output.plugin_id if route.output is not None else "nothing (no <match>)"
                out.write(f"would replay {info.path}: {info.records} records, tag {tag} -> {target}\n")
            elif reason is None:
                reason = await _replay_one(info, tag, pipeline, outputs)  # type: ignore[arg-type]
            if reason is not None:
                failed += 1
                err.write(f"\rchunk {info.path} {reason}; left in place\n")
            else:
                replayed_chunks += 1
                replayed_records += info.records
                if not args.dry_run and not args.keep:
                    _remove(info)
            progress.update(done, replayed_records)
        progress.finish()
    finally:
        if not args.dry_run:
            for plugin in [*pipeline.filters, *pipeline.outputs]:
                try:
                    await plugin.stop()
                except Exception as exc:  # one plugin failing to stop must not hide the summary
                    err.write(f"kawa buffer: {plugin.plugin_id} failed to stop: {exc}\n")
    verb = "would replay" if args.dry_run else "replayed"
    if skipped:
        out.write(f"{skipped} chunks skipped (tag does not match {args.match})\n")
    out.write(f"{verb} {replayed_records} records from {replayed_chunks} chunks; "
              f"{failed} chunks failed, left in place\n")
    return 1 if failed else 0


def _remove(info: ChunkInfo) -> None:
    """Delete a replayed chunk; a damaged one is kept as `<name>.damaged` for its unreadable bytes."""
    if info.damaged:
        os.replace(info.path, info.path + ".damaged")
    else:
        os.unlink(info.path)
    for path in info.companions:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
