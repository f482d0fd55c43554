"""A local CloudWatch Logs for tests, benches and the demo: moto in its own process, plus a strict proxy.
The proxy enforces the PutLogEvents rules moto skips, computes rejectedLogEventsInfo, and injects faults.
"""

# Why a proxy instead of patching moto: moto 5.2 accepts 2 MB events, > 1 MiB batches, > 10,000 events,
# empty messages, an empty logEvents list and 3-day spans; it reports tooOldLogEventEndIndex as the last
# too-old index (AWS: exclusive end, i.e. one more) and tooNewLogEventStartIndex as the *last* too-new
# index (AWS: the first), ignores retention (no expiredLogEventEndIndex) and uses the real clock. Only
# the chronological-order check matches AWS. A client that passes against bare moto can fail on AWS.
#
# The AWS limits are written out again here instead of being imported from the batcher: the proxy plays
# AWS, and a wrong constant in the client must not silently make the referee wrong too.

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

# --- AWS-side limits (API_PutLogEvents, API_InputLogEvent, API_RejectedLogEventsInfo) -----------------
AWS_MAX_BATCH_BYTES = 1_048_576          # "sum of all event messages in UTF-8, plus 26 bytes for each log event"
AWS_EVENT_OVERHEAD = 26
AWS_MAX_EVENT_BYTES = 1_048_576          # "Each log event can be no larger than 1 MB" (counted with the 26 bytes)
AWS_MAX_EVENTS = 10_000                  # InputLogEvents: max 10000 items
AWS_MAX_SPAN_MS = 24 * 3600 * 1000       # "cannot span more than 24 hours"
AWS_TOO_OLD_MS = 14 * 24 * 3600 * 1000   # "older than 14 days ... are rejected"
AWS_TOO_NEW_MS = 2 * 3600 * 1000         # "more than 2 hours in the future ... are rejected"
MS_PER_DAY = 24 * 3600 * 1000

TARGET_PREFIX = "Logs_20140328."
JSON_CT = "application/x-amz-json-1.1"

