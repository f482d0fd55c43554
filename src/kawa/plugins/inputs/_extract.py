"""Fluentd's extract helper (`<extract>`): an event's tag and/or time taken from record fields, for
the exec, tcp and udp inputs."""

from __future__ import annotations

from typing import Any

from kawa.config.schema import Options, option
from kawa.event import Record
from kawa.timeparse import TimeParser


class ExtractOptions(Options):
    """`<extract>`: take the tag and/or time from record fields."""

    tag_key = option(None, doc="Field whose value becomes the event tag.")
    keep_tag_key = option(False, "bool", doc="Keep the tag field in the record.")
    time_key = option(None, doc="Field whose value becomes the event time.")
    keep_time_key = option(False, "bool", doc="Keep the time field in the record.")
    time_type = option("float", "enum", choices=("float", "unixtime", "string", "mixed"), doc="Time field type.")
    time_format = option(None, doc="strptime format for time_type string.")
    localtime = option(True, "bool", doc="Zone-less times are local time.")
    utc = option(False, "bool", doc="Zone-less times are UTC.")
    timezone = option(None, doc="Zone of zone-less times.")


class Extractor:
    """extract_tag_from_record / extract_time_from_record of one `<extract>` section."""

    def __init__(self, o: ExtractOptions | None) -> None:
        self.tag_key = o.tag_key if o is not None else None
        self.keep_tag_key = bool(o is not None and o.keep_tag_key)
        self.time_key = o.time_key if o is not None else None
        self.keep_time_key = bool(o is not None and o.keep_time_key)
        self.time_parser: TimeParser | None = None
        if o is not None and o.time_key:
            given = o._element.attrs if o._element is not None else {}
            # a time_format without a time_type means a string time (Fluentd's TimeMixin)
            ttype = "string" if o.time_format and "time_type" not in given else o.time_type
            self.time_parser = TimeParser(o.time_format, time_type=ttype, localtime=o.localtime and not o.utc,
                                          utc=o.utc, timezone=o.timezone)

    @property
    def enabled(self) -> bool:
        return bool(self.tag_key or self.time_key)

    def tag(self, record: Record, default: str) -> str:
        key = self.tag_key
        if key is None or key not in record:
            return default
        value = record[key] if self.keep_tag_key else record.pop(key)
        return value if isinstance(value, str) else str(value)

    def time(self, record: Record) -> int | None:
        """The record's time field as event time (ns), None without one; raises what the time parser
        raises for a bad value."""
        key = self.time_key
        if key is None or self.time_parser is None or key not in record:
            return None
        value: Any = record[key] if self.keep_time_key else record.pop(key)
        return self.time_parser.parse(value)


def extracted_runs(extractor: Extractor, parsed: list[tuple[int | None, Record]], default_tag: str, now: int,
                   log: Any) -> list[tuple[str, list[Any]]]:
    """Parsed events as (tag, events) runs: consecutive events of one tag form one batch, so
    records keep their input order across tags (as the plugins' one-by-one emits do). A time from
    the parser wins; then the record's time field; then `now`."""
    runs: list[tuple[str, list[Any]]] = []
    for time, record in parsed:
        tag = extractor.tag(record, default_tag)
        if time is None:
            try:
                time = extractor.time(record)
            except Exception as exc:     # a bad time value: the event keeps the current time
                log.warn("failed to extract time from the record", key=extractor.time_key, error=str(exc))
        if not runs or runs[-1][0] != tag:
            runs.append((tag, []))
        runs[-1][1].append((now if time is None else time, record))
    return runs
