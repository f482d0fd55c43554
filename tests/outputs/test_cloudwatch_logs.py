"""cloudwatch_logs output through the strict proxy in front of a real moto process: one test per
PutLogEvents rule and per failure mode, counting what is stored with read_all_events.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from kawa.errors import RetryableError
from kawa.plugins.outputs.cloudwatch_logs import batcher
from kawa.testing.cwl_server import read_all_events

NS = 1_000_000_000
DAY_NS = 86400 * NS


def arun(fn: Any) -> Any:
    """Run an async test in a fresh event loop (no pytest-asyncio in this tree)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def now_ns() -> int:
    return time.time_ns()


async def one_chunk(d: Any, tag: str, events: list[tuple[int, dict[str, Any]]]) -> Any:
    """Put events into the output's buffer and take the chunk out, as the flusher would."""
    await d.instance.emit(tag, events)
    buf = d.instance.buffer
    buf.enqueue_all(force=True)
    chunk = buf.dequeue()
    assert chunk is not None and buf.dequeue() is None, "test expects exactly one chunk"
    return chunk


def conf(group: str, stream: str = "s", extra: str = "") -> str:
    return f"log_group_name {group}\nlog_stream_name {stream}\n{extra}"


def new_group() -> str:
    return f"/kawa/test/{uuid.uuid4().hex[:12]}"


def messages(endpoint: str, group: str, stream: str = "s") -> list[str]:
    return [e["message"] for e in read_all_events(endpoint, group, stream)]


@arun
async def test_events_sorted_stably_and_message_is_record_json(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group))
    base = now_ns() - 60 * NS
    events = [(base + 3 * NS, {"n": 1}), (base + 1 * NS, {"n": 2}), (base + 3 * NS, {"n": 3}),
              (base + 2 * NS, {"n": 4, "empty": ""}), (base, {"n": 5, "f": 1e16})]
    await d.instance.write(await one_chunk(d, "app", events))
    got = read_all_events(cwl_proxy.endpoint, group, stream)
    assert [e["message"] for e in got] == ['{"n":5,"f":1.0e+16}', '{"n":2}', '{"n":4}', '{"n":1}', '{"n":3}']
    assert got[0]["timestamp"] == base // 1_000_000
    assert cwl_proxy.stats().invalid_requests == Counter()


@arun
async def test_one_mebibyte_limit_splits_batches(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group))
    base = now_ns() - 60 * NS
    big = "x" * 200_000
    events = [(base + i, {"m": big, "i": i}) for i in range(12)]   # ~2.4 MB: at least 3 calls
    await d.instance.write(await one_chunk(d, "app", events))
    stats = cwl_proxy.stats()
    assert stats.invalid_requests == Counter()
    assert stats.calls["PutLogEvents"] >= 3
    assert len(messages(cwl_proxy.endpoint, group)) == 12


@arun
async def test_ten_thousand_events_limit_and_max_events_per_batch(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group))
    base = now_ns() - 60 * NS
    await d.instance.write(await one_chunk(d, "app", [(base + i, {"i": i}) for i in range(10_001)]))
    assert cwl_proxy.stats().calls["PutLogEvents"] == 2
    assert cwl_proxy.stats().events_accepted == 10_001
    group2, _ = make_stream()
    cwl_proxy.reset_stats()
    d2 = cw_output(conf(group2, extra="max_events_per_batch 7"))
    await d2.instance.write(await one_chunk(d2, "app", [(base + i, {"i": i}) for i in range(50)]))
    assert cwl_proxy.stats().calls["PutLogEvents"] == 8
    assert len(messages(cwl_proxy.endpoint, group2)) == 50


@arun
async def test_24_hour_span_split(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group))
    base = now_ns() - 3 * DAY_NS
    events = [(base + h * 3600 * NS, {"h": h}) for h in range(0, 60, 6)]   # 54 h span
    await d.instance.write(await one_chunk(d, "app", events))
    stats = cwl_proxy.stats()
    assert stats.invalid_requests == Counter() and stats.calls["PutLogEvents"] == 3
    assert len(messages(cwl_proxy.endpoint, group)) == 10


@arun
async def test_empty_messages_skipped_with_ruby_warning(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="message_keys a,b"))
    base = now_ns() - 60 * NS
    events = [(base, {"a": "x", "b": "y"}), (base + 1, {"a": "", "c": 1}), (base + 2, {"a": "only"})]
    await d.instance.write(await one_chunk(d, "app", events))
    assert messages(cwl_proxy.endpoint, group) == ["x y", "only"]
    assert d.instance.counters["empty_skipped"] == 1
    assert any("Within specified message_key(s): (a,b) do not have non-empty record. Skip." in line
               for line in d.logs)
    assert cwl_proxy.stats().invalid_requests == Counter()


