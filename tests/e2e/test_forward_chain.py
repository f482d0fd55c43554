"""A sidecar kawa (tail -> forward, require_ack_response) shipping to an aggregator kawa (forward ->
file) that is killed with SIGKILL and restarted twice while lines flow: every line reaches the
aggregator's file (the sidecar keeps each chunk until it is acked, and the aggregator acks only what its
file buffer fsync'd). Over TCP, and over TLS as the real processes load it (kawa holds Python's ssl
back until a plugin asks for it)."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from kawa.testing import no_loss
from kawa.testing.cwl_server import free_port
from kawa.testing.tls import write_self_signed

pytestmark = pytest.mark.e2e

SIDECAR = """
<source>
  @type tail
  path {log}
  pos_file {root}/sidecar.pos
  read_from_head true
  tag app.web
  <parse>
    @type none
  </parse>
</source>
<match app.**>
  @type forward
  require_ack_response true
  ack_response_timeout 5s
  recover_wait 1s
{client_tls}
  <server>
    host 127.0.0.1
    port {port}
  </server>
  <buffer>
    flush_interval 0.5s
    retry_wait 0.5s
    retry_max_interval 1s
  </buffer>
</match>
"""

AGGREGATOR = """
<source>
  @type forward
  bind 127.0.0.1
  port {port}
{server_tls}
</source>
<match app.**>
  @type file
  path {root}/out/app
  append true
  <format>
    @type single_value
  </format>
  <buffer>
    @type file
    path {root}/aggregator-buffer
    flush_mode immediate
  </buffer>
</match>
"""



def delivered(root: Path) -> Counter[str]:
    return Counter(line for f in (root / "out").glob("app*.log") for line in f.read_text().splitlines())


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_sidecar_to_aggregator_through_aggregator_kills(tmp_path: Path, transport: str) -> None:
    port = free_port()
    log = tmp_path / "app.log"
    log.touch()
    client_tls = server_tls = ""
    if transport == "tls":
        cert, key = tmp_path / "aggregator.pem", tmp_path / "aggregator-key.pem"
        write_self_signed(cert, key, ("localhost",), passphrase="secret")
        client_tls = f"  transport tls\n  tls_cert_path {cert}\n"
        server_tls = (f"  <transport tls>\n    cert_path {cert}\n    private_key_path {key}\n"
                      "    private_key_passphrase secret\n  </transport>")
    sidecar_conf = SIDECAR.format(log=log, root=tmp_path, port=port, client_tls=client_tls)
    if transport == "tls":
        sidecar_conf = sidecar_conf.replace("host 127.0.0.1", "host localhost")   # the name is checked
    (tmp_path / "sidecar.conf").write_text(sidecar_conf)
    (tmp_path / "aggregator.conf").write_text(AGGREGATOR.format(root=tmp_path, port=port, server_tls=server_tls))
    env = dict(os.environ)
    sidecar = no_loss.Kawa(tmp_path / "sidecar.conf", tmp_path / "sidecar.log", env)
    aggregator = no_loss.Kawa(tmp_path / "aggregator.conf", tmp_path / "aggregator.log", env)
    aggregator.start()
    sidecar.start()
    want = [f"line {i:05d}" for i in range(3000)]
    try:
        for part in range(3):
            with log.open("a") as f:
                f.write("".join(w + "\n" for w in want[part * 1000:(part + 1) * 1000]))
            time.sleep(0.7)
            if part < 2:
                aggregator.kill()
                time.sleep(0.5)               # the sidecar meets a closed port meanwhile
                aggregator.start()
        no_loss.wait_until(lambda: set(want) <= set(delivered(tmp_path)), 90, "every line at the aggregator",
                           sidecar)
    finally:
        for proc in (sidecar, aggregator):
            if proc.proc is not None and proc.proc.poll() is None:
                proc.term(60)
    got = delivered(tmp_path)
    doubled = sum(n - 1 for n in got.values() if n > 1)
    print(f"\nsidecar -> aggregator ({transport}), 2 aggregator kills: {len(want)} lines, all delivered, "
          f"{doubled} written twice")
    assert set(got) == set(want)
    assert "detached forwarding server" in (tmp_path / "sidecar.log").read_text()
