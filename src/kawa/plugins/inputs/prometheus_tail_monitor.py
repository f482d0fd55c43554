"""fluent-plugin-prometheus's prometheus_tail_monitor: fluentd_tail_file_* families per followed file.

kawa's /metrics always has them (from in_tail's stats()["files"]); this input only adds <labels>.
"""

from __future__ import annotations

from kawa.engine.registry import register
from kawa.plugins.inputs.prometheus_monitor import PrometheusMonitorInput


@register("input", "prometheus_tail_monitor")
class PrometheusTailMonitorInput(PrometheusMonitorInput):

    multi_workers_ready = True
    group = "tail"
