"""The `tail` input (Fluentd in_tail): follows files, survives rotation, resumes from a pos_file.
Option names, defaults, pos_file bytes and log lines are Fluentd's; the differences are on TailInput.
"""

from __future__ import annotations

import os
import time
from operator import itemgetter
from typing import Any

from kawa import delivery, state_lock
from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.log import ruby_inspect
from kawa.metrics import catalog as c
from kawa.plugins.base import Input, Parser
from kawa.plugins.inputs._tail import paths as tailpaths
from kawa.plugins.inputs._tail.follower import Follower
from kawa.plugins.inputs._tail.held_lines import HeldLines, Replay
from kawa.plugins.inputs._tail.offset_marks import OffsetMarks, rotated_key
from kawa.plugins.inputs._tail.position_file import MemoryPositionEntry, PositionFile
from kawa.plugins.inputs._tail.rotated_file import RotatedFiles
from kawa.plugins.inputs._tail.reader import make_decoder, python_codec, split_lines
from kawa.plugins.inputs._tail.scheduler import TailScheduler
from kawa.plugins.parsers._stateful import StatefulLineParser

# Fluentd in_tail: RESERVED_CHARS for path_delimiter; 1.18 IOHandler::BYTES_TO_READ (throttle floor).
RESERVED_DELIMITERS = ("/", "*", "%")
MIN_BYTES_PER_SECOND = 8192
_UNSUPPORTED_ENCODINGS = ("utf-16", "utf-32")


class GroupRuleOptions(Options):
    match = option({}, "hash", doc="Label matchers of the rule.")
    limit = option(-1, "integer", doc="Lines per rate_period.")


class GroupOptions(Options):
    pattern = option(None, "regexp", doc="Pattern extracting the group from the path.")
    rate_period = option(5, "time", doc="Period of the line limit.")
    rule = section(GroupRuleOptions, multi=True, doc="Line limit rules.")


