"""Tests for the strict CloudWatch Logs proxy in front of a real moto process: each PutLogEvents rule,
rejectedLogEventsInfo, fault injection, counters, and events read back with boto3.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from kawa.plugins.outputs.cloudwatch_logs.batcher import build_batches
from kawa.testing.cwl_server import (
    MSG_ORDER,
    MSG_SPAN,
    MotoServer,
    StrictCloudWatchProxy,
    logs_client,
    read_all_events,
)

HOUR = 3_600_000
DAY = 24 * HOUR


def now_ms() -> int:
    return int(time.time() * 1000)


def put(logs: Any, group: str, stream: str, events: list[tuple[int, str]]) -> dict[str, Any]:
    return logs.put_log_events(logGroupName=group, logStreamName=stream,
                               logEvents=[{"timestamp": t, "message": m} for t, m in events])


def error_of(fn: Callable[[], Any]) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as ei:
        fn()
    err = ei.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def messages(endpoint: str, group: str, stream: str = "s") -> list[str]:
    return [e["message"] for e in read_all_events(endpoint, group, stream)]


# --- happy path ---------------------------------------------------------------------------------------

def test_moto_is_a_separate_process(moto_server: MotoServer) -> None:
    assert moto_server._proc is not None and moto_server._proc.pid > 0
    assert moto_server.endpoint.startswith("http://127.0.0.1:")


def test_a_stopped_moto_leaves_no_log_file() -> None:
    server = MotoServer().start()
    log_name = server._log.name
    assert os.path.exists(log_name)
    server.stop()
    assert not os.path.exists(log_name)       # a test run starts dozens: they must not pile up in /tmp


def test_accepted_events_read_back(logs: Any, make_stream: Callable[..., tuple[str, str]],
                                   cwl_proxy: StrictCloudWatchProxy, moto_server: MotoServer) -> None:
    group, stream = make_stream()
    t = now_ms()
    resp = put(logs, group, stream, [(t, "one"), (t, "two"), (t + 1, "trois é")])
    assert "rejectedLogEventsInfo" not in resp and resp["nextSequenceToken"]
    assert messages(cwl_proxy.endpoint, group) == ["one", "two", "trois é"]
    # Straight from moto too, and through filter_log_events for the whole group.
    assert [e["message"] for e in read_all_events(moto_server.endpoint, group)] == ["one", "two", "trois é"]
    st = cwl_proxy.stats()
    assert st.calls["PutLogEvents"] == 1 and st.events_accepted == 3 and st.events_rejected == 0


def test_read_all_events_paginates(logs: Any, make_stream: Callable[..., tuple[str, str]],
                                   cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    t = now_ms()
    for k in range(3):
        put(logs, group, stream, [(t, f"{k}-{i}") for i in range(10_000)])
    got = read_all_events(cwl_proxy.endpoint, group, stream)
    assert len(got) == 30_000 and got[-1]["message"] == "2-9999"
    assert len(read_all_events(cwl_proxy.endpoint, group)) == 30_000


def test_batcher_output_is_accepted_whole(logs: Any, make_stream: Callable[..., tuple[str, str]],
                                          cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    t = now_ms() - 20 * HOUR
    # Out of order, multibyte, an oversized event and more than 10,000 events over > 24 h... of the window.
    events = [(t + (i * 7919) % (21 * HOUR), f"ev{i} " + "日" * (i % 300)) for i in range(12_000)]
    events.append((t + 5, "big " + "x" * 1_100_000))
    res = build_batches(events)
    assert len(res.batches) > 2 and res.truncated == 1
    for b in res.batches:
        put(logs, group, stream, b.events)
    st = cwl_proxy.stats()
    assert st.invalid_requests == {} and st.events_accepted == 12_001
    got = read_all_events(cwl_proxy.endpoint, group, stream)
    assert [(e["timestamp"], e["message"]) for e in got] == [ev for b in res.batches for ev in b.events]


# --- request-level rejections (InvalidParameterException, nothing stored) -----------------------------

def test_batch_too_large(logs: Any, make_stream: Callable[..., tuple[str, str]], cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    t = now_ms()
    msg = "x" * (262_144 - 26)
    put(logs, group, stream, [(t, msg)] * 4)            # exactly 1,048,576: fine
    code, text, status = error_of(lambda: put(logs, group, stream, [(t, msg)] * 3 + [(t, msg + "y")]))
    assert (code, status) == ("InvalidParameterException", 400)
    assert text == "Upload too large: 1048577 bytes exceeds limit of 1048576"
    assert len(read_all_events(cwl_proxy.endpoint, group, stream)) == 4
    assert cwl_proxy.stats().invalid_requests["batch_too_large"] == 1


def test_multibyte_counted_in_bytes(logs: Any, make_stream: Callable[..., tuple[str, str]]) -> None:
    group, stream = make_stream()
    code, text, _ = error_of(lambda: put(logs, group, stream, [(now_ms(), "é" * 300_000)] * 2))
    assert code == "InvalidParameterException" and text.startswith("Upload too large: 1200052 bytes")


def test_event_too_large(logs: Any, make_stream: Callable[..., tuple[str, str]]) -> None:
    group, stream = make_stream()
    t = now_ms()
    put(logs, group, stream, [(t, "x" * (1_048_576 - 26))])   # the largest allowed event
    code, text, _ = error_of(lambda: put(logs, group, stream, [(t, "x" * (1_048_576 - 25))]))
    assert code == "InvalidParameterException"
    assert text == "Log event too large: 1048577 bytes exceeds limit of 1048576"


def test_too_many_events(logs: Any, make_stream: Callable[..., tuple[str, str]]) -> None:
    group, stream = make_stream()
    t = now_ms()
    put(logs, group, stream, [(t, "m")] * 10_000)
    code, text, _ = error_of(lambda: put(logs, group, stream, [(t, "m")] * 10_001))
    assert code == "InvalidParameterException" and "less than or equal to 10000" in text


def test_unsorted(logs: Any, make_stream: Callable[..., tuple[str, str]], cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    t = now_ms()
    assert error_of(lambda: put(logs, group, stream, [(t, "a"), (t - 1, "b")]))[:2] == ("InvalidParameterException", MSG_ORDER)
    assert read_all_events(cwl_proxy.endpoint, group, stream) == []


def test_span_over_24h(logs: Any, make_stream: Callable[..., tuple[str, str]]) -> None:
    group, stream = make_stream()
    t = now_ms()
    assert error_of(lambda: put(logs, group, stream, [(t - DAY - 1, "a"), (t, "b")]))[1] == MSG_SPAN
    put(logs, group, stream, [(t - DAY, "a"), (t, "b")])   # exactly 24 h is not "more than"


def test_span_ignores_rejected_events(logs: Any, make_stream: Callable[..., tuple[str, str]],
                                      cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    t = now_ms()
    resp = put(logs, group, stream, [(t - 15 * DAY, "old"), (t, "b")])
    assert resp["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1}
    assert messages(cwl_proxy.endpoint, group) == ["b"]


def test_empty_message_and_empty_list(logs: Any, make_stream: Callable[..., tuple[str, str]]) -> None:
    group, stream = make_stream()
    t = now_ms()
    code, text, _ = error_of(lambda: put(logs, group, stream, [(t, "a"), (t, "")]))
    assert code == "InvalidParameterException"
    assert text == ("1 validation error detected: Value '' at 'logEvents.2.member.message' failed to satisfy "
                    "constraint: Member must have length greater than or equal to 1")
    assert error_of(lambda: put(logs, group, stream, []))[0] == "InvalidParameterException"


def test_missing_stream_passes_moto_error_through(logs: Any, make_stream: Callable[..., tuple[str, str]]) -> None:
    group, _ = make_stream()
    code, _, status = error_of(lambda: put(logs, group, "nope", [(now_ms(), "a")]))
    assert (code, status) == ("ResourceNotFoundException", 400)


# --- rejectedLogEventsInfo ----------------------------------------------------------------------------

def test_rejected_info_indices(logs: Any, make_stream: Callable[..., tuple[str, str]],
                               cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    t = now_ms()
    events = [(t - 15 * DAY, "old1"), (t - 14 * DAY - 1000, "old2"), (t - 1000, "ok1"), (t, "ok2"),
              (t + 2 * HOUR + 60_000, "new1"), (t + 3 * HOUR, "new2")]
    resp = put(logs, group, stream, events)
    # tooOld end index is exclusive, tooNew start index inclusive (API_RejectedLogEventsInfo).
    assert resp["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 2, "tooNewLogEventStartIndex": 4}
    assert messages(cwl_proxy.endpoint, group) == ["ok1", "ok2"]
    st = cwl_proxy.stats()
    assert (st.events_accepted, st.events_rejected, st.rejected_too_old, st.rejected_too_new) == (2, 4, 2, 2)
    assert st.upstream_rejected == 0


def test_all_rejected_still_200(logs: Any, make_stream: Callable[..., tuple[str, str]],
                                cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    resp = put(logs, group, stream, [(now_ms() + 5 * HOUR, "future")])
    assert resp["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 0}
    assert read_all_events(cwl_proxy.endpoint, group, stream) == []


def test_expired_by_retention(logs: Any, make_stream: Callable[..., tuple[str, str]],
                              cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream(retention_days=1)
    t = now_ms()
    resp = put(logs, group, stream, [(t - 15 * DAY, "old"), (t - 2 * DAY, "expired"), (t, "ok")])
    assert resp["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1, "expiredLogEventEndIndex": 2}
    assert messages(cwl_proxy.endpoint, group) == ["ok"]
    assert cwl_proxy.stats().rejected_expired == 1
    # Retention changed through the proxy is seen at once (cache invalidated).
    logs.put_retention_policy(logGroupName=group, retentionInDays=3)
    assert "rejectedLogEventsInfo" not in put(logs, group, stream, [(t - 2 * DAY, "kept")])


def test_window_uses_the_given_clock(logs: Any, make_stream: Callable[..., tuple[str, str]], clock: Any,
                                     cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    clock.offset = -3 * 3600.0    # the proxy believes it is 3 h earlier: real "now" is too new for it
    resp = put(logs, group, stream, [(now_ms(), "a")])
    assert resp["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 0}


# --- faults ---------------------------------------------------------------------------------------------

def test_throttle_next_n(logs: Any, make_stream: Callable[..., tuple[str, str]], cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    cwl_proxy.faults.throttle(2)
    for _ in range(2):
        assert error_of(lambda: put(logs, group, stream, [(now_ms(), "a")])) == ("ThrottlingException", "Rate exceeded", 400)
    put(logs, group, stream, [(now_ms(), "a")])
    assert messages(cwl_proxy.endpoint, group) == ["a"]
    st = cwl_proxy.stats()
    assert st.faults["throttle"] == 2 and st.calls["PutLogEvents"] == 3


def test_botocore_standard_retry_rides_over_throttling(make_stream: Callable[..., tuple[str, str]],
                                                       cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    cwl_proxy.faults.throttle(1)
    put(logs_client(cwl_proxy.endpoint, max_attempts=3), group, stream, [(now_ms(), "a")])
    assert cwl_proxy.stats().calls["PutLogEvents"] == 2


def test_service_unavailable(logs: Any, make_stream: Callable[..., tuple[str, str]], cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    cwl_proxy.faults.unavailable()
    code, _, status = error_of(lambda: put(logs, group, stream, [(now_ms(), "a")]))
    assert (code, status) == ("ServiceUnavailableException", 500)
    assert read_all_events(cwl_proxy.endpoint, group, stream) == []


def test_accept_then_fail_stores_the_events(logs: Any, make_stream: Callable[..., tuple[str, str]],
                                            cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    cwl_proxy.faults.accept_then_fail()
    assert error_of(lambda: put(logs, group, stream, [(now_ms(), "a")]))[2] == 500
    assert messages(cwl_proxy.endpoint, group) == ["a"]   # a retry would now duplicate it


def test_drop_connection(logs: Any, make_stream: Callable[..., tuple[str, str]], cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    cwl_proxy.faults.drop_connection()
    with pytest.raises(ConnectionClosedError):
        put(logs, group, stream, [(now_ms(), "lost")])
    cwl_proxy.faults.drop_connection(after_forward=True)
    with pytest.raises(ConnectionClosedError):
        put(logs, group, stream, [(now_ms(), "stored")])
    assert messages(cwl_proxy.endpoint, group) == ["stored"]
    # The proxy keeps serving after dropping sockets.
    put(logs, group, stream, [(now_ms(), "after")])


def test_slow_response_hits_client_timeout(make_stream: Callable[..., tuple[str, str]],
                                           cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    cwl_proxy.faults.delay(0.6)
    impatient = logs_client(cwl_proxy.endpoint, read_timeout=0.2)
    with pytest.raises(ReadTimeoutError):
        put(impatient, group, stream, [(now_ms(), "late")])
    deadline = time.monotonic() + 3
    while not read_all_events(cwl_proxy.endpoint, group, stream) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert messages(cwl_proxy.endpoint, group) == ["late"]   # the server finished the call anyway


def test_random_failures_are_reproducible(logs: Any, make_stream: Callable[..., tuple[str, str]],
                                          cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()

    def run() -> list[str]:
        cwl_proxy.faults.random_failures(1 / 3, seed=42, kinds=("throttle", "unavailable"))
        out = []
        for i in range(30):
            try:
                put(logs, group, stream, [(now_ms(), f"m{i}")])
                out.append("ok")
            except ClientError as e:
                out.append(e.response["Error"]["Code"])
        cwl_proxy.faults.clear()
        return out

    first, second = run(), run()
    assert first == second
    assert 4 <= first.count("ok") <= 26 and set(first) == {"ok", "ThrottlingException", "ServiceUnavailableException"}


def test_faults_on_other_actions(logs: Any, cwl_proxy: StrictCloudWatchProxy) -> None:
    cwl_proxy.faults.throttle(1, action="CreateLogGroup")
    assert error_of(lambda: logs.create_log_group(logGroupName="/kawa/test/throttled"))[0] == "ThrottlingException"
    assert cwl_proxy.faults.pending("CreateLogGroup") == 0
    logs.create_log_group(logGroupName="/kawa/test/throttled")
    logs.delete_log_group(logGroupName="/kawa/test/throttled")


def test_bad_fault_arguments(cwl_proxy: StrictCloudWatchProxy) -> None:
    with pytest.raises(ValueError):
        cwl_proxy.faults.random_failures(1.5)
    with pytest.raises(ValueError):
        cwl_proxy.faults.random_failures(0.5, kinds=("explode",))


def test_concurrent_puts_counted_exactly(make_stream: Callable[..., tuple[str, str]],
                                         cwl_proxy: StrictCloudWatchProxy) -> None:
    group, stream = make_stream()
    cwl_proxy.faults.throttle(5)

    def worker(k: int) -> None:
        c = logs_client(cwl_proxy.endpoint, max_attempts=10)
        for i in range(10):
            put(c, group, stream, [(now_ms(), f"{k}-{i}-{j}") for j in range(5)])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    st = cwl_proxy.stats()
    assert st.events_accepted == 300 and st.faults["throttle"] == 5 and st.calls["PutLogEvents"] == 65
    assert len(read_all_events(cwl_proxy.endpoint, group, stream)) == 300
