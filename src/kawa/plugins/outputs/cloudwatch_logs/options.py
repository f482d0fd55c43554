"""Every option of fluent-plugin-cloudwatch-logs v0.15.0's output (same names, same defaults), plus
kawa's own (auto_create_group, oversize_policy, out_of_window_policy, request_timeout).
"""

from __future__ import annotations

from typing import Any, Iterator

from kawa.buffer.output import BufferedOptions
from kawa.config.element import Element
from kawa.config.parser import USE_NIL
from kawa.config.schema import BindContext, Options, option, section
from kawa.plugins.inject import InjectOptions

BUFFER_OWNS_RETRIES = "kawa's buffer retries (retry_* in <buffer>) and never discards a chunk on throttling"
# PutRetentionPolicy: the only values CloudWatch Logs accepts.
# The fluentd-kubernetes-daemonset writes `retention_in_days "#{ENV['RETENTION_IN_DAYS'] || 'nil'}"`.
# Fluentd's non-strict integer turns "nil" into 0 and the Ruby plugin's PutRetentionPolicy(0) is
# refused (a warning), so the group is created without retention: kawa reads the word as "unset".
RUBY_NIL_WORD = "nil"
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                  2557, 2922, 3288, 3653)


class WebIdentityOptions(Options):
    """<web_identity_credentials>: sts:AssumeRoleWithWebIdentity (EKS IRSA)."""

    role_arn = option(doc="ARN of the role to assume.")
    role_session_name = option(doc="Identifier of the assumed role session.")
    web_identity_token_file = option(None, doc="Path of the OIDC token (default $AWS_WEB_IDENTITY_TOKEN_FILE).")
    policy = option(None, doc="Session policy in JSON.")
    duration_seconds = option(None, "time", doc="Session duration (900..43200 s).")


