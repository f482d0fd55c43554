"""Runs one worker: starts outputs, filters, inputs; handles signals; stops in reverse order.

SIGTERM/SIGINT stop cleanly (inputs stop, everything in flight is written, exit 0); a second
signal forces exit. SIGUSR1 flushes every buffer now; SIGHUP and SIGUSR2 reload the configuration;
SIGCONT writes a sigdump (kawa.engine.sigdump). One asyncio loop owns all I/O.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, Callable

from kawa.errors import ConfigError, KawaError

from kawa.engine import heap
from kawa.engine.pipeline import Pipeline
from kawa.engine.router import FLUENT_LOG_LABEL, ROOT_LABEL, _Raw
from kawa.log import LEVELS, Logger

# Fluentd::Log.event_tags: the tags its own log events carry
FLUENT_LOG_TAGS = tuple(f"fluent.{level}" for level in LEVELS)


class Agent:
    """`reload` builds a new pipeline from the config file (SIGHUP); it raises ConfigError when the
    new configuration is wrong, and the running one is kept."""

    def __init__(self, pipeline: Pipeline, log: Logger, *, worker_id: int = 0,
                 reload: Callable[[], Pipeline] | None = None) -> None:
        self.pipe = pipeline
        self._reload = reload
        self._reloading = False
        self.log = log
        self.wlog = log.child(prefix=f"#{worker_id} ")
        self.worker_id = worker_id
        self._stop = asyncio.Event()
        self._signals = 0
        self._log_events: list[tuple[str, str, dict[str, Any]]] = []
        self.exit_code = 0
        self._stopped = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(self.flush_all()))
        # SIGUSR2 is Fluentd's graceful reload since 1.9 (SIGHUP the older one): both reload here.
        # Left to Python's default, SIGUSR2 would end the process on the spot, without a drain.
        for sig in (signal.SIGHUP, signal.SIGUSR2):
            loop.add_signal_handler(sig, lambda sig=sig: loop.create_task(self.reload(sig)))
        loop.add_signal_handler(signal.SIGCONT, self.sigdump)
        self._route_own_logs()
        await self.start()
        heap.settle()
        self.wlog.info("starting fluentd worker", pid=os.getpid(), ppid=os.getppid(), worker=self.worker_id)
        self.wlog.info("fluentd worker is now running", worker=self.worker_id)
        await self._stop.wait()
        self.wlog.info("fluentd worker is now stopping", worker=self.worker_id)
        self.log.sink.event_hook = None   # Fluentd's last fluent.* event is "now stopping"
        if not self._stopped:
            await self.stop()
        return self.exit_code

    def request_stop(self) -> None:
        self._stop.set()

    def _on_stop_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            self.log.info("Received graceful stop")
            from kawa.metrics import begin_drain

            begin_drain()             # /readyz answers 503 while we drain
            self._stop.set()
        else:
            self.log.warn("Received a second stop signal: exiting now without flushing", signal=sig)
            os._exit(1)

    async def start(self) -> None:
        """Outputs, then filters, then inputs. A plugin that cannot start (a pos_file directory that
        cannot be made, state held by another process) stops the ones started before it and raises
        one KawaError naming it, which exits 1 without a traceback."""
        started: list[tuple[str, Any]] = []
        for kind, plugins in (("output", self.pipe.outputs), ("filter", self.pipe.filters), ("input", self.pipe.inputs)):
            for plugin in plugins:
                try:
                    await plugin.start()
                except Exception as exc:
                    for done_kind, done in reversed(started):
                        await self._stop_plugin(done_kind, done)
                    if isinstance(exc, KawaError):
                        raise
                    raise KawaError(f'{kind} plugin type={_Sym(plugin.type_name)} plugin_id="{plugin.plugin_id}" '
                                    f"could not start: {type(exc).__name__}: {exc}") from None
                started.append((kind, plugin))

    async def stop(self) -> None:
        self.wlog.info("shutting down fluentd worker", worker=self.worker_id)
        for inp in self.pipe.inputs:
            await self._stop_plugin("input", inp)
        for filt in self.pipe.filters:
            await self._stop_plugin("filter", filt)
        await self._drain_log_events()
        for out in self.pipe.outputs:
            await self._stop_plugin("output", out)

    async def _stop_plugin(self, kind: str, plugin: Any) -> None:
        """Fluentd's "shutting down <kind> plugin" line, then the plugin's stop (its errors logged)."""
        self.wlog.info(f"shutting down {kind} plugin", type=_Sym(plugin.type_name), plugin_id=plugin.plugin_id)
        await _guard(plugin.stop(), self.wlog, plugin.plugin_id)

    async def reload(self, sig: int = signal.SIGHUP) -> bool:
        """Swap to a freshly built pipeline. File buffers stay on disk and are resumed by the new
        outputs; memory buffers are flushed by the old outputs' stop(); tail positions are saved by
        the old inputs' stop() and resumed by the new ones."""
        if self._reload is None:
            self.log.warn(f"{signal.Signals(sig).name}: this worker cannot reload its configuration; ignored")
            return False
        if self._reloading or self._stop.is_set():
            return False
        self._reloading = True
        try:
            self.log.info(f"reloading configuration ({signal.Signals(sig).name})")
            try:
                new = self._reload()
            except ConfigError as exc:
                for problem in exc.problems:
                    self.log.error(str(problem))
                self.log.error("configuration reload failed: keeping the running configuration")
                return False
            hook, self.log.sink.event_hook = self.log.sink.event_hook, None
            heap.unsettle()
            await self.stop()
            self.pipe = new
            try:
                await self.start()
            except KawaError as exc:
                # the old pipeline is stopped and the new one cannot run: exit 1 (a supervisor or
                # the kubelet restarts the process) rather than run with nothing started
                self.log.error(str(exc))
                self.log.error("configuration reload failed after the running configuration was stopped: exiting")
                self.exit_code = 1
                self._stopped = True            # start() stopped what it had started
                self._stop.set()
                return False
            heap.settle()
            if hook is not None:
                self._route_own_logs()
            self.log.info("configuration reloaded")
            return True
        finally:
            self._reloading = False

    def sigdump(self) -> None:
        """SIGCONT: threads, tasks, plugin counters and memory into /tmp/sigdump-<pid>.log (or
        SIGDUMP_PATH), as Fluentd's sigdump does (kawa.engine.sigdump)."""
        from kawa.engine import sigdump

        try:
            path = sigdump.write(self.pipe.plugins)
        except OSError as exc:
            self.log.warn("could not write the sigdump", error=f"{type(exc).__name__}: {exc}")
            return
        self.log.info("sigdump written", path=path)

    async def flush_all(self) -> None:
        """SIGUSR1, as Fluentd: reopen the log file (logrotate's postrotate), write every buffer now."""
        self.log.reopen_file()
        self.wlog.info("force flushing buffered events")
        for out in self.pipe.outputs:
            await out.flush()

    # -- Fluentd's own log as events (fluent.<level>) ---------------------------------------------
    def _route_own_logs(self) -> None:
        router = self.pipe.router
        if FLUENT_LOG_LABEL in router.labels:
            label = FLUENT_LOG_LABEL
        # Fluentd's EventRouter#match? is true when a <filter> alone matches a fluent.* tag too.
        elif any(p.match(tag) for p, _, _ in router.labels[ROOT_LABEL].directives for tag in FLUENT_LOG_TAGS):
            label = ROOT_LABEL
            self.wlog.warn("define <match fluent.**> to capture fluentd logs in top level is deprecated. "
                           "Use <label @FLUENT_LOG> instead")
        else:
            return
        self._log_label = label
        loop = asyncio.get_running_loop()

        def hook(level: str, message: str, fields: dict[str, Any]) -> None:
            self._log_events.append((level, message, fields))
            if len(self._log_events) == 1:
                loop.call_soon_threadsafe(lambda: loop.create_task(self._drain_log_events()))

        self.log.sink.event_hook = hook

    async def _drain_log_events(self) -> None:
        events, self._log_events = self._log_events, []
        if not events or not hasattr(self, "_log_label"):
            return
        from kawa.event import now_ns

        hook, self.log.sink.event_hook = self.log.sink.event_hook, None   # no log loop while emitting
        try:
            for level, message, fields in events:
                record = {k: v for k, v in fields.items() if isinstance(v, (str, int, float, bool))}
                record["message"] = message
                await self.pipe.router.emit(self._log_label, f"fluent.{level}", [(now_ns(), record)])
        finally:
            self.log.sink.event_hook = hook


class _Sym:
    """Prints as a Ruby symbol (`type=:tail`) in log fields, as Fluentd does."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f":{self.name}"


async def _guard(coro: Any, log: Logger, plugin_id: str) -> None:
    try:
        await coro
    except Exception as exc:  # one plugin failing to stop must not keep the others from stopping
        # Fluentd prints a class name bare: error_class=OSError
        log.error("unexpected error while shutting down", plugin_id=plugin_id,
                  error_class=_Raw(type(exc).__name__), error=str(exc))
