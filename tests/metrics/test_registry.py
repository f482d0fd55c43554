"""Scrape-time collection: every family fed from plugins' stats() and the router, Fluentd's names."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kawa.metrics import catalog as c
from kawa.metrics.registry import GroupOptions, MetricsRegistry, ordered_plugins


def _promtext():
    name = "kawa_tests_promtext"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "promtext.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


parse = _promtext().parse


class FakePlugin:
    def __init__(self, plugin_id: str, type_name: str, kind: str, stats: Any = None) -> None:
        self.plugin_id, self.type_name, self.kind = plugin_id, type_name, kind
        self._stats = stats or {}

    def stats(self) -> dict[str, Any]:
        if isinstance(self._stats, Exception):
            raise self._stats
        return self._stats


TAIL_STATS = {
    c.READ_LINES: 10, c.EMIT_RECORDS: 8, c.PARSE_ERRORS: {"unmatched": 2},
    c.EMIT_RECORDS_BY_TAG: {"kube.a": 5, "kube.b": 3},
    c.FILES: {"/var/log/a.log": {c.FILE_POSITION: 100, c.FILE_INODE: 7, c.FILE_LAG_BYTES: 20,
                                 c.FILE_OPENED: 1, c.FILE_CLOSED: 0, c.FILE_ROTATED: 2}},
}
CWL_STATS = {
    c.EMIT_RECORDS: 8, c.EMIT_COUNT: 2, c.WRITE_COUNT: 1, c.ROLLBACK_COUNT: 1, c.NUM_ERRORS: 4,
    c.BUFFER_QUEUE_LENGTH: 1, c.BUFFER_TOTAL_QUEUED_SIZE: 512, c.BUFFER_STAGE_LENGTH: 0,
    c.BUFFER_TIMEKEYS: [1700000000, 1700000060],
    c.RETRY: {"start": 1000.0, "steps": 2, "next_time": 1004.5},
    c.DELIVERED_RECORDS: 5, c.REJECTED_RECORDS: {"tooOld": 1}, c.DROPPED_RECORDS: {"retry_limit": 2},
    c.CLOUDWATCH_CALLS: {"PutLogEvents": {"ok": 1, "ThrottlingException": 3}},
    c.CLOUDWATCH_THROTTLES: 3,
}


def fake_pipeline(*plugins: FakePlugin, counters: dict[str, int] | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        inputs=[p for p in plugins if p.kind == "input"],
        filters=[p for p in plugins if p.kind == "filter"],
        outputs=[p for p in plugins if p.kind == "output"],
        plugins=list(plugins),
        router=SimpleNamespace(counters=counters or {}),
    )


def scrape(pipe: Any, **groups: GroupOptions) -> dict[str, Any]:
    reg = MetricsRegistry({"pipeline": pipe})
    for name, opts in groups.items():
        reg.configure_group(name, opts)
    return parse(reg.render())


def test_output_families_use_fluentd_names_and_labels() -> None:
    out = FakePlugin("out_cloudwatch_logs", "cloudwatch_logs", "output", CWL_STATS)
    fams = scrape(fake_pipeline(out))
    labels = {"plugin_id": "out_cloudwatch_logs", "type": "cloudwatch_logs"}
    assert fams["fluentd_output_status_buffer_queue_length"].samples == {tuple(sorted(labels.items())): 1}
    assert fams["fluentd_output_status_buffer_total_bytes"].value(**labels) == 512
    assert fams["fluentd_output_status_retry_count"].value(**labels) == 4     # num_errors, as Fluentd
    assert fams["fluentd_output_status_num_errors"].value(**labels) == 4
    assert fams["fluentd_output_status_emit_records"].value(**labels) == 8
    assert fams["fluentd_output_status_write_count"].value(**labels) == 1
    assert fams["fluentd_output_status_rollback_count"].value(**labels) == 1
    assert fams["fluentd_output_status_retry_wait"].value(**labels) == 4.5
    assert fams["fluentd_output_status_emit_count"].type == "gauge"
    # not provided by the plugin: no series rather than a made-up zero
    assert "fluentd_output_status_slow_flush_count" not in fams
    assert fams["fluentd_status_buffer_newest_timekey"].value(plugin_category="output") == 1700000060
    assert fams["fluentd_status_buffer_oldest_timekey"].value(plugin_category="output") == 1700000000


def test_tail_and_kawa_families() -> None:
    tail = FakePlugin("in_tail_container_logs", "tail", "input", TAIL_STATS)
    grep = FakePlugin("grep1", "grep", "filter", {c.FILTERED_OUT: 4})
    out = FakePlugin("out", "cloudwatch_logs", "output", CWL_STATS)
    fams = scrape(fake_pipeline(tail, grep, out, counters={"unmatched_records": 6, "error_events": 1}))
    assert fams["fluentd_tail_file_position"].value(path="/var/log/a.log", plugin_id="in_tail_container_logs") == 100
    assert fams["fluentd_tail_file_inode"].value(path="/var/log/a.log") == 7
    assert fams["fluentd_tail_file_rotated"].value(path="/var/log/a.log") == 2
    assert "fluentd_tail_file_throttled" not in fams
    assert fams["kawa_tail_lag_bytes"].value(path="/var/log/a.log") == 20
    records = fams["kawa_records_total"]
    assert records.type == "counter"
    expected = {("read", ""): 10, ("parsed", ""): 8, ("unmatched", "unmatched"): 2, ("filtered", "grep"): 4,
                ("buffered", ""): 8, ("delivered", ""): 5, ("rejected", "tooOld"): 1,
                ("dropped", "retry_limit"): 2, ("dropped", "no_match"): 6}
    assert {(d["stage"], d["reason"]): records.value(**d) for d in records.labelsets()} == expected
    assert fams["kawa_cloudwatch_calls_total"].value(action="PutLogEvents", result="ThrottlingException") == 3
    assert fams["kawa_cloudwatch_throttles_total"].value() == 3
    assert fams["kawa_error_events_total"].value() == 1
    by_tag = fams["fluentd_input_status_num_records_total"]
    assert by_tag.value(tag="kube.a") == 5 and by_tag.value(tag="kube.b") == 3
    assert fams["process_resident_memory_bytes"].value() > 0


def test_a_failing_stats_hides_only_that_plugin() -> None:
    broken = FakePlugin("broken", "cloudwatch_logs", "output", RuntimeError("boom"))
    good = FakePlugin("good", "cloudwatch_logs", "output", {c.WRITE_COUNT: 2})
    fams = scrape(fake_pipeline(broken, good))
    assert fams["fluentd_output_status_write_count"].labelsets() == [{"plugin_id": "good", "type": "cloudwatch_logs"}]


def test_group_options_add_base_labels_and_counters() -> None:
    out = FakePlugin("out", "null", "output", {c.EMIT_COUNT: 3, c.ROLLBACK_COUNT: 0})
    fams = scrape(fake_pipeline(out), output=GroupOptions({"host": "node-1"}, gauge_all=False))
    emit = fams["fluentd_output_status_emit_count"]
    assert emit.type == "counter"
    assert emit.labelsets() == [{"host": "node-1", "plugin_id": "out", "type": "null"}]
    # rollback_count stays a gauge whatever gauge_all says (the plugin's get_gauge)
    assert fams["fluentd_output_status_rollback_count"].type == "gauge"


def test_no_pipeline_yet_still_renders_process_families() -> None:
    fams = parse(MetricsRegistry({}).render())
    assert "process_cpu_seconds_total" in fams
    assert not any(name.startswith("fluentd_") for name in fams)


def test_order_and_configured_type_follow_monitor_agent_on_a_real_pipeline() -> None:
    from kawa.config.parser import parse_config_string
    from kawa.engine.pipeline import PipelineBuilder
    from kawa.log import LogSink, Logger

    conf = """