@arun
async def test_oversize_event_truncated_with_warning(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="message_keys m"))
    base = now_ns() - 60 * NS
    await d.instance.write(await one_chunk(d, "app", [(base, {"m": "é" * 700_000}), (base + 1, {"m": "ok"})]))
    got = messages(cwl_proxy.endpoint, group)
    assert got[1] == "ok" and got[0].endswith(batcher.TRUNCATION_MARKER)
    assert len(got[0].encode()) <= batcher.MAX_MESSAGE_BYTES
    assert d.instance.counters["truncated"] == 1
    assert any("were truncated" in line for line in d.logs)


@arun
async def test_oversize_event_split_policy_keeps_every_byte(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="message_keys m\noversize_policy split"))
    base = now_ns() - 60 * NS
    text = "日本" * 400_000    # 2.4 MB
    await d.instance.write(await one_chunk(d, "app", [(base, {"m": text})]))
    got = messages(cwl_proxy.endpoint, group)
    assert len(got) == 3 and "".join(got) == text
    assert d.instance.counters["split"] == 1 and cwl_proxy.stats().invalid_requests == Counter()


@arun
async def test_max_message_length_counts_utf8_bytes(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="message_keys m\nmax_message_length 5"))
    await d.instance.write(await one_chunk(d, "app", [(now_ns(), {"m": "aéééé"})]))
    assert messages(cwl_proxy.endpoint, group) == ["aéé"]


@arun
async def test_out_of_window_events_routed_to_error_before_sending(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group))
    now = now_ns()
    events = [(now - 15 * DAY_NS, {"old": 1}), (now - NS, {"ok": 1}), (now + 3 * 3600 * NS, {"new": 1})]
    await d.instance.write(await one_chunk(d, "app", events))
    assert messages(cwl_proxy.endpoint, group) == ['{"ok":1}']
    assert cwl_proxy.stats().events_rejected == 0          # nothing AWS would refuse was sent
    routed = sorted(str(r) for _, _, r, _ in d.error_events)
    assert routed == ["{'new': 1}", "{'old': 1}"]
    assert d.instance.counters["window_too_old"] == 1 and d.instance.counters["window_too_new"] == 1


@arun
async def test_messages_built_at_emit_and_error_records_come_back_from_them(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="message_keys msg"))
    assert d.instance.prebuild           # no record-dependent names: the chunk holds the message texts
    now = now_ns()
    events = [(now - 15 * DAY_NS, {"msg": "too old", "x": 1}), (now - NS, {"msg": "fine", "x": 2})]
    chunk = await one_chunk(d, "app", events)
    assert b"too old" in chunk.read() and b'"x"' not in chunk.read()
    await d.instance.write(chunk)
    assert messages(cwl_proxy.endpoint, group) == ["fine"]
    assert [r for _, _, r, _ in d.error_events] == [{"message": "too old"}]   # message_keys: the text only
    keyed = cw_output(f"log_group_name {group}\nlog_stream_name_key s\n")
    assert not keyed.instance.prebuild    # names from the record: messages are built when writing


@arun
async def test_rejected_log_events_info_routed_to_error(cw_output, cwl_proxy, clock, make_stream):
    group, stream = make_stream(retention_days=1)
    d = cw_output(conf(group, extra="out_of_window_policy send"))
    now = now_ns()
    events = [(now - 2 * DAY_NS, {"expired": 1}), (now - NS, {"ok": 1}), (now + 3 * 3600 * NS, {"new": 1})]
    await d.instance.write(await one_chunk(d, "app", events))
    assert messages(cwl_proxy.endpoint, group) == ['{"ok":1}']
    assert cwl_proxy.stats().events_rejected == 2
    c = d.instance.counters
    assert c["rejected_expired"] == 1 and c["rejected_too_new"] == 1
    assert sorted(map(str, (r for _, _, r, _ in d.error_events))) == ["{'expired': 1}", "{'new': 1}"]
    assert any("rejected log events (expired)" in line and "events" in line for line in d.logs)


@arun
async def test_throttling_raises_slow_down_and_retry_resends_only_the_rest(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="max_events_per_batch 10"))
    base = now_ns() - 60 * NS
    chunk = await one_chunk(d, "app", [(base + i, {"i": i}) for i in range(30)])
    cwl_proxy.faults.delay(0.0, 1)      # first call passes
    cwl_proxy.faults.throttle(1)
    with pytest.raises(RetryableError) as info:
        await d.instance.write(chunk)
    assert info.value.slow_down is True
    assert info.value.progress is True                # a call got through: the backoff starts again
    assert len(messages(cwl_proxy.endpoint, group)) == 10
    await d.instance.write(chunk)
    got = messages(cwl_proxy.endpoint, group)
    assert sorted(got) == sorted(f'{{"i":{i}}}' for i in range(30))


