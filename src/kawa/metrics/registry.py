"""Collects metric values at scrape time from every plugin's stats() and the router's counters.

Nothing is counted here: plugins own their counters; a scrape reads them once and renders.
The pipeline is looked up lazily in the shared extras (the engine sets extras["pipeline"] after build).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from kawa.metrics import catalog as c
from kawa.metrics.exposition import Family, render
from kawa.metrics.health import Health


@dataclass
class Snapshot:
    """One plugin's identity and stats, read once per scrape."""

    plugin: Any
    category: str                      # "input" | "filter" | "output" (Fluentd's plugin_category)
    stats: dict[str, Any]

    @property
    def plugin_id(self) -> str:
        return str(self.plugin.plugin_id)

    @property
    def type(self) -> str:
        """The @type as configured (an alias stays an alias), like Fluentd's `pe.config['@type']`."""
        element = getattr(getattr(self.plugin, "options", None), "_element", None)
        configured = element.get("@type") or element.get("type") if element is not None else None
        return str(configured or getattr(self.plugin, "type_name", "unknown"))


@dataclass
class GroupOptions:
    """What a companion input (prometheus_output_monitor ...) configures for its families."""

    base_labels: dict[str, str] = field(default_factory=dict)
    gauge_all: bool = True


def ordered_plugins(pipe: Any) -> list[tuple[Any, str]]:
    """Top-level plugins in monitor_agent's order: inputs, root outputs, root filters, then each
    label's outputs and filters (children such as <store>, <parse>, <buffer> are not listed)."""
    found: list[tuple[Any, str]] = [(p, "input") for p in getattr(pipe, "inputs", ())]
    labels = getattr(getattr(pipe, "router", None), "labels", None)
    if not isinstance(labels, dict):
        found += [(p, "output") for p in getattr(pipe, "outputs", ())]
        found += [(p, "filter") for p in getattr(pipe, "filters", ())]
        return found
    for label in labels.values():
        found += [(p, "output") for _, p, is_filter in label.directives if not is_filter]
        found += [(p, "filter") for _, p, is_filter in label.directives if is_filter]
    return found