class CloudwatchLogsOptions(BufferedOptions):
    # --- credentials and connection (Ruby plugin names) ---
    aws_key_id = option(None, secret=True, doc="AWS access key id.")
    aws_sec_key = option(None, secret=True, doc="AWS secret access key.")
    aws_instance_profile_credentials_retries = option(None, "integer", doc="IMDS credential retries.")
    aws_use_sts = option(False, "bool", doc="Assume aws_sts_role_arn with sts:AssumeRole.")
    aws_sts_role_arn = option(None, doc="Role to assume when aws_use_sts.")
    aws_sts_session_name = option("fluentd", doc="Session name for sts:AssumeRole.")
    aws_sts_external_id = option(None, doc="External id for sts:AssumeRole.")
    aws_sts_policy = option(None, doc="Session policy for sts:AssumeRole.")
    aws_sts_duration_seconds = option(None, "time", doc="Session duration for sts:AssumeRole.")
    aws_sts_endpoint_url = option(None, doc="STS endpoint URL.")
    aws_ecs_authentication = option(False, "bool", doc="Use ECS container credentials (refreshing).")
    region = option(None, doc="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / profile).")
    endpoint = option(None, doc="CloudWatch Logs endpoint URL (default https://logs.<region>.amazonaws.com).")
    ssl_verify_peer = option(True, "bool", doc="Verify the endpoint's TLS certificate.")
    http_proxy = option(None, doc="HTTP proxy URL (http://[user:pass@]host:port).")
    web_identity_credentials = section(WebIdentityOptions, doc="EKS IRSA credentials.")
    # --- names ---
    log_group_name = option(None, doc="Log group (buffer placeholders allowed).")
    log_stream_name = option(None, doc="Log stream (buffer placeholders allowed).")
    use_tag_as_group = option(False, "bool", doc="Use the tag as the log group name.")
    use_tag_as_stream = option(False, "bool", doc="Use the tag as the log stream name.")
    log_group_name_key = option(None, doc="Record key holding the log group name.")
    log_stream_name_key = option(None, doc="Record key holding the log stream name.")
    remove_log_group_name_key = option(False, "bool", doc="Remove log_group_name_key from the record.")
    remove_log_stream_name_key = option(False, "bool", doc="Remove log_stream_name_key from the record.")
    auto_create_stream = option(False, "bool", doc="Create missing streams (and groups, see auto_create_group).")
    log_group_aws_tags = option(None, "hash", doc="Tags of log groups this output creates.")
    log_group_aws_tags_key = option(None, doc="Record key holding the tags of a created log group.")
    remove_log_group_aws_tags_key = option(False, "bool", doc="Remove log_group_aws_tags_key from records.")
    retention_in_days = option(None, "integer", doc="Retention of log groups this output creates.")
    retention_in_days_key = option(None, doc="Record key holding the retention of a created log group.")
    remove_retention_in_days_key = option(False, "bool", doc="Remove retention_in_days_key from records.")
    # --- messages ---
    message_keys = option([], "array", value_type="string", doc="Send these keys' values joined by a space.")
    max_message_length = option(None, "integer", doc="Cut messages to this many bytes (UTF-8 safe).")
    max_events_per_batch = option(10000, "integer", doc="Events per PutLogEvents call (at most 10000).")
    json_handler = option("yajl", "enum", choices=("yajl", "json"),
                          no_effect="kawa writes the same JSON (Ruby float spelling) with orjson",
                          doc="Ruby JSON library.")
    include_time_key = option(False, "bool", doc="v0.12 style: moved into <inject> (time_key 'time').")
    localtime = option(True, "bool", doc="v0.12 style: moved into <inject>.")
    format = section(plugin_kind="formatter", default_type="json", doc="Message formatter.")
    inject = section(InjectOptions, doc="Keys added to records before formatting.")
    # --- behaviour ---
    concurrency = option(1, "integer", doc="Group/stream destinations written in parallel per chunk.")
    log_rejected_request = option(False, "bool", doc="Log every call that had rejected events at warn level.")
    put_log_events_retry_wait = option(1.0, "time", no_effect=BUFFER_OWNS_RETRIES, doc="Ruby in-plugin retry.")
    put_log_events_retry_limit = option(17, "integer", no_effect=BUFFER_OWNS_RETRIES, doc="Ruby in-plugin retry.")
    put_log_events_disable_retry_limit = option(False, "bool", no_effect=BUFFER_OWNS_RETRIES,
                                                doc="Ruby in-plugin retry.")
    use_todays_log_stream = option(False, "bool", no_effect="an in_cloudwatch_logs option; outputs ignore it",
                                   doc="in_cloudwatch_logs only.")
    # --- kawa's own ---
    auto_create_group = option(None, "bool", doc="Create missing log groups (default: auto_create_stream, as the "
                               "Ruby plugin creates both); false keeps IaC-owned groups untouched.")
    oversize_policy = option("truncate", "enum", choices=("truncate", "split"),
                             doc="Events over 1 MiB: truncate (marker appended) or split into several events.")
    out_of_window_policy = option("error", "enum", choices=("error", "send"),
                                  doc="Events older than 14 days / retention or > 2 h ahead: route to @ERROR "
                                  "before sending (error) or let CloudWatch reject them (send; still routed).")
    request_timeout = option(60, "time", doc="Seconds to wait for one API answer.")
    sent_journal = option(True, "bool", doc="Memory buffer: journal each call's event digests so that lines a "
                          "restart after kill -9 reads again are not sent twice (see journal.py).")
    sent_journal_path = option(None, doc="Journal file (default: <root_dir>/worker<N>/<@id>/cloudwatch_logs.journal, "
                               "else next to the first tail pos_file).")

    @classmethod
    def bind(cls, element: Element, ctx: BindContext, path: tuple[str, ...] = ()) -> Any:
        attr = element.attrs.get("retention_in_days")
        if attr is None or attr.value != RUBY_NIL_WORD:
            return super().bind(element, ctx, path)
        attr.value = USE_NIL      # only while binding: the dump still shows what the config says
        try:
            return super().bind(element, ctx, path)
        finally:
            attr.value = RUBY_NIL_WORD

    def check(self) -> Iterator[str]:
        if self.concurrency is not None and self.concurrency < 1:
            yield "concurrency: must be 1 or more"
        if self.max_events_per_batch is not None and self.max_events_per_batch < 1:
            yield "max_events_per_batch: must be 1 or more"
        if self.max_message_length is not None and self.max_message_length < 1:
            yield "max_message_length: must be 1 or more"
        if self.retention_in_days is not None and self.retention_in_days not in RETENTION_DAYS:
            yield (f"retention_in_days: {self.retention_in_days} is not accepted by CloudWatch Logs; use one of "
                   + ", ".join(map(str, RETENTION_DAYS)))
        if self.aws_use_sts and not self.aws_sts_role_arn:
            yield "aws_sts_role_arn: required when aws_use_sts is true"
