"""fluent-plugin-prometheus's prometheus_monitor: fluentd_status_* families (buffer, retries).

kawa's /metrics always has these families, computed at scrape time; this input only adds <labels>.
"""

from __future__ import annotations

from typing import Any

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.metrics.registry import GroupOptions, registry_of
from kawa.metrics.serving import FreeSection, base_labels
from kawa.plugins.base import Input, PluginContext

SCRAPE_TIME = "kawa reads the values when /metrics is scraped"


class MonitorOptions(Options):
    interval = option(5.0, "time", no_effect=SCRAPE_TIME, doc="Update interval of the values.")
    labels = section(FreeSection, doc="Extra labels on every series (${hostname}, ${worker_id} expanded).")


@register("input", "prometheus_monitor")
class PrometheusMonitorInput(Input):

    multi_workers_ready = True
    Options = MonitorOptions
    group = "monitor"

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        labels = base_labels(self.type_name, options.labels, ctx)
        registry_of(ctx.extras).configure_group(self.group, GroupOptions(labels, self._gauge_all()))

    def _gauge_all(self) -> bool:
        return True