<source>
  @type sample
  @id in_sample
  tag app
</source>
<label @OTHER>
  <match **>
    @type null
    @id other_null
  </match>
</label>
<filter app>
  @type grep
  @id root_grep
  <exclude>
    key x
    pattern /y/
  </exclude>
</filter>
<match app>
  @type null
  @id root_null
</match>
"""
    pipe = PipelineBuilder(parse_config_string(conf), Logger(LogSink(io.StringIO())), extras={"x": 1}).build()
    order = [(p.plugin_id, cat) for p, cat in ordered_plugins(pipe)]
    assert order == [("in_sample", "input"), ("root_null", "output"), ("root_grep", "filter"),
                     ("other_null", "output")]
    reg = MetricsRegistry({"pipeline": pipe})
    assert [s.type for s in reg.snapshots()] == ["sample", "null", "grep", "null"]


def test_buffer_and_tail_alias_keys_are_understood() -> None:
    out = FakePlugin("out", "cloudwatch_logs", "output",
                     {"stage_length": 2, "stage_byte_size": 100, "queue_length": 1, "queue_byte_size": 50,
                      c.RETRY_COUNT: 3})
    tail = FakePlugin("in_tail", "tail", "input", {"unmatched_lines": 4, "invalid_lines": 1})
    fams = scrape(fake_pipeline(tail, out))
    assert fams["fluentd_output_status_buffer_stage_length"].value(plugin_id="out") == 2
    assert fams["fluentd_output_status_buffer_queue_length"].value(plugin_id="out") == 1
    assert fams["fluentd_output_status_buffer_total_bytes"].value(plugin_id="out") == 150
    assert fams["fluentd_output_status_num_errors"].value(plugin_id="out") == 3
    records = fams["kawa_records_total"]
    assert records.value(stage="unmatched", reason="unmatched") == 4
    assert records.value(stage="unmatched", reason="invalid") == 1
    assert out.stats() == {"stage_length": 2, "stage_byte_size": 100, "queue_length": 1, "queue_byte_size": 50,
                           c.RETRY_COUNT: 3}
