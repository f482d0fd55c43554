"""The watch timer's pace (SweepPacer): every second as Fluentd, slower only while inotify has been
seen to report every change of every followed file. Real files, real inotify, real time."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kawa.plugins.inputs._tail.scheduler import QUIET_SWEEP_INTERVAL, WATCH_TIMER_INTERVAL, SweepPacer
from kawa.testing.drivers import InputDriver


def tail(path: Path, pos: Path) -> InputDriver:
    return InputDriver("tail", f"path {path}\ntag t.app\npos_file {pos}\nread_from_head true\n"
                               "<parse>\n@type none\n</parse>")


def append(path: Path, *lines: str) -> None:
    with open(path, "a") as fh:
        fh.write("".join(f"{line}\n" for line in lines))


def one_file(tmp_path: Path) -> tuple[Path, InputDriver]:
    """app.log holding "first", and a tail of it with a pos_file."""
    log = tmp_path / "app.log"
    append(log, "first")
    return log, tail(log, tmp_path / "app.pos")


def test_pacer_doubles_while_trusted_and_returns_to_every_second_for_good_after_a_miss() -> None:
    pacer = SweepPacer()
    assert pacer.interval == WATCH_TIMER_INTERVAL
    assert [pacer.after_sweep(missed=False, covered=True) for _ in range(5)] == [2, 4, 8, 8, 8]
    assert pacer.after_sweep(missed=False, covered=False) == WATCH_TIMER_INTERVAL   # a file rotating
    assert pacer.after_sweep(missed=False, covered=True) == 2
    assert pacer.after_sweep(missed=True, covered=True) == WATCH_TIMER_INTERVAL
    assert [pacer.after_sweep(missed=False, covered=True) for _ in range(3)] == [1, 1, 1]
    assert QUIET_SWEEP_INTERVAL == 8


def test_idle_plain_file_is_swept_less_often_and_lines_still_arrive_at_once(tmp_path: Path) -> None:
    log, d = one_file(tmp_path)

    async def scenario() -> None:
        async with d.run():
            sched = d.instance.scheduler
            await d.wait_for(lambda: sched.sweeps.interval >= 4, timeout=10)
            assert sched.sweeps.trusted
            append(log, "second")                          # inotify, not the sweep, brings it
            await d.wait_for(lambda: len(d.records) == 2, timeout=2)
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == ["first", "second"]
    assert not any("did not report" in line for line in d.logs)


def test_symlinked_file_keeps_the_one_second_sweep(tmp_path: Path) -> None:
    """kubelet's /var/log/containers/*.log are links into /var/log/pods: the watched folder holds the
    link, the writes happen in the target's folder, so only the sweep sees them."""
    pods, containers = tmp_path / "pods", tmp_path / "containers"
    pods.mkdir()
    containers.mkdir()
    target, link = pods / "0.log", containers / "app.log"
    append(target, "first")
    os.symlink(target, link)
    d = tail(link, tmp_path / "app.pos")

    async def scenario() -> None:
        async with d.run():
            sched = d.instance.scheduler
            await d.wait_for(lambda: len(d.records) == 1)
            await asyncio.sleep(3.5)                       # three sweeps
            assert sched.sweeps.interval == WATCH_TIMER_INTERVAL
            assert sched.sweeps.trusted                    # known uncovered: not a surprise
            append(target, "second")
            await d.wait_for(lambda: len(d.records) == 2, timeout=3)
    asyncio.run(scenario())
    assert not any("did not report" in line for line in d.logs)


def test_a_change_inotify_never_reported_brings_back_the_one_second_sweep(tmp_path: Path) -> None:
    """What NFS or a writer through mmap looks like: the file grows and inotify says nothing. The
    sweep reads the lines, logs why, and from then on looks every second."""
    log, d = one_file(tmp_path)

    async def scenario() -> None:
        async with d.run():
            sched = d.instance.scheduler
            await d.wait_for(lambda: sched.sweeps.interval >= 2, timeout=5)
            deliver = sched.inotify.on_event

            def deaf_to_the_log(directory: str, name: str, mask: int) -> None:
                if name != log.name:
                    deliver(directory, name, mask)
            sched.inotify.on_event = deaf_to_the_log
            append(log, "second")
            # the record is out before the sweep's round ends (the round yields after a read)
            await d.wait_for(lambda: len(d.records) == 2 and not sched.sweeps.trusted,
                             timeout=QUIET_SWEEP_INTERVAL + 2)
            assert sched.sweeps.interval == WATCH_TIMER_INTERVAL
            append(log, "third")                           # found by the next one-second sweep
            await d.wait_for(lambda: len(d.records) == 3, timeout=3)
    asyncio.run(scenario())
    assert [r["message"] for r in d.records] == ["first", "second", "third"]
    assert any(f"inotify did not report a change of {log}" in line for line in d.logs)


@pytest.mark.parametrize("option", [
    "enable_stat_watcher false",                   # no inotify: the sweep is how changes are seen
    "read_bytes_limit_per_second 8192",            # a throttled file resumes on the sweep
])
def test_without_inotify_or_with_throttling_the_sweep_stays_at_one_second(tmp_path: Path, option: str) -> None:
    log = tmp_path / "app.log"
    append(log, "first")
    d = InputDriver("tail", f"path {log}\ntag t.app\nread_from_head true\n{option}\n"
                            "<parse>\n@type none\n</parse>")

    async def scenario() -> None:
        async with d.run():
            await d.wait_for(lambda: len(d.records) == 1)
            await asyncio.sleep(2.5)
            assert d.instance.scheduler.sweeps.interval == WATCH_TIMER_INTERVAL
            append(log, "second")
            await d.wait_for(lambda: len(d.records) == 2, timeout=3)
    asyncio.run(scenario())