@arun
async def test_5xx_retry_resumes_after_accepted_batches_without_duplicates(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="max_events_per_batch 10"))
    base = now_ns() - 60 * NS
    chunk = await one_chunk(d, "app", [(base + i, {"i": i}) for i in range(50)])
    cwl_proxy.faults.delay(0.0, 2)
    cwl_proxy.faults.unavailable(1)
    with pytest.raises(RetryableError) as info:
        await d.instance.write(chunk)
    assert info.value.slow_down is False
    cwl_proxy.faults.drop_connection(1)                 # the second attempt loses its connection
    with pytest.raises(RetryableError):
        await d.instance.write(chunk)
    await d.instance.write(chunk)
    got = messages(cwl_proxy.endpoint, group)
    assert len(got) == 50 and len(set(got)) == 50


def refused_endpoint() -> str:
    """An http endpoint on 127.0.0.1 where nothing listens (a port just bound and closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("crt", [True, False], ids=["awscrt", "http.client"])
@arun
async def test_a_refused_connection_is_not_a_call_in_flight(cw_output, cwl_proxy, make_stream, monkeypatch, crt):
    """Connection refused: nothing left kawa, so the retry neither reads the stream back nor warns that
    events may be doubled (before: "got no answer (it may have been stored...)", then "could not tell
    whether CloudWatch Logs stored a PutLogEvents call ... may be duplicated" at every retry)."""
    from kawa.plugins.outputs.cloudwatch_logs import client, crt_client, sender

    if not crt:
        monkeypatch.setenv("KAWA_AWS_CLIENT", "botocore")     # botocore credentials, the stdlib pool
    group, stream = make_stream()
    refused = refused_endpoint()
    d = cw_output(conf(group), endpoint=refused)
    chunk = await one_chunk(d, "app", [(now_ns() - NS, {"i": i}) for i in range(5)])
    with pytest.raises(RetryableError, match=f"PutLogEvents was not sent: cannot connect to {refused[7:]}"):
        await d.instance.write(chunk)
    assert d.instance.counters["failed_calls"] == 1
    pool = d.instance.delivery.client.pool
    assert isinstance(pool, crt_client.CrtHttpPool if crt else client.StdlibHttpPool)
    # the same output, its endpoint back: the retry sends at once, with no GetLogEvents check first
    checks = []
    monkeypatch.setattr(sender.verify, "check_stored", lambda *a, **k: checks.append(a))
    pool.endpoint = type(pool.endpoint).parse(cwl_proxy.endpoint)
    await d.instance.write(chunk)
    assert checks == []
    assert sorted(messages(cwl_proxy.endpoint, group)) == sorted(f'{{"i":{i}}}' for i in range(5))
    assert not any("may have been stored" in line or "could not tell" in line for line in d.logs)


@arun
async def test_access_denied_names_the_missing_iam_permission(cw_output, cwl_proxy, make_stream):
    """AccessDeniedException is the IAM policy, not stale credentials: the error line says which
    permission to grant and where the credentials came from; the chunk is kept and retried."""
    group, stream = make_stream()
    d = cw_output(conf(group))
    chunk = await one_chunk(d, "app", [(now_ns() - NS, {"i": i}) for i in range(3)])
    cwl_proxy.faults.access_denied(1)
    with pytest.raises(RetryableError, match="access denied: AccessDeniedException: User: .* is not authorized "
                                             "to perform: logs:PutLogEvents"):
        await d.instance.write(chunk)
    denied = [line for line in d.logs if "denied PutLogEvents" in line]
    assert len(denied) == 1
    assert "must allow logs:PutLogEvents on the log group" in denied[0]
    assert f'group="{group}"' in denied[0] and 'credentials="env"' in denied[0]      # cw_env's keys
    assert not any("refused the credentials" in line for line in d.logs)
    await d.instance.write(chunk)        # the policy fixed: the same chunk goes out
    assert sorted(messages(cwl_proxy.endpoint, group)) == sorted(f'{{"i":{i}}}' for i in range(3))


@arun
async def test_accept_then_fail_duplicates_only_that_batch(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="max_events_per_batch 10"))
    base = now_ns() - 60 * NS
    chunk = await one_chunk(d, "app", [(base + i, {"i": i}) for i in range(50)])
    cwl_proxy.faults.delay(0.0, 2)
    cwl_proxy.faults.accept_then_fail(1)                # call 3 is stored, but the answer is a 500
    with pytest.raises(RetryableError):
        await d.instance.write(chunk)
    await d.instance.write(chunk)
    counts = Counter(messages(cwl_proxy.endpoint, group))
    assert len(counts) == 50
    assert sorted(m for m, n in counts.items() if n > 1) == sorted(f'{{"i":{i}}}' for i in range(20, 30))
    assert max(counts.values()) == 2


