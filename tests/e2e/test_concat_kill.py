"""tail -> concat (a multiline stack trace) -> cloudwatch_logs, kill -9 while concat holds a group:
the group's lines are read again after the restart and arrive joined, once; what was delivered before
the kill is not sent again: the sent journal knows it by its time, the first line's (use_first_timestamp).
Fluentd's in_tail has moved past the held lines: that group is lost."""

from __future__ import annotations

import os
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest

from kawa.testing import no_loss
from kawa.testing.cwl_server import MotoServer, StrictCloudWatchProxy, fake_aws_env, free_port, read_all_events

pytestmark = pytest.mark.e2e

GROUP, STREAM = "concat", "app"



def tail_source(parse: str) -> str:
    """The <source> (tail app.log, tag app) with its <parse> body; {log} and {pos} are filled in later."""
    return ("\n<source>\n  @type tail\n  path {log}\n  pos_file {pos}\n  read_from_head true\n  tag app\n"
            f"  <parse>\n    @type regexp\n{parse}  </parse>\n</source>\n")


SOURCE = tail_source("    expression /^(?:(?<time>\\d{{10}}) )?(?<message>.*)$/\n    time_format %s\n")

CONCAT = r"""
<filter app>
  @type concat
  key message
  multiline_start_regexp /^START/
  use_first_timestamp true
</filter>
"""



def messages(endpoint: str) -> list[str]:
    try:
        events = read_all_events(endpoint, GROUP, STREAM)
    except Exception:               # the group does not exist yet
        return []
    return [orjson.loads(e["message"])["message"] for e in events]


