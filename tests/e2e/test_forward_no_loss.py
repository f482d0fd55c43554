"""An application sending with Fluentd's forward protocol and acks (out_forward's require_ack_response,
fluent-logger's) into kawa -> cloudwatch_logs, with kill -9 at the two bad moments: while CloudWatch
Logs stores a call whose answer kawa never sees (so no ack goes out), and right after a chunk arrived.
The sender resends every chunk it got no ack for, as out_forward does; nothing may be lost, and with
the memory buffer (the plugin's default, with its sent journal under root_dir) nothing doubled."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from pathlib import Path

import msgpack
import orjson
import pytest

from kawa.testing import no_loss
from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, fake_aws_env, free_port, read_all_events

pytestmark = pytest.mark.e2e

GROUP, STREAM = "forward", "app"
CHUNKS, PER_CHUNK = 16, 50

CONF = """
<system>
  root_dir {root}/state
</system>
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
"""



class Sender:
    """out_forward with require_ack_response, reduced: one chunk at a time, resent until acked."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.resent = 0

    def send(self, chunk_id: str, events: list[list[object]]) -> None:
        entries = b"".join(msgpack.packb(e) for e in events)
        self.sock = self.sock or self._connect()
        self.sock.sendall(msgpack.packb(["app.web", entries, {"chunk": chunk_id, "size": len(events)}],
                                        use_bin_type=True))

    def ack(self, chunk_id: str, timeout: float) -> bool:
        assert self.sock is not None
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except (OSError, socket.timeout):
            data = b""
        if not data:
            self.sock.close()
            self.sock = None
            return False
        return bool(msgpack.unpackb(data) == {"ack": chunk_id})

    def deliver(self, chunk_id: str, events: list[list[object]], deadline: float, sent: bool = False) -> None:
        """Send until acked (`sent`: it was sent once already, unacked); a connection refused while
        kawa restarts is retried."""
        first = not sent
        while time.monotonic() < deadline:
            try:
                if not first:
                    self.resent += 1
                first = False
                self.send(chunk_id, events)
                if self.ack(chunk_id, 15.0):
                    return
            except OSError:
                self.sock = None
            time.sleep(0.2)
        raise AssertionError(f"chunk {chunk_id} never acked")

    def _connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)


def wait_listening(port: int, kawa: no_loss.Kawa) -> None:
    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    no_loss.wait_until(up, 30, "the forward port", kawa)


def test_acked_forwarding_through_kill_9_loses_and_doubles_nothing(tmp_path: Path) -> None:
    port = free_port()
    now = int(time.time())
    chunks = [[[now, {"n": c * PER_CHUNK + i}] for i in range(PER_CHUNK)] for c in range(CHUNKS)]
    with MotoServer() as moto, StrictCloudWatchProxy(moto.endpoint) as cloudwatch:
        conf = tmp_path / "fluent.conf"
        conf.write_text(CONF.format(root=tmp_path, port=port) +
                        no_loss.cloudwatch_match("app.**", cloudwatch.endpoint, group=GROUP, stream=STREAM))
        env = fake_aws_env({k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
        kawa = no_loss.Kawa(conf, tmp_path / "kawa.log", env)
        kawa.start()
        try:
            wait_listening(port, kawa)
            sender = Sender(port)
            deadline = time.monotonic() + 120
            for c, events in enumerate(chunks):
                if c in (5, 11):
                    # CloudWatch stores the call carrying this chunk, kawa dies before its answer: no ack
                    sender.send(f"c{c}", events)
                    assert no_loss.hold_next_call(cloudwatch), "kawa sent no PutLogEvents call"
                    kawa.kill()
                    kawa.start()
                    wait_listening(port, kawa)
                    sender.sock = None
                elif c == 8:
                    sender.send(f"c{c}", events)             # arrived, not yet delivered: no ack
                    time.sleep(0.1)
                    kawa.kill()
                    kawa.start()
                    wait_listening(port, kawa)
                    sender.sock = None
                sender.deliver(f"c{c}", events, deadline, sent=c in (5, 8, 11))
            want = CHUNKS * PER_CHUNK
            no_loss.wait_until(lambda: len(read_all_events(cloudwatch.endpoint, GROUP, STREAM)) >= want, 60,
                               "every event in CloudWatch Logs", kawa)
            rc, _took = kawa.term(60)
            assert rc == 0, kawa.log.read_text()[-4000:]
            seen = Counter(orjson.loads(e["message"])["n"] for e in read_all_events(cloudwatch.endpoint, GROUP, STREAM))
        finally:
            if kawa.proc is not None and kawa.proc.poll() is None:
                kawa.proc.kill()
    log = kawa.log.read_text()
    print(f"\nforward -> cloudwatch_logs, 3 kills: {sender.resent} chunks resent, {sum(seen.values())} events "
          f"stored of {want}")
    assert sender.resent >= 3
    assert sorted(n for n in range(want) if not seen[n]) == [], "lost"
    assert {n: k for n, k in seen.items() if k > 1} == {}, "doubled"
    assert "a PutLogEvents call whose answer was lost is stored in CloudWatch Logs" in log