@register("input", "tail")
class TailInput(Input):
    """Fluentd in_tail.

    Where kawa differs on purpose (Fluentd's behaviour loses or duplicates lines):
    - a rotated file is released after rotate_wait only once it is read to its end and every line
      was accepted, even under back-pressure (Fluentd lets go after rotate_wait when not throttled);
    - any emit error keeps the lines for a retry (Fluentd retries only on BufferOverflowError);
    - a glob that also matches the rotated name takes over the rotated file at its position
      instead of reading it again from its head (files are identified by device + inode);
    - with emit_unmatched_lines, unmatched records come after the parsed ones of the same batch;
    - at most max_open_files descriptors stay open; idle, fully read files are closed and reopened
      when they grow (a file rotated while closed is followed at its path; lines written to it
      between its close and its rotation are not read).
    - with a parser that joins lines (multiline, cri, docker) the pos_file never moves past the
      first line the parser still holds, and a stop with a pos_file does not flush held lines:
      the next start reads them again and joins them with what follows (Fluentd flushes them at
      shutdown and, after a crash, loses them). With several streams interleaved (cri stdout and
      stderr), lines of the other stream after the first held line are read twice after a restart;
    - a rotated file being read during rotate_wait is listed in `<pos_file>.kawa-rotated`, so a
      restart finishes it from its position (Fluentd forgets it);
    - the pos_file moves only when the lines before the position are safe (kawa.delivery tickets:
      stored in a file buffer, or delivered for a memory buffer or with at_least_once_from_source),
      so kill -9 loses no line; a resumed file buffer's chunk checkpoints let a restart skip lines
      already buffered (Fluentd saves the position as soon as the lines are read).
    Not supported (ConfigError): <group>, path_timezone, UTF-16/32 input.
    """

    compat_sections = ("parse",)

    class Options(Options):
        path = option(doc="The paths to read; several, separated by path_delimiter (globs allowed).")
        path_delimiter = option(",", doc="Separator of the paths in `path`.")
        glob_policy = option("backward_compatible", "enum",
                             choices=("backward_compatible", "extended", "always"),
                             doc="Which glob syntax `path` uses (only `*` by default).")
        tag = option(doc="Tag of the events; a `*` is replaced by the file path with '/' -> '.'.")
        exclude_path = option([], "array", doc="Paths (globs) never read.")
        rotate_wait = option(5, "time", doc="How long a rotated file is still read after rotation.")
        pos_file = option(None, doc="Where positions are saved to resume after a restart.")
        pos_file_compaction_interval = option(None, "time", doc="Compact the pos_file this often.")
        read_from_head = option(False, "bool", doc="Read new files from their start, not their end.")
        refresh_interval = option(60, "time", doc="How often the path list is expanded again.")
        read_lines_limit = option(1000, "integer", doc="Lines read per batch.")
        read_bytes_limit_per_second = option(-1, "size", doc="Bytes read per file per second (-1: no limit).")
        multiline_flush_interval = option(None, "time",
                                          doc="Emit a held unterminated last line after this long.")
        emit_unmatched_lines = option(False, "bool", doc="Emit lines the parser rejects as {unmatched_line}.")
        enable_watch_timer = option(True, "bool", doc="Look at every file each second as well (up to every "
                                                      "8 s while inotify has reported every change).")
        enable_stat_watcher = option(True, "bool", doc="Use inotify to follow changes.")
        encoding = option(None, doc="Encoding of the strings emitted.")
        from_encoding = option(None, doc="Encoding of the file (needs `encoding`).")
        path_key = option(None, doc="Add the file path to each record under this key.")
        open_on_every_update = option(False, "bool", doc="Open and close the file on every read.")
        limit_recently_modified = option(None, "time", doc="Only files modified this recently.")
        skip_refresh_on_startup = option(False, "bool", doc="Do not expand paths at startup.")
        ignore_repeated_permission_error = option(False, "bool", doc="Warn once about unreadable files.")
        path_timezone = option(None, doc="Time zone of strftime patterns in `path`.")
        follow_inodes = option(False, "bool", doc="Track files by inode instead of by name.")
        max_line_size = option(None, "size", doc="Longer lines are skipped with a warning.")
        # kawa's own: after a change notification, wait this long so that one read takes the lines of
        # many writes (nginx writes each line on its own). Each read costs a fixed ~3 ms with a file
        # buffer (chunk files, fsync, out_file write, unlink): at 1,000 lines/s, 0.05 s cost 7.6 % of
        # a core, 0.25 s 2.6 %, 0.5 s 2.0 % (/tmp measurement, this machine). 0 reads at once.
        notify_coalesce_interval = option(0.5, "time", doc="kawa: gather change notifications this long "
                                          "before reading (s); 0 reads at once.")
        # kawa's own: open descriptors kept at most; idle, fully read files beyond it are closed.
        max_open_files = option(256, "integer", doc="kawa: open file descriptors kept at most.")
        parse = section(plugin_kind="parser", required=True, doc="The parser of the lines.")
        group = section(GroupOptions, doc="Fluentd group watch (not supported by kawa).")

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        o = self.options
        self._configure_checks(o)
        self.paths = [p.strip() for p in o.path.split(o.path_delimiter) if p.strip()]
        self.paths = list(dict.fromkeys(self.paths))
        if not self.paths:
            raise ConfigError("tail: 'path' parameter is required on tail input")
        self.tag_parts = tailpaths.split_tag(o.tag)
        self.decoder = self._configure_encoding(o)
        if o.read_bytes_limit_per_second > 0 and o.read_bytes_limit_per_second < MIN_BYTES_PER_SECOND:
            self.log.warn(f"Should specify greater equal than {MIN_BYTES_PER_SECOND}. "
                          f"Use {MIN_BYTES_PER_SECOND} for read_bytes_limit_per_second")
            o.read_bytes_limit_per_second = MIN_BYTES_PER_SECOND
        if o.pos_file is None:
            self.log.warn("'pos_file PATH' parameter is not set to a 'tail' source.")
            self.log.warn("this parameter is highly recommended to save the position to resume tailing.")
        else:
            state_lock.claim_path(ctx, "pos_file", o.pos_file, self.plugin_id,
                                  "Other 'in_tail' plugin already use same pos_file path: plugin_id = {other}, "
                                  f"pos_file path = {o.pos_file}")
            if not ctx.dry_run:
                delivery.note_state_dir(os.path.dirname(os.path.abspath(o.pos_file)))
        self.parser: Parser = self.build_child(o.parse, "parse")  # type: ignore[assignment]
        # multiline, cri, docker: lines joined per file inside the parser (see parsers/_stateful.py)
        self.joining = self.parser if isinstance(self.parser, StatefulLineParser) else None
        self.pf: PositionFile | None = None
        self._pos_lock: str | None = None      # state_lock path held while the pos_file is open
        self.rotated: RotatedFiles | None = None
        self.marks: OffsetMarks | None = None
        self.held_lines: HeldLines | None = None
        self.scheduler: TailScheduler | None = None
        self.opened_files = self.closed_files = self.rotated_files = self.throttled = 0
        self.unmatched = self.invalid = 0
        self.emit_records = self.emit_size = self.read_lines = 0
        self.ignored_unreadable: set[str] = set()
        # which settlement of a delivery ticket lets the pos_file move (see kawa.delivery)
        self.settle_on_delivered = bool(getattr(ctx.system, "at_least_once_from_source", False))
        self._closing = False               # stopped, pos_file kept open for late settlements

    def _configure_checks(self, o: Any) -> None:
        if o.group is not None:
            raise ConfigError("tail: the <group> section (group watch) is not supported by kawa yet")
        if o.path_timezone is not None:
            raise ConfigError("tail: 'path_timezone' is not supported by kawa yet")
        if not o.enable_watch_timer and not o.enable_stat_watcher:
            raise ConfigError("either of enable_watch_timer or enable_stat_watcher must be true")
        if o.glob_policy == "always" and o.path_delimiter == ",":
            raise ConfigError('cannot use glob_policy as always with the default path_delimiter: `,"')
        if (o.glob_policy == "extended" and tailpaths._BRACES.search(o.path)
                and tailpaths.uses_glob(o.path, "extended")):
            raise ConfigError(f'cannot include curly braces with glob patterns in `{o.path}". '
                              "Use glob_policy always instead.")
        if o.path_delimiter in RESERVED_DELIMITERS:
            raise ConfigError(f"{', '.join(RESERVED_DELIMITERS)} are reserved words: {o.path_delimiter}")
        if o.follow_inodes and o.pos_file is None:
            raise ConfigError("Can't follow inodes without pos_file configuration parameter")
        if o.read_bytes_limit_per_second > 0 and not o.enable_watch_timer:
            raise ConfigError("Need to enable watch timer when using log throttling feature")
        if o.read_lines_limit <= 0:
            raise ConfigError("tail: read_lines_limit must be positive")

    def _configure_encoding(self, o: Any) -> Any:
        if o.encoding is None and o.from_encoding is not None:
            raise ConfigError("tail: 'from_encoding' parameter must be specified with 'encoding' parameter.")
        try:
            for name in (o.encoding, o.from_encoding):
                codec = python_codec(name) if name else None
                if codec and codec.startswith(_UNSUPPORTED_ENCODINGS):
                    raise ConfigError(f"tail: encoding {name} (not newline-delimited bytes) is not supported by kawa")
            if o.encoding and o.from_encoding and python_codec(o.encoding) == python_codec(o.from_encoding):
                self.log.warn("'encoding' and 'from_encoding' are same encoding. No effect")
            return make_decoder(o.encoding, o.from_encoding)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.scheduler is not None:
            return
        o = self.options
        if o.pos_file is not None:
            os.makedirs(os.path.dirname(os.path.abspath(o.pos_file)), exist_ok=True)
            # before the pos_file is read: another process on it would read the same lines
            self._pos_lock = state_lock.acquire(o.pos_file + state_lock.LOCK_SUFFIX, f"pos_file {o.pos_file}")
            self.pf = PositionFile(o.pos_file, o.follow_inodes, warn=self.log.warn)
            self.pf.load(self._existing_keys())
            self.rotated = RotatedFiles(o.pos_file)
            self.marks = OffsetMarks(o.pos_file)
            self.held_lines = HeldLines(o.pos_file)
        self.scheduler = TailScheduler(self)
        await self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        # Emits still unsettled (a memory buffer flushes at the outputs' stop, after the inputs')
        # save their positions when they settle; the files are closed after the last one.
        self._closing = True
        if not self._unsettled():
            self._close_positions()
        elif self.pf is not None:
            self.pf.sync()

    def _unsettled(self) -> bool:
        return self.scheduler is not None and any(f.unsettled for f in self.scheduler.all_followers())

    def _close_positions(self) -> None:
        self.save_marks()
        if self.pf is not None:
            self.pf.sync()
            self.pf.close()
            self.pf = None
        if self.rotated is not None:
            self.rotated.close()
            self.rotated = None
        if self.held_lines is not None:
            self.held_lines.close()
        if self._pos_lock is not None:
            state_lock.release(self._pos_lock)
            self._pos_lock = None

    def save_marks(self, *, missing_only: bool = False) -> None:
        """The offset marks of the files followed now (kawa's `.kawa-marks` beside the pos_file);
        `missing_only`: only for the files that have none yet."""
        if self.marks is None or self.scheduler is None:
            return
        followed = [(f.path, f.path, f.ino, f.pe.pos, f.fd) for f in self.scheduler.tails.values()]
        draining = [(rotated_key(f.dev, f.ino), getattr(f.pe, "current", None) or f.open_path or f.path,
                     f.ino, f.pe.pos, f.fd) for f in self.scheduler.draining]
        self.marks.save(followed + draining, missing_only=missing_only)

    def rewritten_while_stopped(self, path: str, st: os.stat_result, *, rotated: bool = False) -> bool:
        """The file at `path` no longer holds what was read up to its saved position (offset_marks);
        `rotated`: it is a rotated file being drained, found again by inode."""
        if self.marks is None:
            return False
        key = rotated_key(st.st_dev, st.st_ino) if rotated else path
        return self.marks.rewritten(key, path, st.st_ino, st.st_size)

    def replay_for(self, follower: Follower) -> Replay | None:
        """What a file resumed after a restart reads again of the lines a filter held (held_lines);
        None: everything from its position."""
        if self.held_lines is None or self.joining is not None or follower.fd is None:
            return None
        replay = self.held_lines.replay_for(follower.ino, follower.pe.pos, follower.fd)
        if replay is not None:
            self.log.info(f"{follower.path} resumes at offset {replay.start}: up to offset {replay.end} only "
                          f"the {len(replay.lines)} lines a filter held at the last stop are read again; "
                          "the others were stored before it")
        return replay

    def note_replay(self, replay: Replay) -> None:
        """A file's position moves up to the first line a filter holds (held_lines)."""
        if self.held_lines is not None and self.scheduler is not None:
            self.held_lines.note(replay, (f.ino for f in self.scheduler.all_followers()))

    def checkpoint_key(self, ino: int) -> str | None:
        """kawa.delivery checkpoint key of a file (only with a pos_file: nothing resumes without)."""
        if self.options.pos_file is None:
            return None
        return f"in_tail\t{os.path.abspath(self.options.pos_file)}\t{ino}"

    def forget_offsets(self, ino: int, mark_key: str) -> None:
        """The file `ino` was truncated in place: its old offsets name other content. The buffers drop
        its checkpoint key (kawa.delivery.forget), and its offset mark (under `mark_key`) and held-lines
        entry go at
        once: left until the next save, a kill -9 would make the next start take the new content
        for a rewrite and read it twice."""
        key = self.checkpoint_key(ino)
        if key is not None:
            delivery.forget(key)
        if self.marks is not None:
            self.marks.forget(mark_key)
        if self.held_lines is not None:
            self.held_lines.forget(ino)

    def on_settled(self, follower: Follower, wake: bool) -> None:
        """A follower saved a settled position: read it again if it waited; close after stop."""
        sched = self.scheduler
        if self._closing:
            if not self._unsettled():
                self._close_positions()
        elif wake and sched is not None:
            sched.resume_reading(follower)
        elif sched is not None and follower.draining and not follower.unsettled:
            sched.wake.set()           # a rotated file whose lines are all delivered: release it now

    # -- paths --------------------------------------------------------------------------------

    def expand_paths(self) -> dict[str, os.stat_result]:
        """Fluentd expand_paths: existing, readable, not excluded files -> their stat."""
        o = self.options
        now = time.time()
        candidates: list[str] = []
        for pattern in self.paths:
            pattern = tailpaths.strftime_path(pattern, now)
            if tailpaths.uses_glob(pattern, o.glob_policy):
                candidates.extend(self._readable(tailpaths.ruby_glob(pattern), now))
            else:
                candidates.append(pattern)
        excluded: set[str] = set()
        for pattern in o.exclude_path:
            pattern = tailpaths.strftime_path(pattern, now)
            excluded.update(tailpaths.ruby_glob(pattern) if tailpaths.uses_glob(pattern, o.glob_policy)
                            else [pattern])
        out: dict[str, os.stat_result] = {}
        for p in candidates:
            if p in excluded or p in out:
                continue
            try:
                out[p] = os.stat(p)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.log.warn(f"expand_paths: stat() for {p} failed with {type(exc).__name__}. Skip file.")
        return out

    def _readable(self, found: list[str], now: float) -> list[str]:
        o = self.options
        out = []
        for p in found:
            try:
                st = os.stat(p)
            except OSError:
                continue
            if os.path.isdir(p):
                continue
            if not os.access(p, os.R_OK):
                if p not in self.ignored_unreadable:
                    self.log.warn(f"{p} unreadable. It is excluded and would be examined next time.")
                    if o.ignore_repeated_permission_error:
                        self.ignored_unreadable.add(p)
                continue
            if o.limit_recently_modified is not None and st.st_mtime < now - o.limit_recently_modified:
                continue
            out.append(p)
        return out

    def _existing_keys(self) -> set[Any]:
        found = self.expand_paths()
        if self.options.follow_inodes:
            return {st.st_ino for st in found.values()}
        return set(found)

    def tag_for(self, path: str) -> str:
        if self.tag_parts is None:
            return self.options.tag  # type: ignore[no-any-return]
        prefix, suffix = self.tag_parts
        return prefix + tailpaths.path_to_tag(path) + suffix

    def position_entry(self, path: str, ino: int) -> MemoryPositionEntry:
        return self.pf.get(path, ino) if self.pf is not None else MemoryPositionEntry()

    # -- lines -> events ----------------------------------------------------------------------

    def to_events(self, follower: Follower, data: bytes, start_pos: int, now: float) -> list[Any]:
        """Decode, chomp and parse one batch of complete lines (file bytes from `start_pos`)."""
        lines = split_lines(self.decoder(data))
        follower.counters.lines += len(lines)
        self.read_lines += len(lines)
        if self.joining is None:
            parsed, failures = self.parser.parse_batch(lines)
        else:
            parsed, failures = self.joining.parse_batch(lines, stream=follower.key)
            self._track_held(follower, data, start_pos, len(lines), now)
        follower.lines_in_order = self.joining is None and not failures
        return self._finish_events(follower, parsed, failures)

    def held_events(self, follower: Follower) -> list[Any]:
        """Flush what a stateful parser holds for this file (flush interval, release, shutdown)."""
        if self.joining is None:
            return []
        follower.held.clear()
        follower.held_since = None
        parsed, failures = self.joining.flush_pending(follower.key)
        return self._finish_events(follower, parsed, failures) if parsed or failures else []

    def _track_held(self, follower: Follower, data: bytes, start_pos: int, count: int, now: float) -> None:
        """Remember the file offset of every group the parser holds (pos_file stays before them)."""
        assert self.joining is not None
        first_new = follower.lines_fed
        follower.lines_fed += count
        agos = self.joining.held_lines(follower.key)
        if not agos:
            follower.held.clear()
            follower.held_since = None
            return
        follower.held_since = now          # Fluentd resets the flush timer on every read
        held: dict[int, int] = {}
        for ago in agos:
            number = follower.lines_fed - ago
            offset = follower.held.get(number)
            if offset is None:
                offset = start_pos + _line_offset(data, number - first_new) if number >= first_new \
                    else min(follower.held.values(), default=start_pos)
            held[number] = offset
        follower.held = held

    def _finish_events(self, follower: Follower, parsed: list[Any], failures: list[Any]) -> list[Any]:
        """Missing times, unmatched / invalid / incomplete lines (Fluentd's log lines), path_key."""
        o = self.options
        now = self.ctx.clock()
        events = parsed
        if not all(map(itemgetter(0), parsed)):
            # parsers give None for a missing time (rare): rebuild the tuples only then (a time of 0
            # takes this path too and is kept); the records, and so the list's type, stay
            events = type(parsed)((t if t is not None else now, r) for t, r in parsed)
        if failures and type(events) is not list:
            events = list(events)       # failures add records: no StrValueEvents promise for them
        for failure in failures:
            if failure.kind == "invalid":
                follower.counters.invalid += 1
                self.invalid += 1
                self.log.limited("invalid line found", "warn", "invalid line found",
                                 file=follower.path, line=failure.text, error=failure.reason)
                continue
            if failure.kind == "incomplete":
                # Fluentd parse_multilines: the line is converted alone, then the warning.
                if o.emit_unmatched_lines and self.joining is not None:
                    alone, bad = self.joining.parse_alone(failure.text)
                    events.extend(self._finish_events(follower, alone, bad))
                self.log.warn(f"got incomplete line before first line from {follower.path}: "
                              + ruby_inspect(failure.text))
                continue
            follower.counters.unmatched += 1
            self.unmatched += 1
            if o.emit_unmatched_lines:
                events.append((now, {"unmatched_line": failure.text}))
            self.log.limited("pattern not matched", "warn",
                             "pattern not matched: " + ruby_inspect(failure.text))
        key = o.path_key
        if key is not None:
            path = follower.path
            for _t, record in events:
                if record.get(key) in (None, False):       # Ruby's `||=`
                    record[key] = path
        return events

    # -- metrics ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        sched = self.scheduler
        followers = sched.all_followers() if sched is not None else []
        files: dict[str, dict[str, Any]] = {}
        for f in followers:       # a path's live file wins over its rotated one (listed first)
            files.setdefault(f.path, {
                c.FILE_POSITION: f.pe.pos, c.FILE_INODE: f.ino, c.FILE_LAG_BYTES: f.lag(),
                c.FILE_OPENED: f.counters.opened, c.FILE_CLOSED: f.counters.closed,
                c.FILE_ROTATED: f.counters.rotated, c.FILE_THROTTLED: f.counters.throttled,
                "draining": f.draining, "unsettled": len(f.unsettled), **vars(f.counters)})
        return {
            c.EMIT_RECORDS: self.emit_records,
            c.EMIT_SIZE: self.emit_size,
            c.READ_LINES: self.read_lines,
            "opened_file_count": self.opened_files,
            "closed_file_count": self.closed_files,
            "rotated_file_count": self.rotated_files,
            "throttled_log_count": self.throttled,
            "tracked_file_count": len(sched.tails) if sched is not None else 0,
            "unmatched_lines": self.unmatched,
            "invalid_lines": self.invalid,
            c.FILES: files,
        }


def _line_offset(data: bytes, index: int) -> int:
    """Byte offset of line `index` (0-based) in a block of complete lines."""
    offset = 0
    for _ in range(index):
        offset = data.index(b"\n", offset) + 1
    return offset
