"""kawa.ssl_gate: the daemon starts without Python's ssl, and TLS users still get all of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

PROBE = r"""
import sys
sys.path.insert(0, sys.argv[1])
from kawa import ssl_gate
ssl_gate.defer()
import asyncio, http.client                 # as monitor_agent / prometheus import it
assert "ssl" not in {k for k, v in sys.modules.items() if v is not None}
assert not hasattr(http.client, "HTTPSConnection")
asyncio.run(asyncio.sleep(0))              # the event loop works without ssl
ssl_gate.allow()
import ssl, http.client
assert hasattr(http.client, "HTTPSConnection") and ssl.create_default_context() is not None
# asyncio was imported without ssl: its TLS protocol gets its error classes, its loop the module
import asyncio.sslproto, asyncio.base_events, asyncio.selector_events
assert asyncio.sslproto.SSLAgainErrors == (ssl.SSLWantReadError, ssl.SSLSyscallError)
assert asyncio.base_events.ssl is ssl and asyncio.selector_events.ssl is ssl
print("ok")
"""


def test_deferred_ssl_comes_back_whole_when_allowed() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, str(SRC)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
