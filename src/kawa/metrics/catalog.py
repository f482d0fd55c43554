"""Every metric kawa exposes (name, help, type, labels) and the stats() keys plugins fill to feed them.

One place for names: Fluentd-compatible families (fluent-plugin-prometheus 2.x) and kawa's own.
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------------------------------------
# The stats() contract. `Plugin.stats()` returns a plain dict read at scrape time (never mutated by
# the reader). Every key is optional: a missing key means "this plugin does not track that", and
# the matching series is simply left out (as Fluentd leaves out nil monitor_info values).
# Counters are cumulative ints since start; sizes are bytes; times are epoch seconds (float).
# ------------------------------------------------------------------------------------------------

# -- every kind (Fluentd's Input/Filter/Output#statistics) ---------------------------------------
EMIT_RECORDS = "emit_records"          # int: records received (input: emitted) by this plugin
EMIT_SIZE = "emit_size"                # int: bytes of those records (0 when not measured)

# -- inputs --------------------------------------------------------------------------------------
READ_LINES = "read_lines"              # int: raw lines/messages read from the source
PARSE_ERRORS = "parse_errors"          # int, or {reason: int} ("unmatched", "invalid", ...)
EMIT_RECORDS_BY_TAG = "emit_records_by_tag"   # {tag: int}: feeds fluentd_input_status_num_records_total
FILES = "files"                        # in_tail only: {path: {FILE_* key: value}}
FILE_POSITION = "position"             # int: byte offset read up to (pos file value)
FILE_INODE = "inode"                   # int
FILE_LAG_BYTES = "lag_bytes"           # int: file size minus position (what is not read yet)
FILE_OPENED = "opened"                 # int: times the file was opened
FILE_CLOSED = "closed"                 # int: times the file was closed
FILE_ROTATED = "rotated"               # int: rotations seen
FILE_THROTTLED = "throttled"           # int: times reading paused by read_bytes_limit_per_second

# -- filters -------------------------------------------------------------------------------------
FILTERED_OUT = "filtered_out_records"  # int: records the filter removed (grep ...)

# -- outputs (Fluentd's Output#statistics keys, same meaning) ------------------------------------
EMIT_COUNT = "emit_count"              # int: emit calls (batches) received
WRITE_COUNT = "write_count"            # int: successful chunk writes
WRITE_SECONDARY_COUNT = "write_secondary_count"
ROLLBACK_COUNT = "rollback_count"      # int: chunks given back to the queue after a failed write
NUM_ERRORS = "num_errors"              # int: failed writes (Fluentd reports it as "retry_count")
RETRY_COUNT = "retry_count"            # int: accepted as an alias of num_errors when that is absent
SLOW_FLUSH_COUNT = "slow_flush_count"
FLUSH_TIME_COUNT = "flush_time_count"  # int: milliseconds spent flushing, total
DROP_OLDEST_CHUNK_COUNT = "drop_oldest_chunk_count"
# buffered outputs only (presence of BUFFER_QUEUE_LENGTH marks an output as buffered)
BUFFER_STAGE_LENGTH = "buffer_stage_length"
BUFFER_STAGE_BYTE_SIZE = "buffer_stage_byte_size"
BUFFER_QUEUE_LENGTH = "buffer_queue_length"
BUFFER_QUEUE_BYTE_SIZE = "buffer_queue_byte_size"
BUFFER_AVAILABLE_SPACE_RATIOS = "buffer_available_buffer_space_ratios"   # float percent, 1 decimal
BUFFER_TOTAL_QUEUED_SIZE = "buffer_total_queued_size"                    # stage + queue bytes
BUFFER_OLDEST_TIMEKEY = "buffer_oldest_timekey"   # int epoch s; absent when no timekey chunks
BUFFER_NEWEST_TIMEKEY = "buffer_newest_timekey"
BUFFER_TIMEKEYS = "buffer_timekeys"    # list[int]
RETRY = "retry"                        # {"start": float|None, "steps": int, "next_time": float|None}
                                       # while retrying; {} or absent when not retrying
# kawa's delivery accounting (feeds kawa_records_total)
DELIVERED_RECORDS = "delivered_records"   # int: records the destination accepted
REJECTED_RECORDS = "rejected_records"     # {reason: int}: the destination refused (tooOld, tooNew, expired)
DROPPED_RECORDS = "dropped_records"       # {reason: int}: kawa gave up (overflow, retry_limit, unrecoverable, too_large)
# cloudwatch_logs only
CLOUDWATCH_CALLS = "cloudwatch_calls"     # {action: {result: int}}, result "ok" or the error code
CLOUDWATCH_THROTTLES = "cloudwatch_throttles"   # int: ThrottlingException answers

# Fluentd's output statistics, in the order Output#statistics lists them (monitor_agent JSON).
OUTPUT_STAT_KEYS = (EMIT_RECORDS, EMIT_SIZE, RETRY_COUNT, EMIT_COUNT, WRITE_COUNT, WRITE_SECONDARY_COUNT,
                    ROLLBACK_COUNT, SLOW_FLUSH_COUNT, FLUSH_TIME_COUNT, DROP_OLDEST_CHUNK_COUNT)
# Fluentd's Buffer::STATS_KEYS with the "buffer_" prefix Output#statistics adds.
BUFFER_STAT_KEYS = (BUFFER_STAGE_LENGTH, BUFFER_STAGE_BYTE_SIZE, BUFFER_QUEUE_LENGTH, BUFFER_QUEUE_BYTE_SIZE,
                    BUFFER_AVAILABLE_SPACE_RATIOS, BUFFER_TOTAL_QUEUED_SIZE, BUFFER_OLDEST_TIMEKEY,
                    BUFFER_NEWEST_TIMEKEY)
INPUT_STAT_KEYS = (EMIT_RECORDS, EMIT_SIZE)


# ------------------------------------------------------------------------------------------------
# Metric families
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricDef:
    name: str
    help: str
    type: str                    # "gauge" | "counter"
    labels: tuple[str, ...]


def _defs(*items: MetricDef) -> dict[str, MetricDef]:
    return {d.name: d for d in items}


OUTPUT_LABELS = ("plugin_id", "type")
# Families of in_prometheus_output_monitor: (MetricDef, the stats key that feeds it).
# gauge_all=false turns the ones marked counter-capable into counters (the plugin's get_gauge_or_counter).
OUTPUT_MONITOR: tuple[tuple[MetricDef, str, bool], ...] = (
    (MetricDef("fluentd_output_status_buffer_total_bytes", "Current total size of stage and queue buffers.",
               "gauge", OUTPUT_LABELS), BUFFER_TOTAL_QUEUED_SIZE, False),
    (MetricDef("fluentd_output_status_buffer_stage_length", "Current length of stage buffers.",
               "gauge", OUTPUT_LABELS), BUFFER_STAGE_LENGTH, False),
    (MetricDef("fluentd_output_status_buffer_stage_byte_size", "Current total size of stage buffers.",
               "gauge", OUTPUT_LABELS), BUFFER_STAGE_BYTE_SIZE, False),
    (MetricDef("fluentd_output_status_buffer_queue_length", "Current length of queue buffers.",
               "gauge", OUTPUT_LABELS), BUFFER_QUEUE_LENGTH, False),
    (MetricDef("fluentd_output_status_buffer_queue_byte_size", "Current total size of queue buffers.",
               "gauge", OUTPUT_LABELS), BUFFER_QUEUE_BYTE_SIZE, False),
    (MetricDef("fluentd_output_status_buffer_available_space_ratio", "Ratio of available space in buffer.",
               "gauge", OUTPUT_LABELS), BUFFER_AVAILABLE_SPACE_RATIOS, False),
    (MetricDef("fluentd_output_status_buffer_newest_timekey", "Newest timekey in buffer.",
               "gauge", OUTPUT_LABELS), BUFFER_NEWEST_TIMEKEY, False),
    (MetricDef("fluentd_output_status_buffer_oldest_timekey", "Oldest timekey in buffer.",
               "gauge", OUTPUT_LABELS), BUFFER_OLDEST_TIMEKEY, False),
    # both fed from Fluentd's "retry_count" (which is num_errors), as the plugin does
    (MetricDef("fluentd_output_status_retry_count", "Current retry counts.", "gauge", OUTPUT_LABELS),
     NUM_ERRORS, True),
    (MetricDef("fluentd_output_status_num_errors", "Current number of errors.", "gauge", OUTPUT_LABELS),
     NUM_ERRORS, True),
    (MetricDef("fluentd_output_status_emit_count", "Current emit counts.", "gauge", OUTPUT_LABELS),
     EMIT_COUNT, True),
    (MetricDef("fluentd_output_status_emit_records", "Current emit records.", "gauge", OUTPUT_LABELS),
     EMIT_RECORDS, True),
    (MetricDef("fluentd_output_status_write_count", "Current write counts.", "gauge", OUTPUT_LABELS),
     WRITE_COUNT, True),
    (MetricDef("fluentd_output_status_rollback_count", "Current rollback counts.", "gauge", OUTPUT_LABELS),
     ROLLBACK_COUNT, False),
    (MetricDef("fluentd_output_status_flush_time_count", "Total flush time.", "gauge", OUTPUT_LABELS),
     FLUSH_TIME_COUNT, True),
    (MetricDef("fluentd_output_status_slow_flush_count", "Current slow flush counts.", "gauge", OUTPUT_LABELS),
     SLOW_FLUSH_COUNT, True),
)
RETRY_WAIT = MetricDef("fluentd_output_status_retry_wait", "Current retry wait", "gauge", OUTPUT_LABELS)

# in_prometheus_monitor: every plugin with a value, labelled with its category.
MONITOR_LABELS = ("plugin_id", "plugin_category", "type")
STATUS_MONITOR: tuple[tuple[MetricDef, str], ...] = (
    (MetricDef("fluentd_status_buffer_queue_length", "Current buffer queue length.", "gauge", MONITOR_LABELS),
     BUFFER_QUEUE_LENGTH),
    (MetricDef("fluentd_status_buffer_total_bytes", "Current total size of queued buffers.", "gauge",
               MONITOR_LABELS), BUFFER_TOTAL_QUEUED_SIZE),
    (MetricDef("fluentd_status_retry_count", "Current retry counts.", "gauge", MONITOR_LABELS), NUM_ERRORS),
)
STATUS_NEWEST_TIMEKEY = MetricDef("fluentd_status_buffer_newest_timekey", "Newest timekey in buffer.", "gauge",
                                  MONITOR_LABELS)
STATUS_OLDEST_TIMEKEY = MetricDef("fluentd_status_buffer_oldest_timekey", "Oldest timekey in buffer.", "gauge",
                                  MONITOR_LABELS)

# in_prometheus_tail_monitor: one series per followed file.
TAIL_LABELS = ("plugin_id", "type", "path")
TAIL_MONITOR: tuple[tuple[MetricDef, str], ...] = (
    (MetricDef("fluentd_tail_file_position", "Current position of file.", "gauge", TAIL_LABELS), FILE_POSITION),
    (MetricDef("fluentd_tail_file_inode", "Current inode of file.", "gauge", TAIL_LABELS), FILE_INODE),
    (MetricDef("fluentd_tail_file_closed", "Number of files closed.", "gauge", TAIL_LABELS), FILE_CLOSED),
    (MetricDef("fluentd_tail_file_opened", "Number of files opened.", "gauge", TAIL_LABELS), FILE_OPENED),
    (MetricDef("fluentd_tail_file_rotated", "Number of files rotated.", "gauge", TAIL_LABELS), FILE_ROTATED),
    (MetricDef("fluentd_tail_file_throttled", "Number of times files got throttled.", "gauge", TAIL_LABELS),
     FILE_THROTTLED),
)

# What fluentd docs' <filter> @type prometheus example counts; kawa derives it from inputs.
INPUT_NUM_RECORDS = MetricDef("fluentd_input_status_num_records_total", "The total number of incoming records",
                              "counter", ("tag", "hostname"))

# -- kawa's own ----------------------------------------------------------------------------------
# stage: read (lines read), parsed (records made), unmatched (parse failures), filtered (removed
# by filters), buffered (accepted by outputs), delivered, rejected (by the destination), dropped.
RECORDS = MetricDef("kawa_records_total", "Records through each pipeline stage.", "counter", ("stage", "reason"))
STAGES = ("read", "parsed", "unmatched", "filtered", "buffered", "delivered", "rejected", "dropped")
TAIL_LAG = MetricDef("kawa_tail_lag_bytes", "Bytes written to a followed file and not read yet.", "gauge",
                     ("plugin_id", "path"))
CLOUDWATCH_CALLS_TOTAL = MetricDef("kawa_cloudwatch_calls_total", "CloudWatch Logs API calls by result.",
                                   "counter", ("action", "result"))
CLOUDWATCH_THROTTLES_TOTAL = MetricDef("kawa_cloudwatch_throttles_total",
                                       "CloudWatch Logs answers that asked kawa to slow down.", "counter", ())
ERROR_EVENTS = MetricDef("kawa_error_events_total", "Events sent to @ERROR (or logged as error events).",
                         "counter", ())
HEARTBEAT_AGE = MetricDef("kawa_event_loop_heartbeat_age_seconds",
                          "Seconds since the event loop last ran the heartbeat task.", "gauge", ())
READY = MetricDef("kawa_ready", "1 when /readyz answers 200.", "gauge", ())
# the usual process_* names scrapers know (prometheus_client's process collector)
PROCESS_RSS = MetricDef("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", ())
PROCESS_CPU = MetricDef("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                        "counter", ())
PROCESS_START = MetricDef("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                          "gauge", ())
PROCESS_FDS = MetricDef("process_open_fds", "Number of open file descriptors.", "gauge", ())
