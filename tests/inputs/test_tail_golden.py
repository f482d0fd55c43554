"""tail against Fluentd 1.18's golden cases tail_*: emitted (tag, time, record) and pos_file offsets."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kawa.testing.drivers import InputDriver

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden"
PARSE = ("<parse>\n@type regexp\nexpression /^(?<time>\\S+) (?<message>.*)$/\n"
         "time_format %Y-%m-%dT%H:%M:%SZ\n</parse>")


def case(name: str, tmp_path: Path) -> tuple[Path, Path]:
    src = GOLDEN / name
    if not src.is_dir():
        pytest.skip(f"golden case {name} not found at {src} (../shared/golden is absent)")
    root = tmp_path / "case"
    shutil.copytree(src / "input", root / "input", ignore=shutil.ignore_patterns("steps"))
    (root / "work").mkdir()
    return src, root


def expected(src: Path, rel: str, root: Path) -> list[tuple[str, int, dict[str, Any]]]:
    """The golden out_file lines as (tag, time ns, record) with @CASE@ put back."""
    out = []
    tag_root = str(root).lstrip("/").replace("/", ".")
    raw = (src / "expected" / rel).read_bytes().decode("utf-8", "surrogateescape")
    for line in raw.replace("@CASE_TAG@", tag_root).replace("@CASE@", str(root)).splitlines():
        rec = json.loads(line)
        tag, stamp = rec.pop("tag"), rec.pop("time")
        ns = int(datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").timestamp()) * 10**9 \
            if stamp != "@NOW@" else None
        out.append((tag, ns, rec))
    return out


def step(src: Path, root: Path, name: str) -> None:
    """Apply input/steps/NN-append-FILE or NN-write-FILE."""
    _number, op, file = name.split("-", 2)
    data = (src / "input" / "steps" / name).read_bytes()
    with open(root / "input" / file, "ab" if op == "append" else "wb") as fh:
        fh.write(data)


def pos_offsets(pos: Path) -> dict[str, int]:
    return {line.split("\t")[0]: int(line.split("\t")[1], 16) for line in pos.read_text().splitlines()}


def golden_pos(src: Path, rel: str, root: Path) -> dict[str, int]:
    text = (src / "expected" / rel).read_text().replace("@CASE@", str(root))
    return {line.split("\t")[0]: int(line.split("\t")[1], 16) for line in text.splitlines()}


def run(d: InputDriver, body) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with d.run():
            await body()
    asyncio.run(scenario())


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")


def test_tail_glob_tag_expansion(tmp_path: Path) -> None:
    src, root = case("tail_glob_tag_expansion", tmp_path)
    d = InputDriver("tail", f"path {root}/input/*.log\npos_file {root}/work/glob.pos\nread_from_head true\n"
                            f'tag app.*\nexclude_path ["{root}/input/skip*.log"]\nrefresh_interval 2s\n{PARSE}')
    want_start = expected(src, "steps/1-after-start/out/a.20190710.log", root) + \
        expected(src, "steps/1-after-start/out/b.20190710.log", root)
    want_all = want_start + expected(src, "out/other.20190710.log", root)

    async def body() -> None:
        await d.wait_for(lambda: len(d.events) == len(want_start))
        assert sorted(d.events, key=repr) == sorted(want_start, key=repr)
        assert pos_offsets(root / "work" / "glob.pos") == golden_pos(
            src, "steps/1-after-start/work/glob.pos.normalized", root)
        step(src, root, "01-write-d.log")
        await d.wait_for(lambda: len(d.events) == len(want_all))
    run(d, body)
    assert sorted(d.events, key=repr) == sorted(want_all, key=repr)
    assert pos_offsets(root / "work" / "glob.pos") == golden_pos(src, "work/glob.pos.normalized", root)
    follows = [line for line in d.logs if "following tail of" in line]
    assert follows == [f"[info]: #0 following tail of {root}/input/{n}.log" for n in "abd"]


@pytest.mark.parametrize("variant, extra", [
    ("raw", ""), ("enc", "encoding UTF-8"), ("latin1", "from_encoding ISO-8859-1\nencoding UTF-8")])
def test_tail_invalid_utf8(tmp_path: Path, variant: str, extra: str) -> None:
    src, root = case("tail_invalid_utf8", tmp_path)
    d = InputDriver("tail", f"path {root}/input/bad.log\npos_file {root}/work/{variant}.pos\n"
                            f"read_from_head true\ntag utf8.{variant}\n{extra}\n{PARSE}")
    want = expected(src, f"out/{variant}.20190710.log", root)

    async def body() -> None:
        await d.wait_for(lambda: len(d.events) == len(want) and d.instance.invalid == 1)
    run(d, body)
    assert d.events == want
    assert pos_offsets(root / "work" / f"{variant}.pos") == golden_pos(src, f"work/{variant}.pos.normalized", root)
    assert [line for line in d.logs if "invalid line found" in line][0].startswith(
        f'[warn]: #0 invalid line found file="{root}/input/bad.log" line="')


def test_tail_path_key(tmp_path: Path) -> None:
    src, root = case("tail_path_key", tmp_path)
    parse = PARSE.replace("(?<message>.*)$", "(?<message>.*?)(?: tailed_path=(?<tailed_path>\\S+))?$")
    d = InputDriver("tail", f"path {root}/input/app.log\npos_file {root}/work/app.pos\nread_from_head true\n"
                            f"tag tail.app\npath_key tailed_path\nemit_unmatched_lines true\n{parse}",
                    clock=lambda: 7)
    want = expected(src, "out/app.20190710.log", root) + \
        [(t, 7, r) for t, _, r in expected(src, "out/app.20261127.log.normalized", root)]

    async def body() -> None:
        await d.wait_for(lambda: len(d.events) == len(want))
    run(d, body)
    assert sorted(d.events, key=repr) == sorted(want, key=repr)
    assert pos_offsets(root / "work" / "app.pos") == golden_pos(src, "work/app.pos.normalized", root)
    log_lines = [line for line in d.logs if line.startswith("[warn]")]
    golden_log = (src / "expected" / "fluentd.log.normalized").read_text().replace("@CASE@", str(root))
    for line in log_lines:
        assert line in golden_log


def test_tail_no_trailing_newline(tmp_path: Path) -> None:
    src, root = case("tail_no_trailing_newline", tmp_path)
    pos = root / "work" / "app.pos"
    d = InputDriver("tail", f"path {root}/input/app.log\npos_file {pos}\nread_from_head true\n"
                            f"tag tail.app\n{PARSE}")

    async def body() -> None:
        want1 = expected(src, "steps/1-partial-pending/out/app.20190710.log", root)
        await d.wait_for(lambda: len(d.events) == len(want1))
        await d.wait_for(lambda: pos_offsets(pos) == golden_pos(
            src, "steps/1-partial-pending/work/app.pos.normalized", root))
        assert d.events == want1
        step(src, root, "01-append-app.log")
        want2 = expected(src, "steps/2-completed/out/app.20190710.log", root)
        await d.wait_for(lambda: len(d.events) == len(want2))
        assert d.events == want2
        step(src, root, "02-append-app.log")
    run(d, body)
    assert d.events == expected(src, "out/app.20190710.log", root)
    assert pos_offsets(pos) == golden_pos(src, "work/app.pos.normalized", root)


def test_tail_restart_pos_resumes_a_fluentd_written_pos_file(tmp_path: Path) -> None:
    src, root = case("tail_restart_pos", tmp_path)
    pos = root / "work" / "app.pos"
    log = root / "input" / "app.log"
    # The pos_file Fluentd wrote after its first run, with our file's inode in it.
    fluentd_pos = (src / "expected" / "steps" / "1-after-first-run" / "work" / "app.pos").read_text()
    path, offset, _ino = fluentd_pos.replace("@CASE@", str(root)).rstrip("\n").split("\t")
    pos.write_text(f"{path}\t{offset}\t{log.stat().st_ino:016x}\n")
    step(src, root, "01-append-app.log")
    first = expected(src, "steps/1-after-first-run/out/app.20190710.log", root)
    d = InputDriver("tail", f"path {log}\npos_file {pos}\nread_from_head true\ntag tail.app\n{PARSE}")

    async def body() -> None:
        want = expected(src, "steps/2-after-restart/out/app.20190710.log", root)[len(first):]
        await d.wait_for(lambda: len(d.events) == len(want))
        assert d.events == want
        assert pos_offsets(pos) == golden_pos(src, "steps/2-after-restart/work/app.pos.normalized", root)
        step(src, root, "02-append-app.log")
    run(d, body)
    assert d.events == expected(src, "out/app.20190710.log", root)[len(first):]
    assert pos_offsets(pos) == golden_pos(src, "work/app.pos.normalized", root)


def test_tail_rotate_rename(tmp_path: Path) -> None:
    src, root = case("tail_rotate_rename", tmp_path)
    pos = root / "work" / "app.pos"
    log = root / "input" / "app.log"
    d = InputDriver("tail", f"path {log}\npos_file {pos}\nread_from_head true\ntag tail.app\n"
                            f"rotate_wait 1\n{PARSE}")

    async def body() -> None:
        start = expected(src, "steps/1-after-start/out/app.20190710.log", root)
        await d.wait_for(lambda: len(d.events) == len(start))
        step(src, root, "01-append-app.log")
        os.rename(log, root / "input" / "app.log.1")
        step(src, root, "02-append-app.log.1")
        step(src, root, "03-write-app.log")
        rotated = expected(src, "steps/2-after-rotation/out/app.20190710.log", root)
        await d.wait_for(lambda: len(d.events) == len(rotated))
        await d.wait_for(lambda: not d.instance.scheduler.draining)
        assert pos_offsets(pos) == golden_pos(src, "steps/2-after-rotation/work/app.pos.normalized", root)
        step(src, root, "04-append-app.log")
    run(d, body)
    assert sorted(d.events, key=repr) == sorted(expected(src, "out/app.20190710.log", root), key=repr)
    assert pos_offsets(pos) == golden_pos(src, "work/app.pos.normalized", root)
    assert f"[info]: #0 detected rotation of {log}; waiting 1 seconds" in d.logs
