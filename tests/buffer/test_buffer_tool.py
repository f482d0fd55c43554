"""`kawa buffer inspect|replay` on real chunks: dead letters and leftovers written by a failing file-buffered output."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kawa import buffer_tool
from kawa.buffer.output import BufferedOutput
from kawa.config.parser import parse_config_file
from kawa.engine.pipeline import PipelineBuilder
from kawa.engine.registry import register
from kawa.errors import RetryableError, UnrecoverableError
from kawa.log import LogSink, Logger

SRC = Path(__file__).resolve().parents[2] / "src"
T0 = 1562803200 * 1_000_000_000   # 2019-07-11 00:00:00 UTC


@register("output", "test_tool_failing")
class FailingOutput(BufferedOutput):
    """Raises what `FailingOutput.failure[tag]` names ("unrecoverable" / "retryable"), else records."""

    failure: dict[str, str] = {}
    written: list[tuple[str, int, dict[str, Any]]] = []

    async def write(self, chunk: Any) -> None:
        kind = FailingOutput.failure.get(chunk.metadata.tag) or FailingOutput.failure.get("*")
        if kind == "unrecoverable":
            raise UnrecoverableError("refused by the test")
        if kind == "retryable":
            raise RetryableError("try later")
        FailingOutput.written.extend((chunk.metadata.tag, t, r) for t, r in chunk.events())


@register("output", "test_tool_failing_text")
class FailingTextOutput(FailingOutput):
    """Formats at emit time (as out_file does): its chunks hold text, not events."""

    def format_events(self, tag: str, events: list[Any]) -> bytes:
        return b"".join(f"{tag} {r['n']}\n".encode() for _, r in events)


@pytest.fixture(autouse=True)
def _reset() -> None:
    FailingOutput.failure = {}
    FailingOutput.written = []


def _failing_conf(tmp: Path, buffer_extra: str = "retry_max_times 0") -> Path:
    conf = tmp / "failing.conf"
    conf.write_text(f"""
<system>
  root_dir {tmp}/root
</system>
<match app.**>
  @type test_tool_failing
  @id failing
  <buffer tag>
    @type file
    path {tmp}/buf
    flush_interval 1h
    flush_at_shutdown false
    {buffer_extra}
  </buffer>
</match>
""")
    return conf


async def _run_pipeline(conf: Path, batches: dict[str, list[Any]], *, flush: bool) -> None:
    pipe = PipelineBuilder(parse_config_file(conf), Logger(LogSink(open(os.devnull, "w")))).build()
    for out in pipe.outputs:
        await out.start()
    for tag, events in batches.items():
        await pipe.router.emit("", tag, events)
    if flush:
        for out in pipe.outputs:
            await out.flush()
    for out in pipe.outputs:
        await out.stop()


BATCHES = {"app.a": [(T0 + i, {"n": i, "msg": f"a{i}"}) for i in range(20)],
           "app.b": [(T0 + i, {"n": 100 + i, "msg": f"b{i}"}) for i in range(10)]}


def _dead_letters(tmp: Path) -> Path:
    """Two dead letters: app.a unrecoverable, app.b retryable with retry_max_times 0."""
    FailingOutput.failure = {"app.a": "unrecoverable", "app.b": "retryable"}
    asyncio.run(_run_pipeline(_failing_conf(tmp), BATCHES, flush=True))
    dlq = tmp / "root" / "backup" / "worker0" / "failing"
    assert sorted(p.suffix for p in dlq.iterdir()) == [".json", ".json", ".log", ".log"]
    return dlq


def _inspect_json(path: Path, *extra: str, capsys: Any) -> list[dict[str, Any]]:
    assert buffer_tool.main(["inspect", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _out_conf(tmp: Path) -> Path:
    conf = tmp / "out.conf"
    conf.write_text(f"""
<match app.**>
  @type file
  path {tmp}/out/app
  append true
  <format>
    @type json
  </format>
  <inject>
    tag_key tag
  </inject>
  <buffer>
    @type file
    path {tmp}/outbuf
  </buffer>