class MetricsRegistry:
    """One per worker, shared through extras["metrics"]; see `registry_of`."""

    def __init__(self, extras: dict[str, Any], health: Health | None = None) -> None:
        self.extras = extras
        self.health = health
        self.groups: dict[str, GroupOptions] = {}
        self.hostname = socket.gethostname()

    @property
    def pipeline(self) -> Any:
        return self.extras.get("pipeline")

    def configure_group(self, group: str, options: GroupOptions) -> None:
        """The first companion input of a kind wins, as the first registration does in Fluentd."""
        self.groups.setdefault(group, options)

    def snapshots(self) -> list[Snapshot]:
        out: list[Snapshot] = []
        for plugin, category in ordered_plugins(self.pipeline):
            try:
                stats = normalize(plugin.stats() or {})
            except Exception:  # a broken stats() hides that plugin's series, not the whole scrape
                stats = {}
            out.append(Snapshot(plugin, category, stats))
        return out

    def render(self) -> str:
        return render(self.collect())

    # -- families ----------------------------------------------------------------------------------
    def collect(self) -> list[Family]:
        snaps = self.snapshots()
        families: list[Family] = []
        families += self._output_monitor([s for s in snaps if s.category == "output"])
        families += self._status_monitor(snaps)
        families += self._tail_monitor([s for s in snaps if s.category == "input"])
        families += self._kawa(snaps)
        families += _process()
        return families

    def _family(self, d: c.MetricDef, group: str, counter_capable: bool = False) -> tuple[Family, tuple[str, ...]]:
        opts = self.groups.get(group, GroupOptions())
        base = tuple(opts.base_labels)
        typ = "counter" if counter_capable and not opts.gauge_all else d.type
        return Family(d, base + d.labels, type=typ), tuple(opts.base_labels.values())

    def _output_monitor(self, outputs: list[Snapshot]) -> list[Family]:
        fams: list[Family] = []
        for d, key, counter_capable in c.OUTPUT_MONITOR:
            fam, base = self._family(d, "output", counter_capable)
            for s in outputs:
                value = _stat(s.stats, key)
                if value is not None:
                    fam.set(base + (s.plugin_id, s.type), value)
            fams.append(fam)
        wait, base = self._family(c.RETRY_WAIT, "output")
        for s in outputs:
            if s.stats:
                wait.set(base + (s.plugin_id, s.type), _retry_wait(s.stats.get(c.RETRY)))
        fams.append(wait)
        return fams

    def _status_monitor(self, snaps: list[Snapshot]) -> list[Family]:
        fams: list[Family] = []
        for d, key in c.STATUS_MONITOR:
            fam, base = self._family(d, "monitor")
            for s in snaps:
                value = _stat(s.stats, key)
                if value is not None:
                    fam.set(base + (s.plugin_id, s.category, s.type), value)
            fams.append(fam)
        newest, base = self._family(c.STATUS_NEWEST_TIMEKEY, "monitor")
        oldest, _ = self._family(c.STATUS_OLDEST_TIMEKEY, "monitor")
        for s in snaps:
            keys = s.stats.get(c.BUFFER_TIMEKEYS)
            if keys:
                newest.set(base + (s.plugin_id, s.category, s.type), max(keys))
                oldest.set(base + (s.plugin_id, s.category, s.type), min(keys))
        return fams + [newest, oldest]

    def _tail_monitor(self, inputs: list[Snapshot]) -> list[Family]:
        fams: list[Family] = []
        for d, key in c.TAIL_MONITOR:
            fam, base = self._family(d, "tail")
            for s in inputs:
                for path, info in (s.stats.get(c.FILES) or {}).items():
                    value = info.get(key)
                    if value is not None:
                        fam.set(base + (s.plugin_id, s.type, path), value)
            fams.append(fam)
        return fams

    def _kawa(self, snaps: list[Snapshot]) -> list[Family]:
        records = Family(c.RECORDS)
        lag = Family(c.TAIL_LAG)
        by_tag = Family(c.INPUT_NUM_RECORDS)
        calls = Family(c.CLOUDWATCH_CALLS_TOTAL)
        throttles = Family(c.CLOUDWATCH_THROTTLES_TOTAL)
        for s in snaps:
            st = s.stats
            if s.category == "input":
                _add(records, "read", st.get(c.READ_LINES))
                _add(records, "parsed", st.get(c.EMIT_RECORDS))
                _add(records, "unmatched", st.get(c.PARSE_ERRORS))
                for path, info in (st.get(c.FILES) or {}).items():
                    if info.get(c.FILE_LAG_BYTES) is not None:
                        lag.set((s.plugin_id, path), info[c.FILE_LAG_BYTES])
                for tag, n in (st.get(c.EMIT_RECORDS_BY_TAG) or {}).items():
                    by_tag.add((tag, self.hostname), n)
            elif s.category == "filter":
                if st.get(c.FILTERED_OUT) is not None:
                    records.add(("filtered", s.type), st[c.FILTERED_OUT])
            else:
                _add(records, "buffered", st.get(c.EMIT_RECORDS))
                _add(records, "delivered", st.get(c.DELIVERED_RECORDS))
                _add(records, "rejected", st.get(c.REJECTED_RECORDS))
                _add(records, "dropped", st.get(c.DROPPED_RECORDS))
                for action, results in (st.get(c.CLOUDWATCH_CALLS) or {}).items():
                    for result, n in results.items():
                        calls.add((action, result), n)
                if st.get(c.CLOUDWATCH_THROTTLES) is not None:
                    throttles.add((), st[c.CLOUDWATCH_THROTTLES])
        fams = [records, by_tag, lag, calls, throttles]
        counters = getattr(getattr(self.pipeline, "router", None), "counters", None) or {}
        if "unmatched_records" in counters:
            records.add(("dropped", "no_match"), counters["unmatched_records"])
        if "error_events" in counters:
            errors = Family(c.ERROR_EVENTS)
            errors.set((), counters["error_events"])
            fams.append(errors)
        if self.health is not None:
            age, ready = Family(c.HEARTBEAT_AGE), Family(c.READY)
            age.set((), round(self.health.heartbeat_age(), 3))
            ready.set((), 1 if self.health.readiness()[0] else 0)
            fams += [age, ready]
        return fams


