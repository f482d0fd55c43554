"""Keeps Python's `ssl` (OpenSSL, about 4.5 MiB resident) out of the process until a plugin needs TLS:
`import asyncio` loads it although kawa's event loop never opens a TLS transport.
"""

# `defer()` runs first thing in the `kawa` command (kawa.launch), before asyncio is imported:
# a None entry in sys.modules makes `import ssl` raise ImportError, which asyncio tolerates (it then
# refuses TLS transports, which kawa does not use). Code that needs TLS calls `allow()` first (the
# CloudWatch Logs client before it loads awscrt/botocore, the Kubernetes API client); the next
# `import ssl` then loads the real module. Library users and tests (no kawa.launch) are untouched.

from __future__ import annotations

import sys


def defer() -> None:
    if "ssl" not in sys.modules:
        sys.modules["ssl"] = None  # type: ignore[assignment]


# Standard modules that check for ssl when imported and then lack their TLS parts (http.client without
# HTTPSConnection, asyncio's TLS protocol without its error classes): imported while ssl was deferred
# (asyncio always is; http.client by monitor_agent, prometheus, ...), they are loaded again once it is
# allowed.
_CHECK_AT_IMPORT = ("http.client", "urllib.request", "asyncio.sslproto")
# asyncio modules that only keep a global `ssl` (None while deferred) to test for it: given the module.
_SSL_GLOBAL = ("asyncio.base_events", "asyncio.selector_events")


def allow() -> None:
    if "ssl" in sys.modules and sys.modules["ssl"] is None:
        del sys.modules["ssl"]
        import importlib
        import ssl  # (now, so that the reloads below see it)

        for name in _CHECK_AT_IMPORT:
            module = sys.modules.get(name)
            if module is not None:
                importlib.reload(module)
        for name in _SSL_GLOBAL:
            module = sys.modules.get(name)
            if module is not None and getattr(module, "ssl", None) is None:
                module.ssl = ssl  # type: ignore[attr-defined]
