"""`<secondary>` as Fluentd's output.rb configures it: default @type is the primary's, the primary's chunk
keys, and Fluentd's checks and warnings."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from kawa.errors import ConfigError, RetryableError
from kawa.testing.drivers import FakeClock, OutputDriver

sys.path.insert(0, str(Path(__file__).parent))
from test_buffer import T0, RecordingOutput, wait_for  # noqa: E402  (registers the test output)

FAILING_OVER = ("<buffer>\nflush_mode immediate\nretry_randomize false\nretry_wait 1\nretry_timeout 10\n</buffer>\n")


def test_secondary_without_type_is_the_primarys_type_and_writes_after_the_threshold() -> None:
    clock = FakeClock(T0)
    d = OutputDriver("test_recording_buffered", FAILING_OVER + "<secondary>\n</secondary>", clock=clock)
    primary, secondary = d.instance, d.instance.secondary
    assert type(secondary) is RecordingOutput and secondary is not primary and secondary.as_secondary
    primary.fail = lambda chunk: RetryableError("down")

    async def run() -> None:
        async with d.run():
            await d.feed("a", T0, {"n": 1})
            await wait_for(lambda: primary.calls == 1)
            clock.advance(9)                    # past retry_secondary_threshold 0.8 of retry_timeout 10
            primary.flusher.wake()
            await wait_for(lambda: bool(secondary.written))

    asyncio.run(run())
    assert [r for _, evs in secondary.written for _, r in evs] == [{"n": 1}] and primary.written == []


def test_secondary_of_same_type_takes_the_primarys_chunk_keys(tmp_path: Path) -> None:
    d = OutputDriver("file", f"path {tmp_path}/a/${{tag}}\n<buffer tag,time>\n@type memory\ntimekey 1h\n"
                             f"timekey_use_utc true\n</buffer>\n<secondary>\npath {tmp_path}/b/failed\n</secondary>")
    primary, secondary = d.instance, d.instance.secondary
    assert secondary.chunk_keys == primary.chunk_keys and secondary.buffer_settings.timekey == 3600
    assert secondary.path_template.endswith(".%Y%m%d%H_**.log")  # the primary's timekey 1h, not out_file's 1d

    async def run() -> None:
        async with d.run():
            await d.feed("web", T0, {"m": "hello"})
            (chunk,) = d.instance.buffer.chunks()
            await secondary.write(chunk)         # what the flusher does once it fails over
            d.instance.buffer.enqueue_all(force=True)
            await d.flush()

    asyncio.run(run())
    (written,) = (tmp_path / "b").iterdir()
    assert written.name == "failed.2019071100_0.log"
    assert written.read_text() == (tmp_path / "a" / "web.2019071100_0.log").read_text() != ""


@pytest.mark.parametrize("section, message", [
    ("<secondary>\n@type null\n<buffer>\n</buffer>\n</secondary>", "<secondary> section cannot have <buffer> section"),
    ("<secondary>\n@type test_recording_buffered\n<secondary>\n@type null\n</secondary>\n</secondary>",
     "<secondary> section cannot have <secondary> section"),
    ("<secondary>\n@type relabel\n@label @X\n</secondary>",
     "secondary plugin 'Fluent::Plugin::RelabelOutput' must support buffering, but doesn't."),
    ("<secondary>\n@type copy\n<store>\n@type null\n</store>\n</secondary>",
     "Failed to setup secondary plugin in 'test_recording_buffered'. 'copy' plugin in not allowed due to non "
     "buffered output"),
])
def test_secondary_config_errors_are_fluentds(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        OutputDriver("test_recording_buffered", "<buffer>\n</buffer>\n" + section)
    assert message in str(err.value)


def test_unbuffered_variant_is_buffered_as_secondary_and_warnings_are_fluentds() -> None:
    d = OutputDriver("test_recording_buffered", "<buffer>\nretry_forever true\n</buffer>\n"
                                                "<secondary>\n@type stdout\n</secondary>")
    secondary: Any = d.instance.secondary
    assert type(secondary).__name__ == "BufferedStdoutOutput" and secondary.formatted
    assert "[warn]: #0 <secondary> with 'retry_forever', only unrecoverable errors are moved to secondary" in d.logs
    assert ('[warn]: #0 Use different plugin for secondary. Check the plugin works with primary like secondary_file '
            'primary="Fluent::Plugin::RecordingOutput" secondary="Fluent::Plugin::StdoutOutput"') in d.logs
    same = OutputDriver("test_recording_buffered", "<buffer>\n</buffer>\n<secondary>\n</secondary>")
    assert not any("secondary" in line for line in same.logs)


def test_stdout_and_null_secondary_without_type_are_their_own_type() -> None:
    for name in ("stdout", "null"):
        d = OutputDriver(name, "<buffer>\n@type memory\n</buffer>\n<secondary>\n</secondary>")
        assert type(d.instance.secondary) is type(d.instance), name