# Messages as AWS returns them (seen verbatim in client bug reports, e.g. aws/aws-sdk-js-v3#6164,
# fluent-plugin-cloudwatch-logs#46, nhs-england-tools/terraform-aws-opennext#27); the validation-error
# wording is the standard AWS JSON-protocol constraint message (also what moto uses).
MSG_EVENT_TOO_LARGE = "Log event too large: {size} bytes exceeds limit of {limit}"
MSG_UPLOAD_TOO_LARGE = "Upload too large: {size} bytes exceeds limit of {limit}"
MSG_ORDER = "Log events in a single PutLogEvents request must be in chronological order."
MSG_SPAN = "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."
MSG_THROTTLED = "Rate exceeded"
MSG_UNAVAILABLE = "The service is unavailable. Please try again later."
MSG_ACCESS_DENIED = ("User: arn:aws:sts::123456789012:assumed-role/kawa-test/kawa is not authorized to perform: "
                     "logs:{action} because no identity-based policy allows the logs:{action} action")

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller retries if someone takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fake_aws_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) plus fake credentials, so nothing can reach a real AWS account."""
    env = dict(os.environ if base is None else base)
    env.update(FAKE_CREDENTIALS)
    # A developer's ~/.aws profile must not leak into tests.
    env.pop("AWS_PROFILE", None)
    return env


def logs_client(endpoint: str, *, region: str = "us-east-1", max_attempts: int = 1,
                parameter_validation: bool = True, read_timeout: float = 10.0) -> Any:
    """A boto3 CloudWatch Logs client for a local endpoint with fake credentials.

    max_attempts=1 disables botocore's own retries so tests see every fault; parameter_validation=False
    lets a test send what botocore would refuse client-side (empty message, empty list) to the proxy.
    """
    import boto3
    from botocore.config import Config

    return boto3.client(
        "logs", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"total_max_attempts": max_attempts, "mode": "standard"},
                      parameter_validation=parameter_validation, read_timeout=read_timeout,
                      connect_timeout=5),
    )


def _wait_http(host: str, port: int, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until an HTTP server answers anything on host:port, or raise."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(host, port, timeout=1)
            conn.request("GET", "/moto-api/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered on {host}:{port}: {last}")


class _QuietServer(ThreadingHTTPServer):
    """A client killed mid-request (kill -9 tests) is expected: no traceback for a broken connection."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class MotoServer:
    """moto's server mode as a real child process (`python -m moto.server`), on a free local port."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None,
                 startup_timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("MotoServer not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        fixed = self.port is not None
        for attempt in range(3):
            port = self.port if fixed else free_port(self.host)
            # A file, not a pipe: an unread pipe fills up and blocks moto mid-request.
            self._log = tempfile.NamedTemporaryFile(prefix="kawa-moto-", suffix=".log", delete=False)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=fake_aws_env(),
            )
            self.port = port
            try:
                _wait_http(self.host, port, time.monotonic() + self.startup_timeout, self._proc)
                return self
            except (RuntimeError, TimeoutError):
                last_try = fixed or attempt == 2
                log_name = self._log.name
                self.stop(keep_log=last_try)     # the error below names the log: keep it to read
                if last_try:
                    raise RuntimeError(f"moto server did not start; log: {log_name}") from None
                self.port = None   # port race: try another one
        raise AssertionError("unreachable")

    def reset(self) -> None:
        """Forget every resource in every region (moto's /moto-api/reset)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
        conn.close()

    def stop(self, keep_log: bool = False) -> None:
        """Stop moto and delete its log (each test run starts dozens of servers; `keep_log` leaves it)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log, self._log = self._log, None
        if log is not None:
            log.close()
            if not keep_log:
                with contextlib.suppress(OSError):
                    os.unlink(log.name)

    def __enter__(self) -> MotoServer:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- fault injection ---------------------------------------------------------------------------------

FAULT_KINDS = ("throttle", "unavailable", "delay", "drop", "drop_after_forward", "accept_then_fail",
               "access_denied")


@dataclass(frozen=True, slots=True)
class Fault:
    """One programmed misbehaviour for one call."""

    kind: str                 # one of FAULT_KINDS
    seconds: float = 0.0      # for "delay": sleep before handling the call normally


class FaultInjector:
    """What the proxy should do wrong next, per action. Queued faults first, then the random mode.

    throttle        400 ThrottlingException "Rate exceeded", request not forwarded
    unavailable     500 ServiceUnavailableException, request not forwarded
    delay           sleep `seconds`, then handle normally (a client read timeout sees a lost response)
    drop            close the socket with no response, request not forwarded
    drop_after_forward  forward (events stored), then close the socket with no response
    accept_then_fail    forward (events stored), then answer 500: the client must expect duplicates
    access_denied   400 AccessDeniedException (the IAM policy lacks the action), request not forwarded
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}
        self._random: dict[str, tuple[float, random.Random, tuple[Fault, ...]]] = {}

    def _push(self, action: str, fault: Fault, n: int) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._queues.setdefault(action, deque()).extend([fault] * n)

    def throttle(self, n: int = 1, *, action: str = "PutLogEvents") -> None:
        self._push(action, Fault("throttle"), n)

    def unavailable(self, n: int = 1, *, action: str = "PutLogEvents") -> None:
        self._push(action, Fault("unavailable"), n)

    def delay(self, seconds: float, n: int = 1, *, action: str = "PutLogEvents") -> None:
        self._push(action, Fault("delay", seconds), n)

    def drop_connection(self, n: int = 1, *, after_forward: bool = False,
                        action: str = "PutLogEvents") -> None:
        self._push(action, Fault("drop_after_forward" if after_forward else "drop"), n)

    def accept_then_fail(self, n: int = 1, *, action: str = "PutLogEvents") -> None:
        self._push(action, Fault("accept_then_fail"), n)

    def access_denied(self, n: int = 1, *, action: str = "PutLogEvents") -> None:
        self._push(action, Fault("access_denied"), n)

    def random_failures(self, fraction: float, *, seed: int = 0,
                        kinds: Iterable[str] = ("throttle", "unavailable"),
                        delay_seconds: float = 0.2, action: str = "PutLogEvents") -> None:
        """Fail `fraction` of the calls (reproducibly, from `seed`) with a kind drawn from `kinds`."""
        faults = tuple(Fault(k, delay_seconds if k == "delay" else 0.0) for k in kinds)
        if not 0.0 <= fraction <= 1.0 or not faults or any(f.kind not in FAULT_KINDS for f in faults):
            raise ValueError("fraction must be in [0, 1] and kinds among " + ", ".join(FAULT_KINDS))
        with self._lock:
            self._random[action] = (fraction, random.Random(seed), faults)

    def clear(self) -> None:
        """No more faults: empty the queues and stop the random mode."""
        with self._lock:
            self._queues.clear()
            self._random.clear()

    def pending(self, action: str = "PutLogEvents") -> int:
        with self._lock:
            return len(self._queues.get(action, ()))

    def next_fault(self, action: str) -> Fault | None:
        """Consume the fault for this call, if any (called once per request by the proxy)."""
        with self._lock:
            q = self._queues.get(action)
            if q:
                return q.popleft()
            rnd = self._random.get(action)
            if rnd is not None:
                fraction, rng, faults = rnd
                if rng.random() < fraction:
                    return rng.choice(faults)
        return None


