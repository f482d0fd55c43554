"""The `<system>` directive: Fluentd's process-wide options, with those kawa does not act on marked."""

from __future__ import annotations

from kawa.config.schema import Options, option, section

_NOT_YET = "accepted for compatibility; kawa does not act on it yet"


class LogOptions(Options):
    """`<system><log>`: format and rotation of kawa's own log."""

    format = option("text", "enum", choices=("text", "json"), doc="Log line format.")
    time_format = option("%Y-%m-%d %H:%M:%S %z", doc="strftime format of the log timestamp.")
    path = option(None, doc="Log file (same as -o).")
    rotate_age = option(None, no_effect=_NOT_YET, doc="Log rotation by age.")
    rotate_size = option(None, "size", no_effect=_NOT_YET, doc="Log rotation by size.")
    forced_stacktrace_level = option(None, no_effect=_NOT_YET, doc="Stack trace log level.")


# Fluentd's counter API (plugin_helper/counter) shares counters between plugins and processes; no
# plugin kawa ships uses it, so the sections are only checked.
_NO_COUNTER_API = "kawa's plugins do not use Fluentd's counter API"


class CounterServerOptions(Options):
    """`<system><counter_server>`: the counter API's server."""

    scope = option(no_effect=_NO_COUNTER_API, doc="Counter scope name.")
    bind = option(None, no_effect=_NO_COUNTER_API, doc="Address to listen on.")
    port = option(None, "integer", no_effect=_NO_COUNTER_API, doc="Port to listen on.")
    backup_path = option(no_effect=_NO_COUNTER_API, doc="Where counter values are saved.")


class CounterClientOptions(Options):
    """`<system><counter_client>`: where plugins reach the counter server."""

    host = option(no_effect=_NO_COUNTER_API, doc="Counter server host.")
    port = option(None, "integer", no_effect=_NO_COUNTER_API, doc="Counter server port.")
    timeout = option(None, "time", no_effect=_NO_COUNTER_API, doc="Request timeout.")


class SystemOptions(Options):
    """Process-wide settings."""

    workers = option(1, "integer", doc="Worker processes (each runs its own pipeline and buffers).")
    restart_worker_interval = option(0, "time", no_effect=_NOT_YET, doc="Delay before restarting a worker.")
    root_dir = option(None, doc="Directory for plugin state (file buffers, backups) when not set per plugin.")
    log_level = option("info", "enum", choices=("trace", "debug", "info", "warn", "error", "fatal"),
                       doc="Default log level.")
    suppress_repeated_stacktrace = option(True, "bool", no_effect=_NOT_YET, doc="Hide repeated stack traces.")
    ignore_repeated_log_interval = option(None, "time", no_effect=_NOT_YET, doc="Suppress identical log lines.")
    ignore_same_log_interval = option(None, "time", no_effect=_NOT_YET, doc="Suppress same log messages.")
    emit_error_log_interval = option(None, "time", no_effect=_NOT_YET, doc="Emit error log interval.")
    suppress_config_dump = option(False, "bool", doc="Do not print the configuration at start-up.")
    log_event_verbose = option(False, "bool", no_effect=_NOT_YET, doc="Emit more log events.")
    without_source = option(False, "bool", doc="Start without inputs (flush buffers only).")
    with_source_only = option(False, "bool", no_effect=_NOT_YET, doc="Start inputs only.")
    rpc_endpoint = option(None, no_effect=_NOT_YET, doc="HTTP RPC endpoint.")
    enable_get_dump = option(False, "bool", no_effect=_NOT_YET, doc="RPC dump endpoint.")
    process_name = option(None, doc="Process title (set when the setproctitle module is available).")
    strict_config_value = option(False, "bool", doc="kawa is always strict; accepted for compatibility.")
    enable_msgpack_time_support = option(False, "bool", no_effect=_NOT_YET, doc="msgpack EventTime in records.")
    disable_shared_socket = option(False, "bool", no_effect=_NOT_YET, doc="Shared sockets between workers.")
    enable_input_metrics = option(False, "bool", no_effect=_NOT_YET, doc="Input metrics.")
    enable_size_metrics = option(False, "bool", no_effect=_NOT_YET, doc="Size metrics.")
    enable_jit = option(False, "bool", no_effect="Ruby-only option", doc="Ruby JIT.")
    file_permission = option(None, no_effect=_NOT_YET, doc="Permission of files kawa creates.")
    dir_permission = option(None, no_effect=_NOT_YET, doc="Permission of directories kawa creates.")
    config_include_dir = option(None, no_effect=_NOT_YET, doc="Directory for @include of relative paths.")
    umask = option(None, no_effect=_NOT_YET, doc="Process umask.")
    log = section(LogOptions, doc="kawa's own log.")
    counter_server = section(CounterServerOptions, doc="Fluentd counter API server (accepted, no effect).")
    counter_client = section(CounterClientOptions, doc="Fluentd counter API client (accepted, no effect).")
    # kawa's own: a tail position counts as delivered only when the output confirmed delivery.
    at_least_once_from_source = option(False, "bool", doc=(
        "With a file buffer, advance tail pos_files only after the output confirmed delivery "
        "(not when the lines reached the buffer), so kill -9 at any moment loses no line."))
    shutdown_timeout = option(25, "time", doc=(
        "Budget for flushing buffers at SIGTERM; the default fits Kubernetes' 30 s grace period."))
