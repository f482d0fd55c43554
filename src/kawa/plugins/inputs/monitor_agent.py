"""Fluentd's in_monitor_agent: /api/plugins(.json), /api/config(.json), periodic events; plus probes.

Values are read from each plugin's stats() at request time. kawa adds /healthz and /readyz.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from kawa import __version__
from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.metrics.catalog import EMIT_RECORDS
from kawa.metrics.http import Handler, Request, Response
from kawa.metrics.monitor_info import plugin_info, render_json, render_ltsv
from kawa.metrics.serving import HttpInput, HttpOptions
from kawa.plugins.base import PluginContext

JSON = "application/json"
LTSV = "text/plain"
NOT_FOUND_BODY = '{"message":"Not found"}'      # MonitorAgentInput::NotFoundJson


@register("input", "monitor_agent")
class MonitorAgentInput(HttpInput):

    multi_workers_ready = True
    class Options(HttpOptions):
        bind = option("0.0.0.0", "string", doc="The address to bind to.")
        port = option(24220, "integer", doc="The port to listen to (plus the worker id).")
        tag = option(None, "string", doc="The tag with which internal metrics are emitted.")
        emit_interval = option(60.0, "time", doc="Determine the rate to emit internal metrics as events.")
        include_config = option(False, "bool", doc="Determine whether to include the config information.")
        include_retry = option(False, "bool", doc="Determine whether to include the retry information.")
        include_debug_info = option(False, "bool", doc="Allow ?debug=1 (pretty JSON). Ruby instance "
                                                       "variables (?with_ivars=) have no kawa equivalent.")

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        self._emit_task: asyncio.Task[None] | None = None
        self._emitted = 0

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.server is not None:
            return
        await super().start()
        self.log.debug(f"listening monitoring http server on http://{self.bind_address}:{self.listen_port}"
                       f"/api/plugins for worker{self.ctx.worker_id}")
        if self.options.tag:
            self.log.debug(f"tag parameter is specified. Emit plugins info to '{self.options.tag}'")
            self._emit_task = asyncio.get_running_loop().create_task(self._emit_loop(), name="monitor_agent-emit")

    async def stop(self) -> None:
        if self._emit_task is not None:
            task, self._emit_task = self._emit_task, None
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await super().stop()

    async def _emit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.emit_interval)
            now = self.ctx.clock()
            records = [plugin_info(s) for s in self.registry.snapshots()]
            try:
                await self.emitter.emit(self.options.tag, [(now, r) for r in records])
                self._emitted += len(records)
            except Exception as exc:  # the next tick tries again; a broken route must not end the loop
                self.log.limited("monitor_agent.emit", "warn", "failed to emit monitor_agent events",
                                 error_class=type(exc).__name__, error=str(exc))

    # -- HTTP ---------------------------------------------------------------------------------------
    def routes(self) -> dict[str, Handler]:
        return {"/api/plugins": self._plugins_ltsv, "/api/plugins.json": self._plugins_json,
                "/api/config": self._config_ltsv, "/api/config.json": self._config_json}

    def not_found(self, _req: Request) -> Response:
        return Response(404, NOT_FOUND_BODY, JSON)

    def _plugins_ltsv(self, req: Request) -> Response:
        return Response(200, render_ltsv(self._select(req)), LTSV)

    def _plugins_json(self, req: Request) -> Response:
        return Response(200, render_json({"plugins": self._select(req)}, self._pretty(req)), JSON)

    def _config_ltsv(self, _req: Request) -> Response:
        return Response(200, render_ltsv([self._config()]), LTSV)

    def _config_json(self, req: Request) -> Response:
        return Response(200, render_json(self._config(), self._pretty(req)), JSON)

    def _pretty(self, req: Request) -> bool:
        return bool(self.options.include_debug_info and req.param("debug"))

    def _config(self) -> dict[str, Any]:
        # Fluentd adds its supervisor's command-line options; the CLI may put its own in extras.
        return {"pid": os.getpid(), "ppid": os.getppid(), "version": __version__,
                **self.ctx.extras.get("cli_options", {})}

    def _select(self, req: Request) -> list[dict[str, Any]]:
        """Fluentd's build_object: ?tag= (the root <match> for a tag), ?@id=/?id=, ?@type=/?type=, or all.
        include_config / include_retry come from the config, never from the query."""
        opts = {"with_config": self.options.include_config, "with_retry": self.options.include_retry}
        snaps = self.registry.snapshots()
        tag = req.param("tag")
        if tag is not None:
            output = _output_for_tag(self.registry.pipeline, tag)
            return [plugin_info(s, **opts) for s in snaps if s.plugin is output][:1] if output else []
        plugin_id = req.param("@id", "id")
        if plugin_id is not None:
            return [plugin_info(s, **opts) for s in snaps if s.plugin_id == plugin_id][:1]
        type_name = req.param("@type", "type")
        if type_name is not None:
            return [plugin_info(s, **opts) for s in snaps if s.type == type_name]
        return [plugin_info(s, **opts) for s in snaps]

    def stats(self) -> dict[str, Any]:
        return {EMIT_RECORDS: self._emitted}


def _output_for_tag(pipe: Any, tag: str) -> Any:
    """The first root <match> whose pattern matches (Fluentd looks at the root router only).
    Walks the directives instead of Label.route so arbitrary query tags do not grow its cache."""
    labels = getattr(getattr(pipe, "router", None), "labels", None)
    if not isinstance(labels, dict) or "" not in labels:
        return None
    for pattern, plugin, is_filter in labels[""].directives:
        if not is_filter and pattern.match(tag):
            return plugin
    return None