</match>
""")
    return conf


def _delivered(tmp: Path) -> list[tuple[str, int]]:
    lines = [json.loads(line) for f in sorted((tmp / "out").glob("*")) for line in f.read_text().splitlines()]
    return sorted((r["tag"], r["n"]) for r in lines)


def test_inspect_dead_letters_lists_keys_counts_and_first_records(tmp_path: Path, capsys: Any) -> None:
    dlq = _dead_letters(tmp_path)
    chunks = _inspect_json(dlq, "--records", "2", capsys=capsys)
    by_tag = {c["tag"]: c for c in chunks}
    assert set(by_tag) == {"app.a", "app.b"}
    a = by_tag["app.a"]
    assert (a["state"], a["records"], a["records_expected"], a["damaged"]) == ("dead-letter", 20, 20, False)
    assert a["size"] == (dlq / f"{a['id']}.log").stat().st_size
    assert a["first_records"] == [["2019-07-11T00:00:00.000000000Z", {"n": 0, "msg": "a0"}],
                                  ["2019-07-11T00:00:00.000000001Z", {"n": 1, "msg": "a1"}]]
    assert "UnrecoverableError" in a["reason"] and "RetryableError" in by_tag["app.b"]["reason"]
    assert by_tag["app.b"]["records"] == 10 and a["created"].startswith("20")
    assert buffer_tool.main(["inspect", str(dlq / f"{a['id']}.log")]) == 0
    text = capsys.readouterr().out
    assert "  tag       app.a\n" in text and '{"n": 2, "msg": "a2"}' in text
    assert text.endswith("1 chunks, 20 records, %d bytes; 0 damaged\n" % a["size"])


def test_inspect_reports_truncated_and_garbage_chunks_without_crashing(tmp_path: Path, capsys: Any) -> None:
    dlq = _dead_letters(tmp_path)
    by_tag = {c["tag"]: c for c in _inspect_json(dlq, capsys=capsys)}
    a = dlq / f"{by_tag['app.a']['id']}.log"
    b = dlq / f"{by_tag['app.b']['id']}.log"
    raw = a.read_bytes()
    a.write_bytes(raw[: len(raw) - 7])                 # torn last record
    b.write_bytes(b.read_bytes() + b"\xc1garbage\x00")  # junk appended
    by_tag = {c["tag"]: c for c in _inspect_json(dlq, capsys=capsys)}
    assert (by_tag["app.a"]["records"], by_tag["app.a"]["damaged"]) == (19, True)
    assert by_tag["app.a"]["unreadable_bytes"] > 0
    assert (by_tag["app.b"]["records"], by_tag["app.b"]["unreadable_bytes"]) == (10, 9)
    assert buffer_tool.main(["inspect", str(dlq)]) == 0
    text = capsys.readouterr().out
    assert "DAMAGED   19 records readable" in text and "(metadata says 20)" in text
    assert text.endswith("2 damaged\n")


def test_inspect_leftover_buffer_chunks_and_fluentd_written_chunk(tmp_path: Path, capsys: Any) -> None:
    asyncio.run(_run_pipeline(_failing_conf(tmp_path), BATCHES, flush=False))
    chunks = _inspect_json(tmp_path / "buf", capsys=capsys)
    assert sorted((c["tag"], c["state"], c["records"], c["origin"]) for c in chunks) == [
        ("app.a", "staged", 20, "kawa"), ("app.b", "staged", 10, "kawa")]
    # Fluentd buf_file: meta without kawa's "f", EventTime ext 0 and integer-second times
    fl = tmp_path / "fluentd"
    fl.mkdir()
    chunk_id = "5f0a1b2c3d4e5f60718293a4b5c6d7e8"
    data = (msgpack.packb([msgpack.ExtType(0, (1562803200).to_bytes(4, "big") + (5).to_bytes(4, "big")), {"k": 1}])
            + msgpack.packb([1562803201, {"k": 2}]))
    (fl / f"buffer.q{chunk_id}.log").write_bytes(data)
    body = msgpack.packb({"timekey": None, "tag": "web", "variables": None, "seq": 0, "id": bytes.fromhex(chunk_id),
                          "s": 2, "c": 1562803200, "m": 1562803201})
    (fl / f"buffer.q{chunk_id}.log.meta").write_bytes(b"\xc1\x00" + len(body).to_bytes(4, "big") + body)
    (c,) = _inspect_json(fl, capsys=capsys)
    assert (c["state"], c["origin"], c["tag"], c["records"]) == ("queued", "fluentd", "web", 2)
    assert c["first_records"] == [["2019-07-11T00:00:00.000000005Z", {"k": 1}],
                                  ["2019-07-11T00:00:01.000000000Z", {"k": 2}]]


def test_replay_subprocess_delivers_every_record_once_and_removes_chunks(tmp_path: Path) -> None:
    dlq = _dead_letters(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-m", "kawa", "buffer", "replay", str(dlq), "-c", str(_out_conf(tmp_path))],
                          capture_output=True, env=env, timeout=60)   # bytes: keep the \r of the progress bar
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    assert proc.stdout.decode().endswith("replayed 30 records from 2 chunks; 0 chunks failed, left in place\n")
    assert "\r[" in stderr and "\r[" + "#" * 30 + "] 2/2 chunks, 30 records\n" in stderr
    assert _delivered(tmp_path) == sorted([("app.a", i) for i in range(20)] + [("app.b", 100 + i) for i in range(10)])
    assert list(dlq.iterdir()) == []


def test_replay_damaged_chunk_and_match_and_keep(tmp_path: Path, capsys: Any) -> None:
    dlq = _dead_letters(tmp_path)
    by_tag = {c["tag"]: c for c in _inspect_json(dlq, capsys=capsys)}
    b = dlq / f"{by_tag['app.b']['id']}.log"
    b.write_bytes(b.read_bytes() + b"\xc1junk")
    conf = str(_out_conf(tmp_path))
    assert buffer_tool.main(["replay", str(dlq), "-c", conf, "--match", "app.b", "--keep"]) == 0
    out = capsys.readouterr().out
    assert "1 chunks skipped" in out and "replayed 10 records from 1 chunks; 0 chunks failed" in out
    assert _delivered(tmp_path) == [("app.b", 100 + i) for i in range(10)]
    assert b.exists()                                   # --keep
    assert buffer_tool.main(["replay", str(dlq), "-c", conf, "--match", "app.b"]) == 0
    assert not b.exists() and Path(str(b) + ".damaged").exists()   # unreadable bytes kept aside
    assert not Path(str(b) + ".meta.json").exists()
    assert len(_delivered(tmp_path)) == 20             # --keep run + this run


@pytest.mark.parametrize("failure, extra", [("unrecoverable", "retry_max_times 0"), ("retryable", "retry_max_times 0"),
                                            ("retryable", "retry_wait 1h")])
def test_replay_into_still_failing_output_leaves_everything_in_place(
        tmp_path: Path, capsys: Any, failure: str, extra: str) -> None:
    dlq = _dead_letters(tmp_path)
    before = {p.name: p.read_bytes() for p in dlq.iterdir()}
    FailingOutput.failure = {"*": failure}
    conf = _failing_conf(tmp_path, extra)
    assert buffer_tool.main(["replay", str(dlq), "-c", str(conf)]) == 1
    captured = capsys.readouterr()
    assert captured.out.endswith("replayed 0 records from 0 chunks; 2 chunks failed, left in place\n")
    assert "did not write it; left in place" in captured.err
    assert {p.name: p.read_bytes() for p in dlq.iterdir()} == before   # no copy dead-lettered twice
    assert list((tmp_path / "buf").glob("*")) == []                    # nothing queued for a later retry
    FailingOutput.failure = {}
    assert buffer_tool.main(["replay", str(dlq), "-c", str(conf)]) == 0
    assert sorted(n for _, _, r in FailingOutput.written for n in [r["n"]]) == list(range(20)) + list(range(100, 110))


def test_replay_refuses_chunks_of_the_configs_own_buffer(tmp_path: Path, capsys: Any) -> None:
    conf = _failing_conf(tmp_path)
    asyncio.run(_run_pipeline(conf, BATCHES, flush=False))
    assert buffer_tool.main(["replay", str(tmp_path / "buf"), "-c", str(conf)]) == 2
    assert "is in the buffer of output failing" in capsys.readouterr().err
    assert len(list((tmp_path / "buf").iterdir())) == 4


def test_replay_chunks_without_tag_need_tag_option(tmp_path: Path, capsys: Any) -> None:
    conf = tmp_path / "untagged.conf"
    conf.write_text(_failing_conf(tmp_path).read_text().replace("<buffer tag>", "<buffer>"))
    asyncio.run(_run_pipeline(conf, BATCHES, flush=False))
    moved = tmp_path / "moved"
    (tmp_path / "buf").rename(moved)
    (chunk,) = _inspect_json(moved, capsys=capsys)
    assert (chunk["tag"], chunk["records"]) == (None, 30)
    out_conf = str(_out_conf(tmp_path))
    assert buffer_tool.main(["replay", str(moved), "-c", out_conf]) == 1
    assert "has no tag" in capsys.readouterr().err
    assert buffer_tool.main(["replay", str(moved), "-c", out_conf, "--tag", "app.x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "30 records, tag app.x -> object:" in out and out.endswith("would replay 30 records from 1 chunks; 0 chunks failed, left in place\n")
    assert len(list(moved.iterdir())) == 2 and not (tmp_path / "out").exists()
    assert buffer_tool.main(["replay", str(moved), "-c", out_conf, "--tag", "app.x"]) == 0
    assert _delivered(tmp_path) == sorted([("app.x", i) for i in range(20)] + [("app.x", 100 + i) for i in range(10)])
    assert list(moved.iterdir()) == []


def test_formatted_dead_letter_is_shown_as_text_and_not_replayed(tmp_path: Path, capsys: Any) -> None:
    FailingOutput.failure = {"*": "unrecoverable"}
    conf = tmp_path / "text.conf"
    conf.write_text(_failing_conf(tmp_path).read_text().replace("test_tool_failing", "test_tool_failing_text"))
    asyncio.run(_run_pipeline(conf, {"app.a": BATCHES["app.a"]}, flush=True))
    dlq = tmp_path / "root" / "backup" / "worker0" / "failing"
    (chunk,) = _inspect_json(dlq, capsys=capsys)
    assert (chunk["formatted"], chunk["records"], chunk["first_records"]) == (True, 20, ["app.a 0", "app.a 1", "app.a 2"])
    assert buffer_tool.main(["replay", str(dlq), "-c", str(_out_conf(tmp_path))]) == 1
    assert "holds text formatted by the output" in capsys.readouterr().err
    assert len(list(dlq.iterdir())) == 2


def test_inspect_and_replay_gzip_chunks_even_torn(tmp_path: Path, capsys: Any) -> None:
    asyncio.run(_run_pipeline(_failing_conf(tmp_path, "compress gzip"), BATCHES, flush=False))
    moved = tmp_path / "moved"
    (tmp_path / "buf").rename(moved)
    by_tag = {c["tag"]: c for c in _inspect_json(moved, "--records", "1", capsys=capsys)}
    a, b = by_tag["app.a"], by_tag["app.b"]
    assert (a["compressed"], a["records"], a["damaged"], b["records"]) == (True, 20, False, 10)
    assert a["first_records"] == [["2019-07-11T00:00:00.000000000Z", {"n": 0, "msg": "a0"}]]
    a_path = moved / Path(a["path"]).name
    assert a_path.read_bytes()[:3] == b"\x1f\x8b\x08" and a["size"] == a_path.stat().st_size
    assert buffer_tool.main(["inspect", str(a_path)]) == 0
    assert f"  size      {a['size']} bytes (gzip)\n" in capsys.readouterr().out
    raw = a_path.read_bytes()
    a_path.write_bytes(raw[: len(raw) // 2])            # torn in the middle of its one gzip member
    torn = {c["tag"]: c for c in _inspect_json(moved, capsys=capsys)}["app.a"]
    assert torn["damaged"] and torn["unreadable_bytes"] == len(raw) // 2 and 0 < torn["records"] < 20
    assert buffer_tool.main(["replay", str(moved), "-c", str(_out_conf(tmp_path))]) == 0
    assert _delivered(tmp_path) == sorted([("app.a", i) for i in range(torn["records"])]
                                          + [("app.b", 100 + i) for i in range(10)])
    assert sorted(p.name for p in moved.iterdir()) == [a_path.name + ".damaged"]


def test_dead_letters_of_gzip_chunks_are_written_decompressed(tmp_path: Path, capsys: Any) -> None:
    FailingOutput.failure = {"app.a": "unrecoverable"}
    asyncio.run(_run_pipeline(_failing_conf(tmp_path, "compress gzip"), {"app.a": BATCHES["app.a"]}, flush=True))
    dlq = tmp_path / "root" / "backup" / "worker0" / "failing"
    (chunk,) = _inspect_json(dlq, capsys=capsys)
    assert (chunk["compressed"], chunk["records"], chunk["damaged"]) == (False, 20, False)   # Fluentd: write_to decompresses
