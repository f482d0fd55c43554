"""A fast local CloudWatch Logs endpoint for bench/run.py: PutLogEvents checked against every AWS limit,
events counted (and optionally de-duplicated); runs in its own process so its CPU is not kawa's.

    python bench/_fast_cwl.py [--port 0] [--track-duplicates]    # prints "PORT <n>" once listening

GET /_stats returns the counters as JSON. SigV4 is not verified (the bench uses fake keys).
"""

# Why not kawa.testing.cwl_server: moto behind a threaded http.server costs several CPU-seconds per
# 100k events, and on a small machine that CPU is taken from the kawa process being measured. This
# server does the same request-level checks with one orjson.loads per request on one asyncio loop.

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# The AWS limits and error texts as the strict test proxy states them (one referee for tests and bench).
from kawa.testing.cwl_server import (  # noqa: E402
    AWS_EVENT_OVERHEAD, AWS_MAX_BATCH_BYTES, AWS_MAX_EVENT_BYTES, AWS_MAX_EVENTS, AWS_MAX_SPAN_MS,
    AWS_TOO_NEW_MS, AWS_TOO_OLD_MS, JSON_CT, MSG_EVENT_TOO_LARGE, MSG_ORDER, MSG_SPAN, MSG_UPLOAD_TOO_LARGE,
    TARGET_PREFIX,
)

MAX_HEADER_BYTES = 64 * 1024


