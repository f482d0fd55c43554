"""Liveness (/healthz) and readiness (/readyz) for Kubernetes probes, shared by the HTTP inputs.

Liveness: a heartbeat task stamps the time on every tick; a stamp older than `stale_after` means
the event loop is starved or wedged. (A loop blocked outright cannot answer at all: the probe
times out, which Kubernetes also counts as a failure.) Readiness: no output has been failing
(errors growing, no successful write) for longer than `failing_after`, and the agent is not draining.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from kawa.metrics import catalog

# Process-wide: the agent calls begin_drain() on SIGTERM before it stops the inputs, so every
# Health of this worker answers 503 on /readyz while the buffers drain.
_draining = False


def begin_drain() -> None:
    """Called by the agent on the first SIGTERM/SIGINT: /readyz answers 503 from now on."""
    global _draining
    _draining = True


def end_drain() -> None:
    """Back to normal (tests; a restart in-process)."""
    global _draining
    _draining = False


def is_draining() -> bool:
    return _draining


@dataclass
class _Progress:
    write_count: int
    errors_at_write: int
    failing_since: float | None = None


class Health:
    """Heartbeat stamp, drain flag and per-output failure tracking. One per worker (ctx.extras["health"])."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, heartbeat_interval: float = 1.0,
                 stale_after: float = 10.0, failing_after: float = 60.0) -> None:
        self.clock = clock
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.failing_after = failing_after
        self.draining = False
        self.last_beat = clock()
        self._progress: dict[str, _Progress] = {}
        self._task: asyncio.Task[None] | None = None
        self._users = 0
        self._outputs: Callable[[], Iterable[Any]] = tuple

    # -- heartbeat ----------------------------------------------------------------------------------
    def beat(self) -> None:
        self.last_beat = self.clock()

    def heartbeat_age(self) -> float:
        return max(0.0, self.clock() - self.last_beat)

    async def _run(self) -> None:
        while True:
            self.beat()
            self.observe_outputs()
            await asyncio.sleep(self.heartbeat_interval)

    def acquire(self, outputs: Callable[[], Iterable[Any]]) -> None:
        """Start the heartbeat (once, however many HTTP inputs share this Health)."""
        self._outputs = outputs
        self._users += 1
        if self._task is None:
            self.beat()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kawa-heartbeat")

    async def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # -- probes -------------------------------------------------------------------------------------
    def liveness(self) -> tuple[bool, str]:
        age = self.heartbeat_age()
        if age > self.stale_after:
            return False, f"event loop heartbeat is {age:.1f}s old (limit {self.stale_after:g}s)"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        if self.draining or _draining:
            return False, "draining"
        live, why = self.liveness()
        if not live:
            return False, why
        failing = self.observe_outputs()
        if failing:
            return False, "outputs failing: " + ", ".join(failing)
        return True, "ok"

    def observe_outputs(self) -> list[str]:
        """Sample each output's counters; return the plugin ids failing for longer than allowed."""
        now = self.clock()
        failing: list[str] = []
        for out in self._outputs():
            try:
                stats = out.stats()
            except Exception:  # a broken stats() must not take the probe down
                continue
            since = self._failing_since(out.plugin_id, stats, now)
            if since is not None and now - since > self.failing_after:
                failing.append(out.plugin_id)
        return failing

    def _failing_since(self, plugin_id: str, stats: dict[str, Any], now: float) -> float | None:
        writes = int(stats.get(catalog.WRITE_COUNT, 0) or 0)
        errors = int(stats.get(catalog.NUM_ERRORS, stats.get(catalog.RETRY_COUNT, 0)) or 0)
        prog = self._progress.get(plugin_id)
        if prog is None or writes != prog.write_count:
            # a successful write clears the failure: the output is moving again
            prog = self._progress[plugin_id] = _Progress(writes, errors)
        elif errors > prog.errors_at_write and prog.failing_since is None:
            prog.failing_since = now
        return prog.failing_since


def health_of(extras: dict[str, Any]) -> Health:
    """The worker's Health, created on first use and shared through the plugin context's extras."""
    found = extras.get("health")
    if found is None:
        found = extras["health"] = Health()
    return found  # type: ignore[no-any-return]


def probe_routes(health: Health) -> dict[str, Any]:
    """/healthz and /readyz handlers: 200 "ok", or 503 with the reason in the body."""
    from kawa.metrics.http import Request, Response

    def answer(result: tuple[bool, str]) -> Response:
        ok, why = result
        return Response(200 if ok else 503, why + "\n")

    def healthz(_req: Request) -> Response:
        return answer(health.liveness())

    def readyz(_req: Request) -> Response:
        return answer(health.readiness())

    return {"/healthz": healthz, "/readyz": readyz}
