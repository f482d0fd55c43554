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

    def cursor_at(seqnum: int) -> bool:      # the cursor's sequence number is hex
        return cursor.exists() and f";i={seqnum:x};" in cursor.read_text()

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
            no_loss.wait_until(functools.partial(cursor_at, last), 10, "the cursor saved", kawa)
            kawa.kill()
    finally:
        if kawa.proc is not None and kawa.proc.poll() is None:
            kawa.proc.kill()
    got = written(tmp_path)
    assert set(got) == set(want), sorted(set(want) - set(got))[:5]
    assert [m for m, n in got.items() if n > 1] == []
    assert json.loads(cursor.read_text())["journal"].startswith("s=")