class AwsError(Exception):
    def __init__(self, type_: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.type, self.message, self.status = type_, message, status


def _validation(value: str, where: str, constraint: str) -> AwsError:
    return AwsError("InvalidParameterException",
                    f"1 validation error detected: Value {value} at '{where}' failed to satisfy constraint: "
                    f"{constraint}")


class LogsState:
    """Groups, streams and counters; every handler runs on the one event loop, so no locks."""

    def __init__(self, track_duplicates: bool) -> None:
        self.groups: set[str] = set()
        self.streams: set[tuple[str, str]] = set()
        self.seen: set[int] | None = set() if track_duplicates else None
        self.stats: dict[str, int] = {"requests": 0, "put_calls": 0, "accepted": 0, "rejected_calls": 0,
                                      "rejected_events": 0, "too_old": 0, "too_new": 0, "duplicates": 0,
                                      "bytes": 0, "max_batch_events": 0, "max_batch_bytes": 0}
        self.errors: dict[str, int] = {}

    def handle(self, action: str, body: bytes) -> dict[str, Any]:
        try:
            req = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            raise AwsError("SerializationException", "Start of structure or map found where not expected.") from None
        if not isinstance(req, dict):
            raise AwsError("SerializationException", "Start of structure or map found where not expected.")
        group, stream = req.get("logGroupName"), req.get("logStreamName")
        if action == "PutLogEvents":
            return self.put_log_events(group, stream, req.get("logEvents"))
        if action == "CreateLogGroup":
            if group in self.groups:
                raise AwsError("ResourceAlreadyExistsException", "The specified log group already exists")
            self.groups.add(group)
            return {}
        if action == "CreateLogStream":
            if group not in self.groups:
                raise AwsError("ResourceNotFoundException", "The specified log group does not exist.")
            if (group, stream) in self.streams:
                raise AwsError("ResourceAlreadyExistsException", "The specified log stream already exists")
            self.streams.add((group, stream))
            return {}
        if action == "PutRetentionPolicy":
            if group not in self.groups:
                raise AwsError("ResourceNotFoundException", "The specified log group does not exist.")
            return {}
        if action == "DescribeLogGroups":
            prefix = req.get("logGroupNamePrefix") or ""
            return {"logGroups": [{"logGroupName": g, "arn": f"arn:aws:logs:us-east-1:123456789012:log-group:{g}:*"}
                                  for g in sorted(self.groups) if g.startswith(prefix)]}
        raise AwsError("UnknownOperationException", f"unsupported operation {action!r} (bench endpoint)")

    def put_log_events(self, group: Any, stream: Any, events: Any) -> dict[str, Any]:
        if group not in self.groups:
            raise AwsError("ResourceNotFoundException", "The specified log group does not exist.")
        if (group, stream) not in self.streams:
            raise AwsError("ResourceNotFoundException", "The specified log stream does not exist.")
        if not isinstance(events, list) or not events:
            raise _validation("'[]'", "logEvents", "Member must have length greater than or equal to 1")
        if len(events) > AWS_MAX_EVENTS:
            raise AwsError("InvalidParameterException", "1 validation error detected: Value at 'logEvents' "
                           f"failed to satisfy constraint: Member must have length less than or equal to {AWS_MAX_EVENTS}")
        total = 0
        prev = -1
        first_ts = None
        for i, event in enumerate(events, 1):
            msg, ts = event.get("message"), event.get("timestamp")
            if not isinstance(ts, int) or ts < 0:
                raise _validation(f"'{ts}'", f"logEvents.{i}.member.timestamp",
                                  "Member must have value greater than or equal to 0")
            if not isinstance(msg, str) or not msg:
                raise _validation("''", f"logEvents.{i}.member.message",
                                  "Member must have length greater than or equal to 1")
            size = (len(msg) if msg.isascii() else len(msg.encode("utf-8", "surrogatepass"))) + AWS_EVENT_OVERHEAD
            if size > AWS_MAX_EVENT_BYTES:
                raise AwsError("InvalidParameterException",
                               MSG_EVENT_TOO_LARGE.format(size=size, limit=AWS_MAX_EVENT_BYTES))
            total += size
            if ts < prev:
                raise AwsError("InvalidParameterException", MSG_ORDER)
            prev = ts
            if first_ts is None:
                first_ts = ts
        if total > AWS_MAX_BATCH_BYTES:
            raise AwsError("InvalidParameterException", MSG_UPLOAD_TOO_LARGE.format(size=total, limit=AWS_MAX_BATCH_BYTES))
        if first_ts is not None and prev - first_ts > AWS_MAX_SPAN_MS:
            raise AwsError("InvalidParameterException", MSG_SPAN)
        return self._accept(events, total)

    def _accept(self, events: list[dict[str, Any]], total: int) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        too_old_end = 0          # AWS: exclusive end index of the too-old prefix (events are sorted)
        while too_old_end < len(events) and events[too_old_end]["timestamp"] < now_ms - AWS_TOO_OLD_MS:
            too_old_end += 1
        too_new_start = len(events)
        while too_new_start > too_old_end and events[too_new_start - 1]["timestamp"] > now_ms + AWS_TOO_NEW_MS:
            too_new_start -= 1
        s = self.stats
        s["put_calls"] += 1
        s["accepted"] += too_new_start - too_old_end
        s["too_old"] += too_old_end
        s["too_new"] += len(events) - too_new_start
        s["bytes"] += total
        s["max_batch_events"] = max(s["max_batch_events"], len(events))
        s["max_batch_bytes"] = max(s["max_batch_bytes"], total)
        if self.seen is not None:
            seen = self.seen
            before = len(seen)
            keys = [hash((e["timestamp"], e["message"])) for e in events[too_old_end:too_new_start]]
            seen.update(keys)
            s["duplicates"] += len(keys) - (len(seen) - before)
        out: dict[str, Any] = {"nextSequenceToken": uuid.uuid4().hex}
        rejected: dict[str, int] = {}
        if too_old_end:
            rejected["tooOldLogEventEndIndex"] = too_old_end
        if too_new_start < len(events):
            rejected["tooNewLogEventStartIndex"] = too_new_start
        if rejected:
            out["rejectedLogEventsInfo"] = rejected
        return out

    def count_error(self, err: AwsError, body: bytes) -> None:
        self.stats["rejected_calls"] += 1
        self.errors[err.type] = self.errors.get(err.type, 0) + 1
        if err.type == "InvalidParameterException":
            try:
                self.stats["rejected_events"] += len(orjson.loads(body).get("logEvents") or ())
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                pass


def _response(status: int, body: bytes, extra: str = "") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {JSON_CT}\r\nx-amzn-RequestId: {uuid.uuid4()}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n")
    return head.encode("ascii") + body


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0"))
    return await reader.readexactly(length) if length else b""


def serve_connection(state: LogsState):  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if len(head) > MAX_HEADER_BYTES:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ", 2)[:2]
                headers = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await _read_body(reader, headers)
                state.stats["requests"] += 1
                if method == "GET" and target.startswith("/_stats"):
                    writer.write(_response(200, orjson.dumps({**state.stats, "errors": state.errors})))
                else:
                    action = headers.get("x-amz-target", "")
                    action = action[len(TARGET_PREFIX):] if action.startswith(TARGET_PREFIX) else action
                    try:
                        writer.write(_response(200, orjson.dumps(state.handle(action, body))))
                    except AwsError as err:
                        state.count_error(err, body)
                        writer.write(_response(err.status, orjson.dumps({"__type": err.type, "message": err.message}),
                                               f"x-amzn-ErrorType: {err.type}:\r\n"))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()
    return handler


async def main_async(args: argparse.Namespace) -> None:
    state = LogsState(args.track_duplicates)
    server = await asyncio.start_server(serve_connection(state), "127.0.0.1", args.port, limit=4 << 20)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--track-duplicates", action="store_true",
                   help="keep a hash of (timestamp, message) of every accepted event and count repeats")
    args = p.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
