"""Sends one chunk's plans: write first, create group/stream only on ResourceNotFound, resume after the
calls CloudWatch Logs accepted, route rejected and out-of-window events to @ERROR, classify failures.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from kawa import ssl_gate
from kawa.plugins.outputs.cloudwatch_logs import batcher, verify
from kawa.plugins.outputs.cloudwatch_logs.client import (
    CredentialSettings, HttpPool, LogsClient, Signer, botocore_verify, default_endpoint, resolve_credentials,
    resolve_region)
from kawa.plugins.outputs.cloudwatch_logs.errors import (
    DATA_ALREADY_ACCEPTED, RESOURCE_ALREADY_EXISTS, AwsApiError, SigningError, TransportError)
from kawa.plugins.outputs.cloudwatch_logs.messages import Plan
from kawa.plugins.outputs.cloudwatch_logs.progress import ChunkProgress

if TYPE_CHECKING:
    from kawa.plugins.outputs.cloudwatch_logs.plugin import CloudwatchLogsOutput

# rejectedLogEventsInfo field -> our reason name (API_RejectedLogEventsInfo)
REJECT_FIELDS = (("tooOldLogEventEndIndex", "too_old"), ("expiredLogEventEndIndex", "expired"))
TOO_NEW_FIELD = "tooNewLogEventStartIndex"


@dataclass
class Failure:
    message: str
    slow_down: bool = False


def credential_settings(o: Any) -> CredentialSettings:
    wi = o.web_identity_credentials
    return CredentialSettings(
        region=o.region, aws_key_id=o.aws_key_id, aws_sec_key=o.aws_sec_key, use_sts=o.aws_use_sts,
        sts_role_arn=o.aws_sts_role_arn, sts_session_name=o.aws_sts_session_name,
        sts_external_id=o.aws_sts_external_id, sts_policy=o.aws_sts_policy,
        sts_duration_seconds=o.aws_sts_duration_seconds, sts_endpoint_url=o.aws_sts_endpoint_url,
        web_identity=None if wi is None else {
            "role_arn": wi.role_arn, "role_session_name": wi.role_session_name,
            "web_identity_token_file": wi.web_identity_token_file, "policy": wi.policy,
            "duration_seconds": wi.duration_seconds},
        instance_profile_retries=o.aws_instance_profile_credentials_retries,
        ecs_authentication=o.aws_ecs_authentication, ssl_verify_peer=o.ssl_verify_peer, http_proxy=o.http_proxy)


def build_client(o: Any) -> tuple[LogsClient, CredentialSettings, str]:
    """Credentials, region, endpoint and the lean client (blocking: may call IMDS/STS)."""
    ssl_gate.allow()          # awscrt / botocore may load Python's ssl (kawa.ssl_gate)
    settings = credential_settings(o)
    region = resolve_region(settings)
    if not region:
        raise RuntimeError("no AWS region: set 'region' or AWS_REGION")
    settings.region = region
    creds = resolve_credentials(settings)
    endpoint = (o.endpoint or default_endpoint(region)).rstrip("/")
    pool = HttpPool(endpoint, verify=o.ssl_verify_peer, proxy=o.http_proxy, read_timeout=float(o.request_timeout))
    return LogsClient(pool, Signer(creds, region)), settings, endpoint


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


class Delivery:
    """The data path of one output: a client, the executor its blocking calls run in, the counters."""

    def __init__(self, out: "CloudwatchLogsOutput", client: LogsClient, executor: Executor,
                 credentials: str = "") -> None:
        self.out = out
        self.log = out.log
        self.client = client
        self.executor = executor
        self.stale = False          # credentials refused: re-resolve before the next chunk
        self.credentials = credentials     # their source: static, env, assume-role-with-web-identity...
        self._abort = False

    @classmethod
    def connect(cls, out: "CloudwatchLogsOutput", executor: Executor) -> "Delivery":
        client, settings, endpoint = build_client(out.options)
        if settings.crt_failure:
            out.log.warn("awscrt's credential chain found no credentials, botocore's did: using botocore's "
                         "(about 20 MiB more memory)", credentials=settings.method, awscrt_error=settings.crt_failure)
        out.log.info("CloudWatch Logs client ready", endpoint=endpoint, region=settings.region,
                     credentials=settings.method)
        return cls(out, client, executor, settings.method or "")

    def close(self) -> None:
        self.client.close()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        except SigningError as err:
            if not self.stale:
                self.stale = True       # re-resolved before the next attempt, whose error says why
                self.log.error("cannot sign CloudWatch Logs requests: the credentials could not be refreshed; "
                               "they are re-resolved before the next attempt", error=str(err))
            raise

    # -- one chunk ------------------------------------------------------------------------------
    async def send_all(self, plans: list[Plan], progress: ChunkProgress) -> list[Failure]:
        self._abort = False
        failures: list[Failure] = []
        sem = asyncio.Semaphore(self.out.options.concurrency)

        async def one(plan: Plan) -> None:
            async with sem:
                if not self._abort:
                    await self._send_plan(plan, progress, failures)

        await asyncio.gather(*(one(p) for p in plans))
        return failures

    async def _send_plan(self, plan: Plan, progress: ChunkProgress, failures: list[Failure]) -> None:
        out = self.out
        key = plan.key
        if not progress.bind(key, len(plan.pieces)):
            self.log.warn("chunk layout changed since the last attempt; resending its events",
                          group=plan.group, stream=plan.stream)
        pending = progress.inflight.get(key)
        if pending is not None:
            await self._settle_inflight(plan, pending, progress)
        now_ms = out.ctx.clock() // 1_000_000
        retention = out.retention.get(plan.group)
        lo, hi = plan.window(now_ms, retention, out.options.out_of_window_policy == "send")
        n = len(plan.pieces)
        routed = False
        for s, e in progress.remaining(key, 0, lo) + progress.remaining(key, hi, n):
            self._route_window(plan, s, e, now_ms, retention)
            progress.mark(key, s, e)
            routed = True
        if routed:
            await self._call(out.progress.save, progress)
        for start, end in plan.batches:
            for s, e in progress.remaining(key, max(start, lo), min(end, hi)):
                if self._abort or not await self._put(plan, s, e, progress, failures):
                    return

    async def _put(self, plan: Plan, s: int, e: int, progress: ChunkProgress, failures: list[Failure]) -> bool:
        """One PutLogEvents of pieces [s, e); True when done with it (accepted or routed)."""
        out, counters = self.out, self.out.counters
        created = False
        while True:
            # Durably "in flight" before the call: a kill -9 before its answer leaves this record, and
            # the next attempt reads the stream back instead of resending blindly (_settle_inflight).
            progress.inflight[plan.key] = record = verify.inflight_record(plan.pieces, s, e, time.time())
            if out.progress.durable:
                await self._call(out.progress.save, progress)
            elif out.journal is not None:      # memory buffer: its journal outlives a kill -9
                record["jid"] = await self._call(out.journal.sending, plan.group, plan.stream, plan.pieces[s:e])
            t0 = time.monotonic()
            try:
                resp = await self._call(self.client.put_log_events, plan.group, plan.stream, plan.pieces[s:e])
            except AwsApiError as err:
                if err.code == DATA_ALREADY_ACCEPTED:      # legacy: stored already, never resend
                    resp = {}
                    break
                # An answer (even a 5xx) means the call was handled: as before, it counts as not stored.
                self._journal_outcome(progress.inflight.pop(plan.key, None), progress, stored=False)
                if out.progress.durable:
                    # else the file keeps the call "in flight", and a restart reads the stream back
                    # (2-8 s per chunk) before resending what CloudWatch refused
                    await self._call(out.progress.save, progress)
                counters["failed_calls"] += 1
                if err.throttling:
                    counters["throttled"] += 1
                    self._abort = True                     # the whole output backs off
                    failures.append(Failure(f"PutLogEvents throttled: {err}", slow_down=True))
                    return False
                if err.not_found and not created:
                    created = await self._create(plan, err.missing, failures)
                    if created:
                        continue
                    return False
                if err.credentials:
                    self.stale = True
                    if err.access_denied:
                        # the identity is known but its IAM policy lacks the action: say which
                        # permission to grant (the credentials are still re-resolved: a role may change)
                        self.log.error("CloudWatch Logs denied PutLogEvents: the IAM policy of these credentials "
                                       "must allow logs:PutLogEvents on the log group (and logs:CreateLogStream, "
                                       "logs:CreateLogGroup for auto_create_stream); retried with backoff",
                                       group=plan.group, stream=plan.stream, credentials=self.credentials,
                                       error=str(err))
                        failures.append(Failure(f"access denied: {err}"))
                        return False
                    self.log.error("CloudWatch Logs refused the credentials; they are re-resolved before the "
                                   "next attempt", error=str(err))
                    failures.append(Failure(f"credentials refused: {err}"))
                    return False
                if err.invalid_request:
                    self._route_invalid(plan, s, e, err)
                    progress.mark(plan.key, s, e)
                    await self._call(out.progress.save, progress)
                    return True
                failures.append(Failure(f"PutLogEvents failed: {err}", slow_down=err.status == 429))
                return False
            except SigningError as err:
                await self._not_sent(progress, plan)
                failures.append(Failure(str(err)))
                return False
            except TransportError as err:
                counters["failed_calls"] += 1
                if not err.sent:
                    await self._not_sent(progress, plan)
                    failures.append(Failure(f"PutLogEvents was not sent: {err}"))
                    return False
                progress.inflight[plan.key]["at"] = time.time()    # outcome unknown since now: verified next
                failures.append(Failure(f"PutLogEvents got no answer (it may have been stored; checked "
                                        f"before resending): {err}"))
                return False
            break
        self._journal_outcome(progress.inflight.pop(plan.key, None), progress, stored=True)
        progress.mark(plan.key, s, e)
        await self._call(out.progress.save, progress)
        counters["batches_sent"] += 1
        counters["events_sent"] += e - s
        out.known_streams.put((plan.group, plan.stream), True)
        rejected = resp.get("rejectedLogEventsInfo") if isinstance(resp, dict) else None
        if rejected:
            self._route_rejected(plan, s, e, rejected)
            if out.options.log_rejected_request:
                self.log.warn("Called PutLogEvents API", group=plan.group, stream=plan.stream,
                              events_count=e - s, request_sec=round(time.monotonic() - t0, 3))
        else:
            self.log.debug("Called PutLogEvents API", group=plan.group, stream=plan.stream, events_count=e - s,
                           request_sec=round(time.monotonic() - t0, 3))
        return True

    async def _not_sent(self, progress: ChunkProgress, plan: Plan) -> None:
        """The call never left (no credentials to sign it, no connection): it is not in flight, so
        neither a retry nor a restart reads the stream back for it."""
        self._journal_outcome(progress.inflight.pop(plan.key, None), progress, stored=False)
        if self.out.progress.durable:
            await self._call(self.out.progress.save, progress)

    # -- a call whose answer was lost ------------------------------------------------------------
    async def _settle_inflight(self, plan: Plan, pending: dict[str, Any], progress: ChunkProgress) -> None:
        """Mark the lost call accepted when the stream holds its events; else leave it to be resent."""
        out, counters, key = self.out, self.out.counters, plan.key
        if not verify.matches(pending, plan.pieces):
            self._journal_outcome(progress.inflight.pop(key, None), progress, stored=False)
            self._unverified(plan, int(pending.get("count") or 0),
                             "this chunk's batches differ from the call recorded in flight")
            return
        s, e = int(pending["s"]), int(pending["e"])
        if not progress.remaining(key, s, e):
            self._journal_outcome(progress.inflight.pop(key, None), progress, stored=False)
            return
        wait = float(pending.get("at") or 0) + verify.SETTLE_SECONDS - time.time()
        if wait > 0:
            await asyncio.sleep(min(wait, verify.SETTLE_SECONDS))
        outcome = await self._call(verify.check_stored, self.client, plan.group, plan.stream, plan.pieces[s:e],
                                   verify.done_around(plan.pieces, progress.done.get(key, ()), s, e))
        self._journal_outcome(progress.inflight.pop(key, None), progress, stored=bool(outcome.stored))
        if outcome.stored:
            counters["inflight_found"] += 1
            counters["inflight_found_events"] += e - s
            progress.mark(key, s, e)
            await self._call(out.progress.save, progress)
            self.log.info("a PutLogEvents call whose answer was lost is stored in CloudWatch Logs; not resending it",
                          group=plan.group, stream=plan.stream, events=e - s)
        elif outcome.stored is False:
            counters["inflight_missing"] += 1
            self.log.info("a PutLogEvents call whose answer was lost is not in CloudWatch Logs; resending it",
                          group=plan.group, stream=plan.stream, events=e - s)
        else:
            self._unverified(plan, e - s, outcome.reason)

    def _journal_outcome(self, record: dict[str, Any] | None, progress: ChunkProgress, *, stored: bool) -> None:
        """Memory buffers: tell the sent journal how the call recorded in flight ended."""
        journal = self.out.journal
        jid = record.get("jid") if record else None
        if journal is None or jid is None:
            return
        if stored:
            journal.accepted(jid)
            self.out.note_call(progress.chunk_id, jid)
        else:
            journal.forget([jid])

    def _unverified(self, plan: Plan, events: int, reason: str) -> None:
        self.out.counters["inflight_unverified"] += 1
        self.out.counters["inflight_unverified_events"] += events
        self.log.warn(f"could not tell whether CloudWatch Logs stored a PutLogEvents call whose answer was lost "
                      f"({reason}); resending it: up to {events} events may be duplicated (at-least-once)",
                      group=plan.group, stream=plan.stream)

    # -- routing to @ERROR ----------------------------------------------------------------------
    def _emit(self, plan: Plan, positions: range, reason: str) -> int:
        seen: set[int] = set()
        for pos in positions:
            idx = plan.source[pos]
            if idx in seen:
                continue
            seen.add(idx)
            tag, time_ns, record = plan.records[idx]
            self.out.emit_error(tag, time_ns, record, reason)
        return len(seen)

    def _describe(self, plan: Plan, s: int, e: int) -> str:
        return f"{e - s} events {_iso(plan.pieces[s][0])}..{_iso(plan.pieces[e - 1][0])}"

    def _route_window(self, plan: Plan, s: int, e: int, now_ms: int, retention: int | None) -> None:
        counters = self.out.counters
        by_reason: dict[str, list[int]] = {}
        for pos in range(s, e):
            reason = batcher.classify_timestamp(plan.pieces[pos][0], now_ms, retention)
            if plan.pieces[pos][0] < 0:
                reason = "too_old"
            by_reason.setdefault(reason if reason != "ok" else "too_old", []).append(pos)
        for reason, positions in by_reason.items():
            counters[f"window_{reason}"] += len(positions)
            self.log.limited("cwl.window", "warn", f"log events outside CloudWatch Logs' acceptance window "
                             f"({reason}) routed to @ERROR: {self._describe(plan, positions[0], positions[-1] + 1)}",
                             group=plan.group, stream=plan.stream)
            self._emit(plan, range(positions[0], positions[-1] + 1),
                       f"CloudWatch Logs would reject this event ({reason})")

    def _route_rejected(self, plan: Plan, s: int, e: int, info: dict[str, Any]) -> None:
        """rejectedLogEventsInfo: the events were not stored. Count, log with timestamps, route."""
        counters = self.out.counters
        ranges: list[tuple[str, int, int]] = []
        old_end = 0
        for field, reason in REJECT_FIELDS:
            end = min(int(info.get(field) or 0), e - s)
            if end > old_end:
                ranges.append((reason, s + old_end, s + end))
                old_end = end
        if TOO_NEW_FIELD in info:
            start = max(int(info[TOO_NEW_FIELD]), old_end)
            if start < e - s:
                ranges.append(("too_new", s + start, e))
        for reason, a, b in ranges:
            counters[f"rejected_{reason}"] += b - a
            self.log.warn(f"CloudWatch Logs rejected log events ({reason}), routed to @ERROR: "
                          f"{self._describe(plan, a, b)}", group=plan.group, stream=plan.stream,
                          rejected_log_events_info=info)
            self._emit(plan, range(a, b), f"rejected by CloudWatch Logs ({reason})")

    def _route_invalid(self, plan: Plan, s: int, e: int, err: AwsApiError) -> None:
        counters = self.out.counters
        counters["invalid_batches"] += 1
        counters["invalid_events"] += e - s
        self.log.error("PutLogEvents refused the batch; its events are routed to @ERROR (resending the same "
                       "request cannot succeed)", group=plan.group, stream=plan.stream, error=str(err),
                       events=self._describe(plan, s, e))
        self._emit(plan, range(s, e), f"refused by CloudWatch Logs: {err}")

    # -- control plane --------------------------------------------------------------------------
    async def _create(self, plan: Plan, missing: str, failures: list[Failure]) -> bool:
        """Create what is missing when allowed (AlreadyExists = success). False: failure recorded."""
        out = self.out
        group, stream = plan.group, plan.stream
        out.known_streams.discard((group, stream))
        try:
            if missing == "group":
                if not out.auto_create_group:
                    return self._missing(plan, "group", failures)
                await self._create_group(plan)
            if not out.options.auto_create_stream:
                return self._missing(plan, "stream", failures)
            try:
                await self._create_stream(group, stream)
            except AwsApiError as err:
                if not err.not_found:
                    raise
                if not out.auto_create_group:
                    return self._missing(plan, "group", failures)
                await self._create_group(plan)
                await self._create_stream(group, stream)
        except AwsApiError as err:
            out.counters["failed_calls"] += 1
            failures.append(Failure(f"creating log group/stream {group}/{stream} failed: {err}",
                                    slow_down=err.throttling))
            if err.throttling:
                self._abort = True
            return False
        except TransportError as err:
            failures.append(Failure(f"creating log group/stream {group}/{stream} "
                                    f"{'got no answer' if err.sent else 'was not sent'}: {err}"))
            return False
        return True

    def _missing(self, plan: Plan, what: str, failures: list[Failure]) -> bool:
        name = plan.group if what == "group" else plan.stream
        explicit = self.out.options.auto_create_group is not None
        option = "auto_create_group" if what == "group" and explicit else "auto_create_stream"
        self.log.warn(f"Log {what} '{name}' does not exist")
        failures.append(Failure(f"log {what} '{name}' does not exist and {option} is false"))
        return False

    async def _create_stream(self, group: str, stream: str) -> None:
        try:
            await self._call(self.client.create_log_stream, group, stream)
            self.out.counters["streams_created"] += 1
            self.log.info("created log stream", group=group, stream=stream)
        except AwsApiError as err:
            if err.code != RESOURCE_ALREADY_EXISTS:
                raise
            self.log.debug(f"Log stream '{stream}' already exists")

    async def _create_group(self, plan: Plan) -> None:
        try:
            await self._call(self.client.create_log_group, plan.group, plan.tags)
        except AwsApiError as err:
            if err.code != RESOURCE_ALREADY_EXISTS:
                raise
            self.log.debug(f"Log group '{plan.group}' already exists")
            return
        self.out.counters["groups_created"] += 1
        self.log.info("created log group", group=plan.group)
        if plan.retention is not None:
            try:
                await self._call(self.client.put_retention_policy, plan.group, plan.retention)
                self.out.retention.put(plan.group, plan.retention)
            except AwsApiError as err:
                if not err.invalid_request:
                    raise
                self.log.warn(f"failed to set retention policy for Log group '{plan.group}'", error=str(err))


def check(out: "CloudwatchLogsOutput") -> list[str]:
    """See plugin.check_aws."""
    problems: list[str] = []
    o = out.options
    try:
        client, settings, endpoint = build_client(o)
    except Exception as exc:  # report, do not crash the dry run
        return [f"AWS credentials/region: {exc}"]
    try:
        from botocore.session import Session

        creds = client.signer.credentials.get_frozen_credentials()
        sts = Session().create_client(
            "sts", region_name=settings.region, endpoint_url=o.aws_sts_endpoint_url, verify=botocore_verify(o.ssl_verify_peer),
            aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
            aws_session_token=creds.token)
        ident = sts.get_caller_identity()
        out.log.info("AWS identity", arn=ident.get("Arn"), credentials=settings.method)
    except Exception as exc:
        problems.append(f"sts:GetCallerIdentity failed with {settings.method or 'default'} credentials: {exc}")
        return problems
    group = o.log_group_name
    if group and "${" not in group and "%" not in group:
        try:
            found = client.describe_log_group(out.fixer.group(group))
        except (AwsApiError, TransportError) as exc:
            problems.append(f"logs:DescribeLogGroups on {endpoint} failed: {exc}")
        else:
            if found is None and not out.auto_create_group:
                problems.append(f"log group '{group}' does not exist and auto_create_group/auto_create_stream "
                                "is false: every chunk would fail")
            elif found is None:
                out.log.info(f"log group '{group}' does not exist yet; it will be created on first write")
    client.close()
    return problems
