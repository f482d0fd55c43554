"""A kawa process reading the journal (systemd input -> file output with its file buffer), killed
with SIGKILL between appends: every entry is written once; the cursor the restart resumes from is
the one saved after the output stored the entries (Fluentd's storage JSON under root_dir)."""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from kawa.testing import no_loss
from kawa.testing.journal import append_entries

pytestmark = pytest.mark.e2e

CONF = """
<system>
  root_dir {root}/state
</system>
<source>
  @type systemd
  @id kubelet_journal
  tag kubelet
  path {root}/journal
  matches [{{"_SYSTEMD_UNIT": "kubelet.service"}}]
  read_from_head true
  <entry>
    field_map {{"MESSAGE": "message"}}
    field_map_strict true
  </entry>
</source>
<match kubelet>
  @type file
  path {root}/out/kubelet
  append true
  <format>
    @type single_value
  </format>
  <buffer>
    flush_mode immediate
  </buffer>
</match>
"""


def cursor_at(cursor: Path, seqnum: int) -> bool:
    """The cursor file names the entry of sequence number `seqnum` (hex in the cursor)."""
    return cursor.exists() and f";i={seqnum:x};" in cursor.read_text()


def written(root: Path) -> Counter[str]:
    return Counter(line for f in (root / "out").glob("kubelet*.log") for line in f.read_text().splitlines())


def test_kill_9_between_appends_resumes_at_the_saved_cursor(tmp_path: Path) -> None:
    (tmp_path / "journal").mkdir()
    journal = tmp_path / "journal" / "system.journal"
    conf = tmp_path / "fluent.conf"
    conf.write_text(CONF.format(root=tmp_path))
    kawa = no_loss.Kawa(conf, tmp_path / "kawa.log", dict(os.environ))
    want: list[str] = []
    start_us = time.time_ns() // 1000 - 60_000_000
    cursor = tmp_path / "state" / "worker0" / "kubelet_journal" / "storage.json"

    def all_written() -> bool:
        return set(want) <= set(written(tmp_path))


    try:
        for round_ in range(3):
            batch = [f"round {round_} entry {i}" for i in range(400)]
            entries = [{"MESSAGE": m, "_SYSTEMD_UNIT": "kubelet.service"} for m in batch]
            entries.insert(100, {"MESSAGE": "not kubelet", "_SYSTEMD_UNIT": "sshd.service"})
            append_entries(journal, entries, start_us + round_ * 10_000)
            want += batch
            kawa.start()
            no_loss.wait_until(all_written, 30, f"round {round_} written", kawa)
            last = len(want) + round_ + 1        # the sshd entries count too
            no_loss.wait_until(functools.partial(cursor_at, cursor, last), 10, "the cursor saved", kawa)
            kawa.kill()
    finally:
        if kawa.proc is not None and kawa.proc.poll() is None:
            kawa.proc.kill()
    got = written(tmp_path)
    assert set(got) == set(want), sorted(set(want) - set(got))[:5]
    assert [m for m, n in got.items() if n > 1] == []
    assert json.loads(cursor.read_text())["journal"].startswith("s=")


CWL_CONF = """
<source>
  @type systemd
  tag kubelet
  path {root}/journal
  read_from_head true
  <storage>
    path {root}/cursor.json
  </storage>
</source>
<match kubelet>
  @type cloudwatch_logs
  endpoint {endpoint}
  region us-east-1
  log_group_name node
  log_stream_name kubelet
  auto_create_stream true
  message_keys MESSAGE
  <buffer>
    flush_interval 20s
  </buffer>
</match>
"""


