"""What the HTTP observability inputs share: bind/port options, the server, probes and <labels>.

monitor_agent and prometheus derive from HttpInput; the prometheus_*_monitor companions use
LabelsSection / base_labels to configure their metric families.
"""

from __future__ import annotations

import socket
from typing import Any

from kawa.config.element import Element
from kawa.config.schema import BindContext, Options, option
from kawa.errors import ConfigError, Problem
from kawa.metrics.health import health_of, probe_routes
from kawa.metrics.http import Handler, HttpServer, Request, Response
from kawa.metrics.registry import registry_of
from kawa.plugins.base import Input, PluginContext


class FreeSection(Options):
    """A section whose keys are data, not options (<labels>, <transport>'s TLS settings)."""

    values: dict[str, str]

    @classmethod
    def bind(cls, element: Element, ctx: BindContext, path: tuple[str, ...] = ()) -> "FreeSection":
        inst = cls.__new__(cls)
        inst._element = element
        inst._arg = element.arg
        inst.values = {}
        for key, attr in element.attrs.items():
            attr.used = True
            if attr.ruby_error:
                ctx.problem(attr.ruby_error, attr.location, path or (element.title(),), key)
            else:
                inst.values[key] = attr.value
        return inst


class HttpOptions(Options):
    # kawa's own: thresholds of /healthz and /readyz (absent from Fluentd, harmless to it)
    health_stale_timeout = option(10.0, "time", doc="/healthz answers 503 when the event loop heartbeat is "
                                                    "older than this.")
    ready_failure_timeout = option(60.0, "time", doc="/readyz answers 503 when an output has kept failing "
                                                     "(errors growing, no successful write) this long.")


class HttpInput(Input):
    """An input that serves HTTP routes plus /healthz and /readyz on bind:(port + worker id)."""

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self.health = health_of(ctx.extras)
        # only thresholds written in the config change the shared Health (defaults leave it as built)
        given = options._element.attrs if options._element is not None else {}
        if "health_stale_timeout" in given:
            self.health.stale_after = options.health_stale_timeout
        if "ready_failure_timeout" in given:
            self.health.failing_after = options.ready_failure_timeout
        self.registry = registry_of(ctx.extras)
        bind = options.bind
        # brackets are for URLs, not for bind() (fluent-plugin-prometheus strips them too)
        self.bind_address = bind[1:-1] if bind.startswith("[") and bind.endswith("]") else bind
        self.listen_port = options.port + ctx.worker_id    # Fluentd: @port += fluentd_worker_id
        self.server: HttpServer | None = None

    def routes(self) -> dict[str, Handler]:
        raise NotImplementedError

    def not_found(self, _req: Request) -> Response:
        return Response(404, "Not found\n")

    @property
    def port(self) -> int:
        """The port actually listened on (tests bind port 0)."""
        return self.server.bound_port if self.server is not None else self.listen_port

    async def start(self) -> None:
        if self.server is not None:
            return
        routes = {**probe_routes(self.health), **self.routes()}
        server = HttpServer(self.bind_address, self.listen_port, routes, self.log, self.not_found)
        await server.start()
        self.server = server
        self.health.acquire(self._outputs)

    async def stop(self) -> None:
        if self.server is None:
            return
        server, self.server = self.server, None
        await server.stop()
        await self.health.release()

    def _outputs(self) -> Any:
        return getattr(self.ctx.extras.get("pipeline"), "outputs", ())


def base_labels(plugin_type: str, labels: FreeSection | None, ctx: PluginContext) -> dict[str, str]:
    """fluent-plugin-prometheus's <labels> for the monitor inputs: ${hostname} and ${worker_id}
    expanded, record accessors refused, worker_id added when there are several workers."""
    found: dict[str, str] = {}
    values = labels.values if labels is not None else {}
    hostname = socket.gethostname()
    for key, value in values.items():
        if value.startswith("$.") or value.startswith("$["):
            location = labels._element.attrs[key].location if labels and labels._element else None
            raise ConfigError([Problem(f"record accessor syntax is not available in {plugin_type}", location)])
        found[key] = value.replace("${hostname}", hostname).replace("${worker_id}", str(ctx.worker_id))
    if (getattr(ctx.system, "workers", 1) or 1) > 1:
        found["worker_id"] = str(ctx.worker_id)
    return found
