"""Observability: metric catalog, scrape-time registry, exposition, health probes, tiny HTTP server.

The agent calls `begin_drain()` on SIGTERM so /readyz answers 503 while buffers drain.
"""

from kawa.metrics.health import begin_drain, end_drain, is_draining

__all__ = ["begin_drain", "end_drain", "is_draining"]