def test_kill_9_while_concat_holds_a_group(tmp_path: Path) -> None:
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    now = int(time.time()) - 60          # inside CloudWatch Logs' window
    log.write_text(f"{now} START 1\n a1\n a2\n{now + 1} START 2\n b1\n")
    with MotoServer() as moto, StrictCloudWatchProxy(moto.endpoint) as cloudwatch:
        conf = tmp_path / "fluent.conf"
        conf.write_text((SOURCE + CONCAT).format(log=log, pos=pos) +
                        no_loss.cloudwatch_match("app", cloudwatch.endpoint, group=GROUP, stream=STREAM))
        env = fake_aws_env({k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
        kawa = no_loss.Kawa(conf, tmp_path / "kawa.log", env)
        kawa.start()
        try:
            no_loss.wait_until(lambda: len(messages(cloudwatch.endpoint)) >= 1, 60, "the first group", kawa)
            # "START 2 / b1" is held: the pos_file must not be past it
            assert no_loss.position(pos) < log.stat().st_size
            kawa.kill()
            with log.open("a") as f:
                f.write(f" b2\n{now + 2} START 3\n c1\n{now + 3} START 4\n")
            kawa.start()
            no_loss.wait_until(lambda: len(messages(cloudwatch.endpoint)) >= 3, 60, "the next groups", kawa)
            rc, _took = kawa.term(60)
            assert rc == 0, kawa.log.read_text()[-4000:]
            got = Counter(messages(cloudwatch.endpoint))
        finally:
            if kawa.proc is not None and kawa.proc.poll() is None:
                kawa.proc.kill()
    text = kawa.log.read_text()
    assert got == {"START 1\n a1\n a2": 1, "START 2\n b1\n b2": 1, "START 3\n c1": 1}, (got, text[-3000:])
    # the last group, still open at the stop, goes where the plugin sends it: an error event
    assert "Flush remaining buffer: app:default" in text
    assert 'record={"message"=>"START 4"}' in text


FILE_MATCH = r"""
<match app>
  @type file
  path {out}
  append true
  <buffer>
    {flush}
  </buffer>
</match>
"""

FILE_CONF = SOURCE + r"""
<filter app>
  @type grep
  <exclude>
    key message
    pattern /DEBUG/
  </exclude>
</filter>
""" + CONCAT + FILE_MATCH


def file_messages(folder: Path) -> list[str]:
    return [orjson.loads(line.split("\t")[2])["message"]
            for path in sorted(folder.glob("out*.log")) for line in path.read_text().splitlines()]


FLUSH_MODES = pytest.mark.parametrize("flush", ["flush_mode immediate", "flush_mode interval\n    flush_interval 3s"],
                                      ids=["written-at-once", "chunk-waits-in-the-buffer"])


def kill_while_held(tmp_path: Path, conf_text: str, held_from: int, appended: str, groups: int) -> tuple[Counter[str], str]:
    """Run kawa on `conf_text` until tail's pos_file is at `held_from` (the first held line), kill -9 it,
    append `appended` to app.log, start it again until `groups` distinct messages are written, stop it.
    Returns each message's count and kawa's log."""
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    conf = tmp_path / "fluent.conf"
    conf.write_text(conf_text)
    kawa = no_loss.Kawa(conf, tmp_path / "kawa.log", dict(os.environ))
    kawa.start()
    try:
        no_loss.wait_until(lambda: no_loss.position(pos) == held_from, 30, "the pos_file at the held group", kawa)
        kawa.kill()
        assert no_loss.position(pos) == held_from
        with log.open("a") as f:
            f.write(appended)
        kawa.start()
        no_loss.wait_until(lambda: len(set(file_messages(tmp_path))) >= groups, 30, "the next groups", kawa)
        rc, _took = kawa.term(60)
        assert rc == 0, kawa.log.read_text()[-4000:]
    finally:
        if kawa.proc is not None and kawa.proc.poll() is None:
            kawa.proc.kill()
    return Counter(file_messages(tmp_path)), kawa.log.read_text()


@FLUSH_MODES
def test_kill_9_while_concat_holds_a_group_into_a_file_buffer(tmp_path: Path, flush: str) -> None:
    """The file buffer stores each emit's other events with tail's checkpoint, and a restart skips
    what a chunk already holds: that checkpoint must stay before the held group (the chunk waiting
    in the buffer lost the group when it did not), and the pos_file moves up to the group's first
    line (the group written at once was written again when it stayed at the emit's start). A grep
    before concat drops some lines: tail still finds the held line's offset."""
    log = tmp_path / "app.log"
    now = int(time.time()) - 60
    first = f"{now} START 1\n a1\n DEBUG 1\n a2\n DEBUG 2\n"
    log.write_text(first + f"{now + 1} START 2\n b1\n")
    conf = FILE_CONF.format(log=log, pos=tmp_path / "app.pos", out=tmp_path / "out", flush=flush)
    # group 1 is stored (written, or fsync'd in a chunk that waits for its flush), group 2 held
    got, text = kill_while_held(tmp_path, conf, len(first), f" b2\n{now + 2} START 3\n c1\n{now + 3} START 4\n", 3)
    assert got == {"START 1\n a1\n a2": 1, "START 2\n b1\n b2": 1, "START 3\n c1": 1}, (got, text[-3000:])


STREAMS_CONF = tail_source("    expression /^(?<stream>out|err) (?<message>.*)$/\n") + r"""
<filter app>
  @type concat
  key message
  stream_identity_key stream
  multiline_start_regexp /^START/
</filter>
""" + FILE_MATCH


@FLUSH_MODES
def test_kill_9_while_one_stream_holds_a_group_doubles_no_line_of_the_others(tmp_path: Path, flush: str) -> None:
    """stdout and stderr in one file (Docker's json-file logs): concat holds stderr's stack trace, so
    the pos_file stays at its first line while stdout's lines after it are stored. A restart from
    there reads again only the held lines up to where the stored run ended (.kawa-held): without
    that, every stdout line after the trace's start was written twice."""
    log = tmp_path / "app.log"
    head = "out START 0\nout  z1\n"
    log.write_text(head + "err START 1\nerr  e1\n" + "".join(f"out START {i}\n" for i in range(2, 12)) + "err  e2\n")
    conf = STREAMS_CONF.format(log=log, pos=tmp_path / "app.pos", out=tmp_path / "out", flush=flush)
    # stdout's groups before the last are stored; stderr's group and "out START 11" are held. The
    # new lines end both (12 and 13 are held to the stop, which sends them to the error stream).
    got, text = kill_while_held(tmp_path, conf, len(head), "err START 12\nout START 13\n", 12)
    want = Counter({"START 0\n z1": 1, "START 1\n e1\n e2": 1, **{f"START {i}": 1 for i in range(2, 12)}})
    assert got == want, (got, text[-3000:])
    assert "only the 4 lines a filter held at the last stop are read again" in text, text[-3000:]


def tail_emitted(port: int) -> int:
    """Records tail emitted so far (monitor_agent), dropped ones included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/plugins.json", timeout=5) as answer:
            plugins = orjson.loads(answer.read())["plugins"]
    except OSError:
        return -1
    return sum(p.get("emit_records", 0) for p in plugins if p["type"] == "tail")


def test_an_emit_a_filter_drops_before_concat_does_not_move_the_pos_file_past_a_held_group(tmp_path: Path) -> None:
    """A quiet app: its stack trace's first lines are held by concat, then a line grep drops comes in
    an emit of its own (concat never sees it), which settles at once. When the memory buffer then
    delivered the emit before it (the one whose lines concat holds), the pos_file moved to the end of
    the dropped line's emit, past the held group: a kill -9 then lost the trace."""
    log, pos = tmp_path / "app.log", tmp_path / "app.pos"
    port = free_port()
    head = "START 0\n"
    log.write_text(head + "START 1\n a1\n")
    conf = tmp_path / "fluent.conf"
    conf.write_text(FILE_CONF.format(log=log, pos=pos, out=tmp_path / "out",
                                     flush="@type memory\n    flush_mode interval\n    flush_interval 2s")
                    + f"<source>\n  @type monitor_agent\n  bind 127.0.0.1\n  port {port}\n</source>\n")
    kawa = no_loss.Kawa(conf, tmp_path / "kawa.log", dict(os.environ))
    kawa.start()
    try:
        no_loss.wait_until(lambda: tail_emitted(port) == 3, 30, "tail to emit the first lines", kawa)
        with log.open("a") as f:
            f.write(" DEBUG 1\n")                 # its own emit; grep drops it before concat
        no_loss.wait_until(lambda: tail_emitted(port) == 4, 30, "tail to emit the DEBUG line", kawa)
        # the flush delivers "START 0": the position moves up to the held group, not past it
        no_loss.wait_until(lambda: no_loss.position(pos) > 0, 30, "the pos_file to move", kawa)
        time.sleep(0.2)
        assert no_loss.position(pos) == len(head), "the pos_file moved past the held group"
        kawa.kill()
        with log.open("a") as f:
            f.write(" a2\nSTART 2\n")
        kawa.start()
        no_loss.wait_until(lambda: "START 1\n a1\n a2" in file_messages(tmp_path), 30, "the held group", kawa)
        rc, _took = kawa.term(60)
        assert rc == 0, kawa.log.read_text()[-4000:]
    finally:
        if kawa.proc is not None and kawa.proc.poll() is None:
            kawa.proc.kill()
    got = Counter(file_messages(tmp_path))
    assert got == {"START 0": 1, "START 1\n a1\n a2": 1}, (got, kawa.log.read_text()[-3000:])
