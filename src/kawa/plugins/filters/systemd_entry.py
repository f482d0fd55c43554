"""fluent-plugin-systemd's entry mutation: the systemd input's `<entry>` section, and the same as a
filter (`@type systemd_entry`) for entries that arrive another way.

    field_map {"MESSAGE": "log", "_PID": ["process", "pid"], "_CMDLINE": "process"}

copies (or, with several sources, joins with a space) journal fields into new ones;
`field_map_strict` keeps only those; otherwise every other field stays, its name optionally
without leading underscores (`fields_strip_underscores`) and lower-cased (`fields_lowercase`).
"""

from __future__ import annotations

from typing import Any

from kawa.config.schema import Options, option
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event
from kawa.plugins.base import Filter, PluginContext


class EntryOptions(Options):
    field_map = option({}, "hash", doc='{"<journal field>": "<new field>" or ["<new>", ...]}.')
    field_map_strict = option(False, "bool", doc="Keep only the fields field_map makes.")
    fields_strip_underscores = option(False, "bool", doc="Strip leading underscores from the other fields' names.")
    fields_lowercase = option(False, "bool", doc="Lower-case the other fields' names.")


class EntryMutator:
    """SystemdEntryMutator. One difference, a fix: a new field gets the sources that name it exactly
    (the plugin also takes a source whose single new name merely contains it: with {"A": "msg",
    "B": "msg_full"}, "msg" got A's and B's values joined)."""

    def __init__(self, o: EntryOptions) -> None:
        field_map = o.field_map or {}
        if not all(isinstance(k, str) for k in field_map):
            raise ConfigError("`field_map` keys must be strings")
        if not all(isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                   for v in field_map.values()):
            raise ConfigError("`field_map` values must be strings or an array of strings")
        self.strict = o.field_map_strict
        self.strip = o.fields_strip_underscores
        self.lower = o.fields_lowercase
        # new field -> its sources, in the order the map names them
        self.sources: dict[str, list[str]] = {}
        for source, targets in field_map.items():
            for target in [targets] if isinstance(targets, str) else targets:
                self.sources.setdefault(target, [])
                if source not in self.sources[target]:
                    self.sources[target].append(source)
        self.mapped_sources = set(field_map)
        self.plain = not field_map and not self.strict and not self.strip and not self.lower
        self.warnings = ["`field_map_strict` set to true with empty `field_map`, expect no fields"] \
            if self.strict and not field_map else []

    def run(self, entry: dict[str, Any]) -> dict[str, Any]:
        if self.plain:
            return entry
        mapped: dict[str, Any] = {}
        for target, sources in self.sources.items():
            values = [entry[s] for s in sources if entry.get(s) is not None]
            if values:
                mapped[target] = values[0] if len(values) == 1 else " ".join(map(str, values))
        if self.strict:
            return mapped
        for name, value in entry.items():
            if name in self.mapped_sources:
                continue
            if self.strip:
                name = name.lstrip("_")
            if self.lower:
                name = name.lower()
            also = mapped.get(name)
            mapped[name] = value if also is None else f"{value} {also}"
        return mapped


@register("filter", "systemd_entry")
class SystemdEntryFilter(Filter):
    Options = EntryOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.mutator = EntryMutator(options)
        for warning in self.mutator.warnings:
            self.log.warn(warning)

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        run = self.mutator.run
        return [(time, run(record)) for time, record in events]
