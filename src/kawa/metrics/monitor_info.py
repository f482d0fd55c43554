"""Fluentd's in_monitor_agent view of a plugin (the /api/plugins.json objects) and its LTSV text.

Keys and their order follow MonitorAgentInput#get_monitor_info: identity, MONITOR_INFO, statistics.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kawa.metrics import catalog as c
from kawa.metrics.registry import Snapshot
from kawa.ruby_values import ruby_to_s

SECRET_MASK = "xxxxxx"   # what Fluentd prints for secret parameters


def plugin_info(snap: Snapshot, *, with_config: bool = False, with_retry: bool = False) -> dict[str, Any]:
    st = snap.stats
    is_output = snap.category == "output"
    obj: dict[str, Any] = {"plugin_id": snap.plugin_id, "plugin_category": snap.category, "type": snap.type}
    if with_config:
        obj["config"] = plugin_config(snap.plugin)
    obj["output_plugin"] = is_output
    buffered = is_output and c.BUFFER_QUEUE_LENGTH in st
    if buffered:
        obj["buffer_queue_length"] = st[c.BUFFER_QUEUE_LENGTH]
        obj["buffer_timekeys"] = list(st.get(c.BUFFER_TIMEKEYS) or [])
        obj["buffer_total_queued_size"] = st.get(c.BUFFER_TOTAL_QUEUED_SIZE, 0)
    errors = st.get(c.NUM_ERRORS, st.get(c.RETRY_COUNT, 0))
    obj["retry_count"] = errors if is_output else None
    if is_output:
        # Fluentd's Output#statistics always has these keys; 0 when kawa's output does not count it
        for key in c.OUTPUT_STAT_KEYS:
            obj[key] = errors if key == c.RETRY_COUNT else st.get(key, 0)
        if buffered:
            for key in c.BUFFER_STAT_KEYS:
                if key in st:
                    obj[key] = st[key]
    else:
        for key in c.INPUT_STAT_KEYS:
            obj[key] = st.get(key, 0)
    if with_retry and is_output:
        obj["retry"] = _retry_info(st.get(c.RETRY))
    return obj


def plugin_config(plugin: Any) -> dict[str, str]:
    """The plugin's own config parameters as written (secrets masked), like Fluentd's `pe.config`."""
    options = getattr(plugin, "options", None)
    element = getattr(options, "_element", None)
    if element is None:
        return {}
    secret = {name for name, opt in type(options)._options.items() if opt.secret}
    secret |= {alias for name, opt in type(options)._options.items() if opt.secret for alias in opt.aliases}
    return {k: (SECRET_MASK if k in secret else a.value) for k, a in element.attrs.items()}


def _retry_info(retry: Any) -> dict[str, Any]:
    if not isinstance(retry, dict) or not retry:
        return {}
    return {"start": _ruby_time(retry.get("start")), "steps": retry.get("steps"),
            "next_time": _ruby_time(retry.get("next_time"))}


def _ruby_time(epoch: float | None) -> str | None:
    """Ruby's Time#to_s, which is what Time#to_json gives without json/add."""
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(epoch))


def render_json(obj: Any, pretty: bool = False) -> str:
    if pretty:
        return json.dumps(obj, indent=2, ensure_ascii=False)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def render_ltsv(rows: list[dict[str, Any]]) -> str:
    """Fluentd's render_ltsv: `key:value` joined by tabs; arrays comma-joined, hashes left out."""
    lines: list[str] = []
    for row in rows:
        cells: list[str] = []
        for key, value in row.items():
            if isinstance(value, dict):
                continue
            if isinstance(value, list):
                cells.append(f"{key}:{','.join(ruby_to_s(v) for v in value)}")
            else:
                cells.append(f"{key}:{ruby_to_s(value)}")
        lines.append("\t".join(cells) + "\n")
    return "".join(lines)