def test_a_journal_backlog_into_a_memory_buffer_does_not_wait_for_its_flush_interval(tmp_path: Path) -> None:
    """The cursor waits until CloudWatch has the entries (a memory buffer: delivered), so the input
    stops after 8 unsettled batches. Then it asks the output to flush now (kawa.delivery.hurry), as
    tail does; otherwise a backlog moves 8,000 entries per flush_interval (20 s here: 60 s for the
    20,000). With it, 16,000 go at once and the last 4,000 wait for the flush_interval, as any memory
    buffer's events do."""
    from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, fake_aws_env, read_all_events

    (tmp_path / "journal").mkdir()
    now_us = time.time_ns() // 1000 - 600_000_000
    append_entries(tmp_path / "journal" / "system.journal",
                   [{"MESSAGE": f"entry {i}", "_SYSTEMD_UNIT": "kubelet.service"} for i in range(20_000)], now_us)
    with MotoServer() as moto, StrictCloudWatchProxy(moto.endpoint) as cloudwatch:
        conf = tmp_path / "fluent.conf"
        conf.write_text(CWL_CONF.format(root=tmp_path, endpoint=cloudwatch.endpoint))
        env = fake_aws_env({k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
        kawa = no_loss.Kawa(conf, tmp_path / "kawa.log", env)
        kawa.start()
        try:
            def arrived() -> int:
                try:
                    return len(read_all_events(cloudwatch.endpoint, "node", "kubelet"))
                except Exception:       # the group does not exist yet
                    return 0
            no_loss.wait_until(lambda: arrived() >= 20_000, 42, "20,000 entries in CloudWatch", kawa)
            rc, _took = kawa.term(60)
            assert rc == 0, kawa.log.read_text()[-3000:]
        finally:
            if kawa.proc is not None and kawa.proc.poll() is None:
                kawa.proc.kill()
        messages = [e["message"] for e in read_all_events(cloudwatch.endpoint, "node", "kubelet")]
    assert sorted(messages) == sorted(f"entry {i}" for i in range(20_000))


def test_a_cursor_saved_behind_the_buffered_chunks_does_not_send_them_twice(tmp_path: Path) -> None:
    """A kill -9 between a chunk's fsync and the cursor's save (milliseconds) leaves the cursor one
    batch behind what the file buffer holds: here the cursor file is set back by hand after the kill,
    to the one saved after the first round. The chunks carry the journal sequence number of their
    last entry, so the restart skips what they hold: each entry is written once (before, the second
    round was written twice)."""
    (tmp_path / "journal").mkdir()
    journal = tmp_path / "journal" / "system.journal"
    conf = tmp_path / "fluent.conf"
    # the chunks stay in the buffer until the stop, which writes them out
    conf.write_text(CONF.format(root=tmp_path).replace(
        "flush_mode immediate", "flush_mode interval\n    flush_interval 1h\n    flush_at_shutdown true"))
    kawa = no_loss.Kawa(conf, tmp_path / "kawa.log", dict(os.environ))
    cursor = tmp_path / "state" / "worker0" / "kubelet_journal" / "storage.json"
    start_us = time.time_ns() // 1000 - 60_000_000
    rounds = [[f"round {r} entry {i}" for i in range(300)] for r in range(2)]
    saved = []
    try:
        kawa.start()
        for r, batch in enumerate(rounds):
            append_entries(journal, [{"MESSAGE": m, "_SYSTEMD_UNIT": "kubelet.service"} for m in batch],
                           start_us + r * 10_000)
            no_loss.wait_until(functools.partial(cursor_at, cursor, 300 * (r + 1)), 30,
                               f"the cursor after round {r}", kawa)
            saved.append(cursor.read_text())
        kawa.kill()
        cursor.write_text(saved[0])         # as if the kill came before the second round's cursor
        kawa.start()
        no_loss.wait_until(functools.partial(cursor_at, cursor, 600), 30, "the cursor after the restart", kawa)
        rc, _took = kawa.term(60)
        assert rc == 0, kawa.log.read_text()[-3000:]
    finally:
        if kawa.proc is not None and kawa.proc.poll() is None:
            kawa.proc.kill()
    got = written(tmp_path)
    assert got == Counter(rounds[0] + rounds[1]), sorted(m for m, n in got.items() if n != 1)[:5]
    assert "entries after the saved cursor up to sequence number 0x258 are in the buffer already" in \
        kawa.log.read_text()
