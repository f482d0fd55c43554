"""fluent-plugin-systemd's `@type systemd`: entries of the systemd journal (kubelet, containerd, the
node's own services) as events, as the fluentd-kubernetes-daemonset images and AWS Container Insights
read them:

    <source>
      @type systemd
      tag kubelet
      path /var/log/journal
      matches [{"_SYSTEMD_UNIT": "kubelet.service"}]
      read_from_head true
      <storage>
        @type local
        path /var/log/fluentd-journald-kubelet-cursor.json
      </storage>
      <entry>
        fields_strip_underscores true
        fields_lowercase true
      </entry>
    </source>

The journal is read through libsystemd (kawa.plugins.inputs._systemd.journal) every second, as the
plugin does, in batches. Each event's time is the entry's realtime timestamp; its record is the
entry's fields, mapped by `<entry>` (kawa.plugins.filters.systemd_entry, shared with the
`systemd_entry` filter). The cursor goes to the `<storage>` file (Fluentd's local storage JSON,
`{"journal": "<cursor>"}`) once the outputs stored the batch: the plugin saves it as soon as the
emit returned, so a kill -9 with a memory buffer loses what it held.

A file buffer also stores, with each chunk, the journal sequence number of the batch's last entry
(a kawa.delivery checkpoint keyed by the cursor file and the journal's sequence-number id): a kill -9
between a chunk's fsync and the cursor's save leaves the cursor one batch behind, and the restart
skips the entries the resumed chunks already hold instead of sending them twice.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from typing import Any

from kawa import delivery
from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import BufferOverflowError, ConfigError
from kawa.plugins.base import Input, PluginContext
from kawa.plugins.inputs._server import cancel_all
from kawa.plugins.inputs._systemd.journal import INVALIDATE, Journal, JournalError
from kawa.plugins.filters.systemd_entry import EntryOptions, EntryMutator

BATCH = 1000                  # entries per emit
POLL_INTERVAL = 1.0           # the plugin's timer
MAX_UNSETTLED = 8             # emits not yet stored before reading pauses (back-pressure)


class StorageOptions(Options):
    """`<storage>` (Fluentd's local storage: the plugin keeps its cursor under the key "journal")."""

    path = option(None, doc="The JSON file (a folder: <folder>/worker<N>/storage.json).")
    persistent = option(False, "bool", doc="Save at every change (kawa always saves once a batch is stored).")
    autosave = option(True, "bool", no_effect="kawa saves the cursor once each batch is stored",
                      doc="Fluentd's periodic save.")
    autosave_interval = option(10.0, "time", no_effect="kawa saves the cursor once each batch is stored",
                               doc="Fluentd's periodic save interval.")
    save_at_shutdown = option(True, "bool", no_effect="kawa saves the cursor once each batch is stored",
                              doc="Fluentd's save at shutdown.")
    mode = option("0644", doc="Permission of the file (octal).")
    dir_mode = option("0755", doc="Permission of created folders (octal).")
    pretty_print = option(False, "bool", doc="Indent the JSON.")


class SystemdOptions(Options):
    path = option("/var/log/journal", doc="The journal folder.")
    matches = option(None, "array", doc='Entries to read, e.g. [{"_SYSTEMD_UNIT": "kubelet.service"}]: the '
                     "pairs of one hash all hold, and any one hash is enough.")
    filters = option([], "array", deprecated="filters has been renamed as matches", doc="Old name of matches.")
    read_from_head = option(False, "bool", doc="Without a saved cursor: from the oldest entry (else the newest).")
    tag = option(doc="Tag of the events.")
    pos_file = option(None, deprecated="use a <storage> section (path) instead",
                      doc="The plugin's 0.x cursor file (the cursor as plain text); read when <storage> has none.")
    strip_underscores = option(False, "bool", deprecated="use fields_strip_underscores in an <entry> section",
                               doc="The plugin's 0.x name of <entry> fields_strip_underscores.")
    storage = section(StorageOptions, doc="Where the cursor is kept.")
    entry = section(EntryOptions, doc="How entries become records.")


@register("input", "systemd")
class SystemdInput(Input):
    Options = SystemdOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        matches = o.matches if o.matches is not None else o.filters
        if not isinstance(matches, list) or not all(isinstance(m, dict) for m in matches):
            raise ConfigError("matches: expected an array of hashes, e.g. [{\"_SYSTEMD_UNIT\": \"kubelet.service\"}]")
        self.matches: list[dict[str, Any]] = matches
        entry = o.entry if o.entry is not None else EntryOptions.defaults()
        if o.strip_underscores:
            entry.fields_strip_underscores = True
        self.mutator = EntryMutator(entry)
        for warning in self.mutator.warnings:
            self.log.warn(warning)
        self.cursor_path = self._cursor_path(o.storage)
        self._file_mode = _octal(o.storage, "mode", 0o644)
        self._dir_mode = _octal(o.storage, "dir_mode", 0o755)
        self.cursor: str | None = self._load_cursor()
        if self.cursor is None and o.pos_file is not None:
            self.cursor = _read_plain_cursor(o.pos_file)      # 0.x pos_file: carried over to <storage>
        self.journal: Journal | None = None
        self.read_cursor: str | None = None     # the last entry read (emitted, maybe not stored yet)
        self._task: asyncio.Task[None] | None = None
        self._running = False
        # (settles, cursor of its last entry, ticket) of emits whose cursor is not saved yet, in order
        # (a ticket of None: entries skipped because the buffer holds them already)
        self._unsettled: deque[tuple[asyncio.Future[None], str, delivery.Ticket | None]] = deque()
        self._wake: asyncio.Event | None = None     # set when emits settle: reading may go on at once
        self.counters = {"entries": 0, "emits": 0, "refused": 0, "reopened": 0, "dropped": 0,
                         "skipped_stored": 0}
        # after a restart: (sequence-number id, last sequence number) of entries a file buffer's
        # resumed chunks hold although the saved cursor is before them
        self._stored_past: tuple[str, int] | None = None

    # -- the cursor ---------------------------------------------------------------------------------
    def _cursor_path(self, storage: StorageOptions | None) -> str | None:
        """Fluentd's local storage rules: `path` (a folder gets worker<N>/storage.json), else
        <root_dir>/worker<N>/<@id>/storage.json, else memory only."""
        path = storage.path if storage is not None else None
        worker = f"worker{self.ctx.worker_id}"
        if path is not None:
            if os.path.isdir(path) or (not os.path.exists(path) and not path.endswith(".json")):
                return os.path.join(path, worker, "storage.json")
            return str(path)
        root = getattr(self.ctx.system, "root_dir", None)
        if root and self.plugin_id and not self.plugin_id.startswith("object:"):
            name = f"storage.{storage._arg.strip()}.json" if storage is not None and storage._arg.strip() \
                else "storage.json"
            return os.path.join(root, worker, self.plugin_id, name)
        if storage is not None and storage.persistent:
            raise ConfigError("Plugin @id or path for <storage> required when 'persistent' is true")
        if self.options.pos_file is not None:
            return None            # the cursor goes to pos_file (0.x format)
        self.log.info("both of Plugin @id and path for <storage> are not specified. Using on-memory store.")
        if self.options.read_from_head:
            self.log.warn("systemd input: the journal cursor is kept in memory only (no <storage> path): every "
                          "start reads the whole journal again (read_from_head true)")
        return None

    def _load_cursor(self) -> str | None:
        path = self.cursor_path
        if path is None or not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"Plugin storage path '{path}' is not readable/writable: {exc.strerror}") from None
        if not text.strip():
            self.log.warn(f"detect empty plugin storage file during startup. Ignored: {path}")
            return None
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(f"Unexpected error: failed to read data from plugin storage file: '{path}'") from None
        if not isinstance(data, dict):
            raise ConfigError(f"Invalid contents (not object) in plugin storage file: '{path}'")
        cursor = data.get("journal")
        return cursor if isinstance(cursor, str) else None

    def _save_cursor(self, cursor: str) -> None:
        self.cursor = cursor
        path = self.cursor_path
        storage = self.options.storage
        if path is not None:
            pretty = storage is not None and storage.pretty_print
            text = json.dumps({"journal": cursor}, indent=2 if pretty else None, separators=None if pretty else (",", ":"))
        elif self.options.pos_file is not None:
            path, text = self.options.pos_file, cursor
        else:
            return
        tmp = f"{path}.tmp.{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=self._dir_mode, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self._file_mode)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError as exc:
            self.log.limited("systemd cursor", "error", "systemd input: could not save the journal cursor; "
                             "after a restart entries since the last saved one are read again",
                             path=path, error=str(exc))

    def _settled(self, _done: Any = None) -> None:
        """Save the cursor of the last emit of the oldest run of stored ones (in read order)."""
        cursor = None
        saved: list[delivery.Ticket] = []
        while self._unsettled and self._unsettled[0][0].done():
            _settles, cursor, ticket = self._unsettled.popleft()
            if ticket is not None:
                saved.append(ticket)
        if cursor is not None:
            self._save_cursor(cursor)
            for ticket in saved:        # a restart will not read them again (cloudwatch_logs' journal)
                ticket.commit()
            if self._wake is not None:
                self._wake.set()

    def _checkpoint(self, cursor: str) -> tuple[str, int] | None:
        """(key, sequence number) of the entry `cursor` names, for the chunks of a file buffer; None
        when the cursor is not kept in a file (nothing to resume) or does not say."""
        if self.cursor_path is None:
            return None
        seqnum = _cursor_seqnum(cursor)
        return None if seqnum is None else (self._checkpoint_key(seqnum[0]), seqnum[1])

    def _checkpoint_key(self, seqnum_id: str) -> str:
        return f"in_systemd\t{os.path.abspath(self.cursor_path or '')}\t{seqnum_id}"

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._running = False
        task, self._task = self._task, None
        if task is not None:
            await cancel_all({task})
        self._settled()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "cursor": self.cursor}

    # -- reading ------------------------------------------------------------------------------------
    def _open(self) -> bool:
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        try:
            journal = Journal(self.options.path)
            journal.match(self.matches)
            self._seek(journal)
        except JournalError as exc:
            self.log.limited("systemd open", "warn", f"Systemd::JournalError: {exc} retrying in 1s")
            return False
        self.journal = journal
        return True

    def _seek(self, journal: Journal) -> None:
        # reopened after journald rotated or vacuumed files: on from the last entry read; at start,
        # from the last one stored
        cursor = self.read_cursor or self.cursor
        if cursor is not None:
            try:
                journal.seek_cursor(cursor)
                if self.read_cursor is None:
                    self._note_stored_past(cursor)
                return
            except JournalError:
                self.log.warn(f"Could not seek to cursor {cursor} found in position file: {self.cursor_path}, "
                              f"falling back to reading from {'head' if self.options.read_from_head else 'tail'}")
        if self.options.read_from_head:
            journal.seek_head()
        else:
            journal.seek_tail()

    async def _run(self) -> None:
        while self._running:
            try:
                if self.journal is None:
                    self._open()
                elif self.journal.process() == INVALIDATE:
                    self.counters["reopened"] += 1
                    self._open()       # journal files were rotated or vacuumed: from the cursor again
                if self.journal is not None:
                    while self._running:
                        if len(self._unsettled) >= MAX_UNSETTLED:
                            # outputs holding these entries until a timer (a memory buffer's
                            # flush_interval) deliver them now, as tail asks: a backlog keeps moving
                            delivery.hurry(ticket for _s, _c, ticket in self._unsettled if ticket is not None)
                            break
                        batch = self._read_batch()
                        if not batch[0]:
                            break
                        if not await self._emit(*batch):
                            break
                        await asyncio.sleep(0)
            except JournalError as exc:
                self.log.warn(f"Error moving to next Journal entry: JournalError: {exc}")
                self.journal = None
            # the plugin's 1 s timer, or sooner when held-back emits settle
            assert self._wake is not None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
            except asyncio.TimeoutError:
                pass

    def _note_stored_past(self, cursor: str) -> None:
        """At start: whether a file buffer resumed chunks holding entries after the saved `cursor`
        (a kill -9 between their fsync and the cursor's save)."""
        seqnum = _cursor_seqnum(cursor)
        if seqnum is None or self.cursor_path is None:
            return
        stored = delivery.recovered_checkpoint(self._checkpoint_key(seqnum[0]))
        if stored is not None and stored > seqnum[1]:
            self._stored_past = (seqnum[0], stored)
            self.log.info(f"systemd input: entries after the saved cursor up to sequence number {stored:#x} "
                          "are in the buffer already; they are not read again")

    def _already_stored(self, cursor: str) -> bool:
        """The entry of `cursor`, read now, is one a resumed chunk holds (see _note_stored_past)."""
        assert self._stored_past is not None
        seqnum = _cursor_seqnum(cursor)
        if seqnum is None or seqnum[0] != self._stored_past[0]:
            return False                # another journal's entry: not in those chunks
        if seqnum[1] > self._stored_past[1]:
            self._stored_past = None    # past them: every entry from here on is new
            return False
        return True

    def _read_batch(self) -> tuple[list[Any], str | None]:
        journal = self.journal
        assert journal is not None
        events: list[Any] = []
        run = self.mutator.run
        last = None
        while len(events) < BATCH and journal.next():
            if self._stored_past is not None:
                cursor = journal.cursor()
                if self._already_stored(cursor):
                    self.counters["skipped_stored"] += 1
                    last = self.read_cursor = cursor
                    continue
            events.append((journal.realtime_ns(), run(journal.fields())))
        if events:
            last = self.read_cursor = journal.cursor()
        elif last is not None:
            # only entries the buffer holds: the cursor moves past them (after what is unsettled)
            stored = asyncio.get_running_loop().create_future()
            stored.set_result(None)
            self._unsettled.append((stored, last, None))
            self._settled()
        return events, last

    async def _emit(self, events: list[Any], cursor: str | None) -> bool:
        """Emit under a delivery ticket; the cursor is saved once the outputs stored the events. A
        refused emit is offered again (the journal is read from the last saved cursor)."""
        assert cursor is not None
        ticket = delivery.Ticket(self._checkpoint(cursor))
        while True:
            try:
                with delivery.tracking(ticket):
                    await self.emitter.emit(self.options.tag, events)
                break
            except BufferOverflowError:
                self.counters["refused"] += 1
                await asyncio.sleep(POLL_INTERVAL)
                if not self._running:
                    return False
            except Exception as exc:        # the plugin's rescue: logged, and the entries are not read again
                self.counters["dropped"] += len(events)
                self.log.error(f"Exception emitting record: {exc}", entries=len(events))
                return True
        ticket.seal()
        self.counters["entries"] += len(events)
        self.counters["emits"] += 1
        settles = ticket.delivered if getattr(self.ctx.system, "at_least_once_from_source", False) else ticket.stored
        self._unsettled.append((settles, cursor, ticket))
        settles.add_done_callback(self._settled)
        return True


def _cursor_seqnum(cursor: str) -> tuple[str, int] | None:
    """(sequence-number id, sequence number) of a journal cursor (`s=<id>;i=<hex>;b=...`): numbers
    that grow entry by entry among the entries of one id (one journald). None when it has neither."""
    fields = dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)
    try:
        return fields["s"], int(fields["i"], 16)
    except (KeyError, ValueError):
        return None


def _read_plain_cursor(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"pos_file {path} cannot be read: {exc.strerror}") from None


def _octal(storage: StorageOptions | None, name: str, default: int) -> int:
    value = getattr(storage, name, None) if storage is not None else None
    try:
        return int(str(value), 8) if value is not None else default
    except ValueError:
        return default