# Spellings some plugins use for catalog keys (the Buffer's own names without Output's "buffer_"
# prefix; in_tail's line counters). Accepted so a plugin is not invisible for a naming slip.
_ALIASES = {"stage_length": c.BUFFER_STAGE_LENGTH, "stage_byte_size": c.BUFFER_STAGE_BYTE_SIZE,
            "queue_length": c.BUFFER_QUEUE_LENGTH, "queue_byte_size": c.BUFFER_QUEUE_BYTE_SIZE}
_PARSE_ERROR_ALIASES = {"unmatched_lines": "unmatched", "invalid_lines": "invalid"}


def normalize(stats: dict[str, Any]) -> dict[str, Any]:
    """The stats with alias keys renamed to catalog keys; the plugin's dict is never modified."""
    if not any(k in stats for k in _ALIASES) and not any(k in stats for k in _PARSE_ERROR_ALIASES):
        return stats
    out = dict(stats)
    for alias, key in _ALIASES.items():
        if alias in out and key not in out:
            out[key] = out.pop(alias)
    if c.BUFFER_TOTAL_QUEUED_SIZE not in out and c.BUFFER_STAGE_BYTE_SIZE in out:
        out[c.BUFFER_TOTAL_QUEUED_SIZE] = out[c.BUFFER_STAGE_BYTE_SIZE] + out.get(c.BUFFER_QUEUE_BYTE_SIZE, 0)
    if c.PARSE_ERRORS not in out:
        errors = {reason: out[k] for k, reason in _PARSE_ERROR_ALIASES.items() if k in out}
        if errors:
            out[c.PARSE_ERRORS] = errors
    return out


def _stat(stats: dict[str, Any], key: str) -> Any:
    if key == c.NUM_ERRORS:
        value = stats.get(c.NUM_ERRORS)
        return stats.get(c.RETRY_COUNT) if value is None else value
    return stats.get(key)


def _add(fam: Family, stage: str, value: Any) -> None:
    """Counts a stage: an int (no reason) or a {reason: int} dict."""
    if value is None:
        return
    if isinstance(value, dict):
        for reason, n in value.items():
            fam.add((stage, str(reason)), n)
    else:
        fam.add((stage, ""), value)


def _retry_wait(retry: Any) -> float:
    """next_time - start of the current retry, 0 when not retrying (the plugin's computation)."""
    if isinstance(retry, dict) and retry.get("next_time") is not None and retry.get("start") is not None:
        return float(retry["next_time"] - retry["start"])
    return 0.0


def _process() -> Iterable[Family]:
    fams: list[Family] = []
    cpu = os.times()
    fam = Family(c.PROCESS_CPU)
    fam.set((), round(cpu.user + cpu.system, 3))
    fams.append(fam)
    try:
        with open("/proc/self/statm", "rb") as f:
            rss_pages = int(f.read().split()[1])
        fam = Family(c.PROCESS_RSS)
        fam.set((), rss_pages * os.sysconf("SC_PAGE_SIZE"))
        fams.append(fam)
        fam = Family(c.PROCESS_FDS)
        fam.set((), len(os.listdir("/proc/self/fd")))
        fams.append(fam)
    except (OSError, ValueError, IndexError):
        pass  # not Linux: the portable families above are enough
    fam = Family(c.PROCESS_START)
    fam.set((), _START_TIME)
    fams.append(fam)
    return fams


def _process_start_time() -> float:
    try:
        with open("/proc/self/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        return round(btime + ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError, StopIteration):
        return round(time.time(), 2)   # imported at start-up: close enough


_START_TIME = _process_start_time()


def registry_of(extras: dict[str, Any]) -> MetricsRegistry:
    """The worker's registry, created on first use and shared through the plugin context's extras."""
    from kawa.metrics.health import health_of

    found = extras.get("metrics")
    if found is None:
        found = extras["metrics"] = MetricsRegistry(extras, health_of(extras))
    return found  # type: ignore[no-any-return]