@arun
async def test_missing_group_and_stream_created_on_resource_not_found(cw_output, cwl_proxy):
    group = new_group()
    d = cw_output(conf(group, extra="auto_create_stream true\nretention_in_days 7"))
    await d.instance.write(await one_chunk(d, "app", [(now_ns(), {"a": 1})]))
    calls = cwl_proxy.stats().calls
    assert calls["CreateLogGroup"] == 1 and calls["CreateLogStream"] == 1 and calls["PutRetentionPolicy"] == 1
    assert not any(k.startswith("Describe") for k in calls)
    assert messages(cwl_proxy.endpoint, group) == ['{"a":1}']
    cwl_proxy.reset_stats()        # a second chunk: no control-plane call at all
    await d.instance.write(await one_chunk(d, "app", [(now_ns(), {"a": 2})]))
    assert set(cwl_proxy.stats().calls) == {"PutLogEvents"}


@arun
async def test_auto_create_group_false_creates_only_the_stream(cw_output, cwl_proxy, logs):
    group = new_group()
    d = cw_output(conf(group, extra="auto_create_stream true\nauto_create_group false"))
    chunk = await one_chunk(d, "app", [(now_ns(), {"a": 1})])
    with pytest.raises(RetryableError, match="does not exist and auto_create_group is false"):
        await d.instance.write(chunk)
    assert cwl_proxy.stats().calls["CreateLogGroup"] == 0
    logs.create_log_group(logGroupName=group)
    await d.instance.write(chunk)
    assert messages(cwl_proxy.endpoint, group) == ['{"a":1}']


@arun
async def test_auto_create_false_is_a_retryable_error_not_a_silent_skip(cw_output, cwl_proxy):
    group = new_group()
    d = cw_output(conf(group))
    with pytest.raises(RetryableError, match="does not exist and auto_create_stream is false"):
        await d.instance.write(await one_chunk(d, "app", [(now_ns(), {"a": 1})]))
    calls = cwl_proxy.stats().calls
    assert calls["CreateLogGroup"] == 0 and calls["CreateLogStream"] == 0
    assert any(f"Log group '{group}' does not exist" in line or "does not exist" in line for line in d.logs)


@arun
async def test_exhausted_retries_move_chunk_to_dead_letter(cw_output, cwl_proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("FLUENT_BACKUP_DIR", str(tmp_path))
    group = new_group()
    d = cw_output(conf(group, extra="<buffer>\nretry_max_times 0\nretry_wait 0.01\n</buffer>"))
    await d.instance.emit("app", [(now_ns(), {"a": 1})])
    await d.instance.flush()
    assert list(tmp_path.rglob("*.log")), "the failing chunk must be dead-lettered, not dropped"


@arun
async def test_invalid_names_are_fixed_with_a_warning(cw_output, cwl_proxy):
    d = cw_output("use_tag_as_group true\nlog_stream_name a:b*c\nauto_create_stream true")
    tag = f"kawa.test.{uuid.uuid4().hex[:8]}"
    await d.instance.write(await one_chunk(d, tag + ":x", [(now_ns(), {"a": 1})]))
    assert messages(cwl_proxy.endpoint, tag + "_x", "a_b_c") == ['{"a":1}']
    assert sum("invalid log stream name" in line for line in d.logs) == 1
    assert sum("invalid log group name" in line for line in d.logs) == 1


@arun
async def test_names_from_record_keys_and_missing_name_routed(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output("log_group_name_key g\nlog_stream_name_key st\nremove_log_group_name_key true\n"
                  "remove_log_stream_name_key true")
    t = now_ns()
    chunk = await one_chunk(d, "app", [(t, {"g": group, "st": stream, "a": 1}), (t, {"g": group, "a": 2})])
    await d.instance.write(chunk)
    assert messages(cwl_proxy.endpoint, group, stream) == ['{"a":1}']
    assert [r for _, _, r, _ in d.error_events] == [{"g": group, "a": 2}]


@arun
async def test_placeholders_in_names(cw_output, cwl_proxy, logs):
    group = new_group()
    logs.create_log_group(logGroupName=group)
    d = cw_output(f"log_group_name {group}\nlog_stream_name ${{tag}}-s\nauto_create_stream true\n<buffer tag>\n</buffer>")
    await d.instance.write(await one_chunk(d, "web", [(now_ns(), {"a": 1})]))
    assert messages(cwl_proxy.endpoint, group, "web-s") == ['{"a":1}']


@arun
async def test_include_time_key_injects_string_time(cw_output, cwl_proxy, make_stream):
    group, stream = make_stream()
    d = cw_output(conf(group, extra="include_time_key true\nlocaltime false"))
    t = (int(time.time()) - 60) * NS
    await d.instance.write(await one_chunk(d, "app", [(t, {"a": 1})]))
    (msg,) = messages(cwl_proxy.endpoint, group)
    assert msg == '{"a":1,"time":"' + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t // NS)) + '"}'
