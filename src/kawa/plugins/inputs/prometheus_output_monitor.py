"""fluent-plugin-prometheus's prometheus_output_monitor: fluentd_output_status_* families.

kawa's /metrics always has them; this input adds <labels> and `gauge_all false` (counters).
"""

from __future__ import annotations

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.plugins.inputs.prometheus_monitor import MonitorOptions, PrometheusMonitorInput


@register("input", "prometheus_output_monitor")
class PrometheusOutputMonitorInput(PrometheusMonitorInput):

    multi_workers_ready = True
    class Options(MonitorOptions):
        gauge_all = option(True, "bool", doc="Expose the cumulative values as gauges (false: counters).")

    group = "output"

    def _gauge_all(self) -> bool:
        return bool(self.options.gauge_all)