@dataclass
class ProxyStats:
    """Counters a test asserts on. `stats()` returns a copy, so reading never races the handlers."""

    calls: Counter[str] = field(default_factory=Counter)               # by action, every call
    events_accepted: int = 0                                          # forwarded to moto and stored
    events_rejected: int = 0                                          # too old + too new + expired
    rejected_too_old: int = 0
    rejected_too_new: int = 0
    rejected_expired: int = 0
    invalid_requests: Counter[str] = field(default_factory=Counter)   # InvalidParameter reason -> count
    faults: Counter[str] = field(default_factory=Counter)             # fault kind -> times injected
    upstream_rejected: int = 0   # events we accepted but moto's own (real) clock rejected: fix the test clock

    def copy(self) -> ProxyStats:
        return ProxyStats(Counter(self.calls), self.events_accepted, self.events_rejected,
                          self.rejected_too_old, self.rejected_too_new, self.rejected_expired,
                          Counter(self.invalid_requests), Counter(self.faults), self.upstream_rejected)


class _AwsError(Exception):
    def __init__(self, status: int, type_: str, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.reason = status, type_, message, reason


def _validation_msg(value: str, where: str, constraint: str) -> str:
    return f"1 validation error detected: Value {value} at '{where}' failed to satisfy constraint: {constraint}"


class StrictCloudWatchProxy:
    """CloudWatch Logs as strict as AWS in front of a moto endpoint, with programmable faults.

    `clock` returns seconds since the epoch (default time.time) and decides the too-old/too-new window.
    moto applies its own real-clock window afterwards, so a fake clock must stay close to real time;
    events moto drops anyway are counted in stats().upstream_rejected. Group retention is read from moto
    once per group and re-read after a retention/group call passes through the proxy; call reset() if a
    test changes retention on moto directly.
    """

    def __init__(self, upstream: str, *, clock: Callable[[], float] = time.time,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.clock = clock
        self.faults = FaultInjector()
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._stats = ProxyStats()
        self._retention: dict[tuple[str, str], int | None] = {}   # (region, group) -> days
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("proxy not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StrictCloudWatchProxy:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        server = _QuietServer((self._host, self._port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="cwl-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StrictCloudWatchProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counters ------------------------------------------------------------------------------------
    def stats(self) -> ProxyStats:
        with self._lock:
            return self._stats.copy()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = ProxyStats()

    def reset(self) -> None:
        """Clear faults, counters and the retention cache (between tests)."""
        self.faults.clear()
        self.reset_stats()
        with self._lock:
            self._retention.clear()

    def _count(self, fn: Callable[[ProxyStats], None]) -> None:
        with self._lock:
            fn(self._stats)

    # -- upstream ------------------------------------------------------------------------------------
    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request to moto and return (status, headers, body)."""
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            hop = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}
            out = {k: v for k, v in headers.items() if k.lower() not in hop}
            out["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=out)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in hop], data
        finally:
            conn.close()

    def _retention_days(self, region: str, group: str, headers: dict[str, str]) -> int | None:
        """The group's retention from moto (cached until a retention/group call passes the proxy)."""
        key = (region, group)
        with self._lock:
            if key in self._retention:
                return self._retention[key]
        hdrs = {k: v for k, v in headers.items() if k.lower() in ("authorization", "x-amz-date")}
        hdrs.update({"X-Amz-Target": TARGET_PREFIX + "DescribeLogGroups", "Content-Type": JSON_CT})
        status, _, data = self.forward("POST", "/", hdrs, json.dumps({"logGroupNamePrefix": group}).encode())
        days = None
        if status == 200:
            for g in json.loads(data).get("logGroups", []):
                if g.get("logGroupName") == group:
                    days = g.get("retentionInDays")
        with self._lock:
            self._retention[key] = days
        return days

    def _invalidate_retention(self, region: str, body: bytes) -> None:
        try:
            group = json.loads(body or b"{}").get("logGroupName")
        except ValueError:
            return
        with self._lock:
            self._retention.pop((region, group), None)

    # -- PutLogEvents ----------------------------------------------------------------------------------
    def put_log_events(self, region: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Validate as AWS does, forward the accepted events only, answer as AWS would."""
        try:
            req = json.loads(body)
        except ValueError:
            raise _AwsError(400, "SerializationException", "Unable to parse request body", "json") from None
        events = req.get("logEvents")
        self._validate(events)
        now_ms = int(self.clock() * 1000)
        retention = self._retention_days(region, req.get("logGroupName", ""), headers)
        n = len(events)
        too_old_end = sum(1 for e in events if e["timestamp"] < now_ms - AWS_TOO_OLD_MS)
        expired_end = 0
        if retention is not None:
            expired_end = sum(1 for e in events if e["timestamp"] < now_ms - retention * MS_PER_DAY)
        too_new_start = n
        while too_new_start > 0 and events[too_new_start - 1]["timestamp"] > now_ms + AWS_TOO_NEW_MS:
            too_new_start -= 1
        first_ok = max(too_old_end, expired_end)
        accepted = events[first_ok:too_new_start] if first_ok < too_new_start else []
        # AWS: the span limit applies to the events it would store.
        if accepted and accepted[-1]["timestamp"] - accepted[0]["timestamp"] > AWS_MAX_SPAN_MS:
            raise _AwsError(400, "InvalidParameterException", MSG_SPAN, "span")

        fwd = dict(req)
        fwd["logEvents"] = accepted
        status, resp_headers, data = self.forward("POST", "/", headers, json.dumps(fwd).encode())
        if status != 200:
            return status, resp_headers, data
        upstream = json.loads(data or b"{}")
        rejected: dict[str, int] = {}
        if too_old_end:
            rejected["tooOldLogEventEndIndex"] = too_old_end
        if expired_end:
            rejected["expiredLogEventEndIndex"] = expired_end
        if too_new_start < n:
            rejected["tooNewLogEventStartIndex"] = too_new_start
        out: dict[str, Any] = {"nextSequenceToken": upstream.get("nextSequenceToken")}
        if rejected:
            out["rejectedLogEventsInfo"] = rejected
        n_new = n - too_new_start
        n_old_or_expired = min(first_ok, too_new_start)
        up_rej = upstream.get("rejectedLogEventsInfo")

        def count(s: ProxyStats) -> None:
            s.events_accepted += len(accepted)
            s.events_rejected += n - len(accepted)
            s.rejected_too_new += n_new
            s.rejected_too_old += min(too_old_end, too_new_start)
            s.rejected_expired += n_old_or_expired - min(too_old_end, too_new_start)
            if up_rej:
                s.upstream_rejected += 1

        self._count(count)
        return 200, _json_headers(), json.dumps(out).encode()

    def _validate(self, events: Any) -> None:
        """The request-level checks that fail the whole call with InvalidParameterException."""
        def bad(msg: str, reason: str) -> _AwsError:
            return _AwsError(400, "InvalidParameterException", msg, reason)

        if not isinstance(events, list) or not events:
            raise bad(_validation_msg("'[]'", "logEvents", "Member must have length greater than or equal to 1"),
                      "no_events")
        if len(events) > AWS_MAX_EVENTS:
            raise bad("1 validation error detected: Value at 'logEvents' failed to satisfy constraint: "
                      f"Member must have length less than or equal to {AWS_MAX_EVENTS}", "too_many_events")
        total = 0
        prev = None
        for i, e in enumerate(events, 1):
            msg, ts = e.get("message"), e.get("timestamp")
            if not isinstance(ts, int) or ts < 0:
                raise bad(_validation_msg(f"'{ts}'", f"logEvents.{i}.member.timestamp",
                                          "Member must have value greater than or equal to 0"), "timestamp")
            if not isinstance(msg, str) or not msg:
                raise bad(_validation_msg("''", f"logEvents.{i}.member.message",
                                          "Member must have length greater than or equal to 1"), "empty_message")
            size = len(msg.encode("utf-8", "surrogatepass")) + AWS_EVENT_OVERHEAD
            if size > AWS_MAX_EVENT_BYTES:
                raise bad(MSG_EVENT_TOO_LARGE.format(size=size, limit=AWS_MAX_EVENT_BYTES), "event_too_large")
            total += size
            if prev is not None and ts < prev:
                raise bad(MSG_ORDER, "order")
            prev = ts
        if total > AWS_MAX_BATCH_BYTES:
            raise bad(MSG_UPLOAD_TOO_LARGE.format(size=total, limit=AWS_MAX_BATCH_BYTES), "batch_too_large")


def _json_headers() -> list[tuple[str, str]]:
    return [("Content-Type", JSON_CT), ("x-amzn-RequestId", str(uuid.uuid4()))]


def _region_of(headers: dict[str, str]) -> str:
    """The region from the SigV4 credential scope (moto routes backends the same way)."""
    auth = headers.get("authorization", "")
    marker = "Credential="
    if marker in auth:
        scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 3:
            return scope[2]
    return "us-east-1"


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: StrictCloudWatchProxy
    protocol_version = "HTTP/1.1"   # keep-alive, as botocore's connection pool expects

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without NODELAY, Nagle + the client's delayed
        # ACK add ~40 ms to every call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 - stdlib signature
        pass  # one line per request on stderr would drown test output

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, err: _AwsError) -> None:
        body = json.dumps({"__type": err.type, "message": err.message}).encode()
        self._send(err.status, _json_headers(), body)

    def _drop(self) -> None:
        # Close without a byte of response: the client sees a reset/EOF mid-call.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        target = headers.get("x-amz-target", "")
        if not target.startswith(TARGET_PREFIX):
            self._send(*owner.forward(self.command, self.path, dict(self.headers.items()), body))
            return
        action = target[len(TARGET_PREFIX):]
        region = _region_of(headers)
        owner._count(lambda s: s.calls.update([action]))

        fault = owner.faults.next_fault(action)
        if fault is not None:
            owner._count(lambda s: s.faults.update([fault.kind]))
            if fault.kind == "throttle":
                self._send_error(_AwsError(400, "ThrottlingException", MSG_THROTTLED))
                return
            if fault.kind == "unavailable":
                self._send_error(_AwsError(500, "ServiceUnavailableException", MSG_UNAVAILABLE))
                return
            if fault.kind == "access_denied":
                self._send_error(_AwsError(400, "AccessDeniedException", MSG_ACCESS_DENIED.format(action=action)))
                return
            if fault.kind == "drop":
                self._drop()
                return
            if fault.kind == "delay":
                time.sleep(fault.seconds)

        if action in ("PutRetentionPolicy", "DeleteRetentionPolicy", "DeleteLogGroup", "CreateLogGroup"):
            owner._invalidate_retention(region, body)
        try:
            if action == "PutLogEvents":
                result = owner.put_log_events(region, headers, body)
            else:
                result = owner.forward(self.command, self.path, dict(self.headers.items()), body)
        except _AwsError as err:
            reason = err.reason
            if reason:
                owner._count(lambda s: s.invalid_requests.update([reason]))
            self._send_error(err)
            return

        if fault is not None and fault.kind == "drop_after_forward":
            self._drop()
            return
        if fault is not None and fault.kind == "accept_then_fail":
            self._send_error(_AwsError(500, "ServiceUnavailableException", MSG_UNAVAILABLE))
            return
        self._send(*result)


def read_all_events(endpoint: str, group: str, stream: str | None = None, *,
                    region: str = "us-east-1") -> list[dict[str, Any]]:
    """Every event stored in a group (filter_log_events) or one stream (get_log_events), oldest first.

    Uses the public API with pagination, the way a user checking their logs would.
    """
    client = logs_client(endpoint, region=region, max_attempts=3)
    if stream is not None:
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        while True:
            page = client.get_log_events(**kwargs)
            out.extend(page["events"])
            token = page.get("nextForwardToken")
            # The documented end condition: the same forward token comes back.
            if not token or token == kwargs.get("nextToken"):
                return out
            kwargs["nextToken"] = token
    events: list[dict[str, Any]] = []
    for page in client.get_paginator("filter_log_events").paginate(logGroupName=group):
        events.extend(page["events"])
    return events
