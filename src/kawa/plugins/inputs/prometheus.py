"""fluent-plugin-prometheus's `<source> @type prometheus`: serves /metrics (and /healthz, /readyz).

The exposition always carries the families of prometheus_monitor, prometheus_output_monitor and
prometheus_tail_monitor plus kawa's own, read from every plugin's stats() at scrape time.
"""

from __future__ import annotations

from typing import Any

from kawa.config.schema import option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError, Problem
from kawa.metrics.exposition import CONTENT_TYPE
from kawa.metrics.http import Handler, Request, Response
from kawa.metrics.serving import FreeSection, HttpInput, HttpOptions
from kawa.plugins.base import PluginContext

_TLS = "TLS is not supported by kawa's metrics server yet; terminate TLS in front of it"


class SslSection(FreeSection):
    """<ssl>: enable, certificate_path, private_key_path, ca_path, extra_conf (all deprecated upstream)."""


class TransportSection(FreeSection):
    """<transport tcp|tls> of Fluentd's http_server helper."""


@register("input", "prometheus")
class PrometheusInput(HttpInput):

    multi_workers_ready = True
    class Options(HttpOptions):
        # 0.0.0.0 is the default of every released fluent-plugin-prometheus (<= 2.2.2)
        bind = option("0.0.0.0", "string", doc="The address to bind to.")
        port = option(24231, "integer", doc="The port to listen to (plus the worker id).")
        metrics_path = option("/metrics", "string", doc="Path of the metrics endpoint.")
        aggregated_metrics_path = option("/aggregated_metrics", "string",
                                         doc="Path of every worker's metrics together.")
        content_encoding = option("identity", "enum", choices=("identity", "gzip"),
                                  doc="Content encoding of the exposed metrics.")
        ignore_error_log_interval = option(3600.0, "time", doc="Suppress repeated error logs for this long.")
        ssl = section(SslSection, doc="Deprecated TLS settings; kawa refuses enable true.")
        transport = section(TransportSection, doc="<transport tls> is refused: not supported yet.")

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        problems = []
        if options.ssl is not None and options.ssl.values.get("enable", "false") in ("true", "yes"):
            problems.append(Problem(_TLS, options.ssl._element.location if options.ssl._element else None))
        if options.transport is not None and options.transport._arg.strip() == "tls":
            problems.append(Problem(_TLS, options.transport._element.location if options.transport._element
                                    else None))
        if problems:
            raise ConfigError(problems)

    async def start(self) -> None:
        if self.server is not None:
            return
        await super().start()
        # sic: the plugin's message has the double slash ("#{@port}/#{@metrics_path}")
        self.log.debug(f"listening prometheus http server on http://{self.bind_address}:{self.listen_port}/"
                       f"{self.options.metrics_path} for worker{self.ctx.worker_id}")

    def routes(self) -> dict[str, Handler]:
        return {self.options.metrics_path: self._metrics, self.options.aggregated_metrics_path: self._metrics}

    def _metrics(self, _req: Request) -> Response:
        # Aggregated metrics are this worker's only: kawa does not yet fetch and merge its
        # sibling workers' ports as the plugin does (identical with the usual single worker).
        body = self.registry.render().encode()
        encoding = self.options.content_encoding
        if encoding == "gzip":
            import gzip

            body = gzip.compress(body)
        return Response(200, body, CONTENT_TYPE, {"Content-Encoding": encoding})
