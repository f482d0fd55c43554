"""Fluentd v0.12-style parameters written straight into a plugin (`format`, `time_format`, `buffer_type`...)
moved into the `<parse>` / `<format>` / `<inject>` / `<buffer>` sections v1 plugins read, as Fluentd's
compat_parameters helper does. A plugin opts in with `compat_sections = ("parse", ...)`.
"""

from __future__ import annotations

from kawa.config.element import Attr, Element
from kawa.errors import Problem

_FORMATN = {f"format{i}": f"format{i}" for i in range(1, 21)}

# old parameter -> parameter inside the section (None: handled specially)
PARSE_PARAMS: dict[str, str | None] = {
    "format": None, "types": "types", "types_delimiter": "types_delimiter",
    "types_label_delimiter": "types_label_delimiter", "keys": "keys", "time_key": "time_key",
    "time_format": "time_format", "localtime": "localtime", "utc": "utc", "delimiter": "delimiter",
    "keep_time_key": "keep_time_key", "null_empty_string": "null_empty_string",
    "null_value_pattern": "null_value_pattern", "json_parser": "json_parser",
    "label_delimiter": "label_delimiter", "format_firstline": "format_firstline",
    "message_key": "message_key", "with_priority": "with_priority", "message_format": "message_format",
    "rfc5424_time_format": "rfc5424_time_format", "estimate_current_event": "estimate_current_event",
    "time_type": "time_type", **_FORMATN,
}
FORMAT_PARAMS: dict[str, str | None] = {
    "format": None, "delimiter": "delimiter", "force_quotes": "force_quotes", "keys": "keys",
    "fields": "fields", "json_parser": "json_parser", "label_delimiter": "label_delimiter",
    "output_time": "output_time", "output_tag": "output_tag", "time_format": "time_format",
    "add_newline": "add_newline", "message_key": "message_key",
    "output_type": "output_type",        # stdout output/filter v0.12: the stdout formatter's record format
}
INJECT_PARAMS: dict[str, str | None] = {
    "include_time_key": None, "time_key": "time_key", "time_format": "time_format",
    "timezone": "timezone", "include_tag_key": None, "tag_key": "tag_key", "localtime": "localtime",
    "utc": "utc",
}
BUFFER_PARAMS: dict[str, str | None] = {
    "buffer_type": "@type", "buffer_path": "path", "num_threads": "flush_thread_count",
    "flush_interval": "flush_interval", "try_flush_interval": "flush_thread_interval",
    "queued_chunk_flush_interval": "flush_thread_burst_interval",
    "disable_retry_limit": "retry_forever", "retry_limit": "retry_max_times",
    "max_retry_wait": "retry_max_interval", "buffer_chunk_limit": "chunk_limit_size",
    "buffer_queue_limit": "queue_limit_length", "buffer_queue_full_action": "overflow_action",
    "flush_at_shutdown": "flush_at_shutdown",
    # BUFFER_TIME_SLICED_PARAMS (v0.12 TimeSlicedOutput: out_file, out_s3 ...)
    "time_slice_format": None, "time_slice_wait": "timekey_wait", "timezone": "timekey_zone",
}
# compat_parameters_buffer: the finest strftime field of time_slice_format gives the timekey
_TIME_SLICE_TIMEKEYS = (("%S", 1), ("%M", 60), ("%H", 3600), ("%d", 86400))
_TRUE_WORDS = ("true", "yes", "")      # Fluentd's Config.bool_value


def apply(cls: type, elem: Element, warnings: list[Problem]) -> None:
    """Rewrite `elem` in place for the compat sections the plugin class asks for."""
    for name in getattr(cls, "compat_sections", ()):
        if name == "parse":
            # a parameter the plugin has itself stays its own (in_tcp's `delimiter` ends messages;
            # Fluentd gives a copy to <parse> too, where a regexp parser leaves it unused)
            own = getattr(getattr(cls, "Options", None), "_options", {})
            _move(elem, "parse", {k: v for k, v in PARSE_PARAMS.items() if k not in own}, _parse_format)
        elif name == "format":
            _move(elem, "format", FORMAT_PARAMS, _plain_format)
        elif name == "inject":
            _move(elem, "inject", INJECT_PARAMS, _inject_special)
        elif name == "buffer":
            _move_buffer(elem)


def _move(elem: Element, section: str, params: dict[str, str | None], special) -> None:  # type: ignore[no-untyped-def]
    present = [k for k in params if k in elem.attrs]
    if not present or elem.children(section):
        return
    target = Element(section, "", location=elem.attrs[present[0]].location)
    for key in present:
        attr = elem.attrs[key]
        attr.used = True
        new_key = params[key]
        if new_key is None:
            special(key, attr, target)
        else:
            target.attrs[new_key] = Attr(attr.value, attr.location, attr.quoted, attr.ruby_error)
    if target.attrs:
        elem.elements.append(target)


def _move_buffer(elem: Element) -> None:
    """compat_parameters_buffer: like _move, plus v0.12 TimeSlicedOutput's `time_slice_format`, which
    makes the buffer chunk by time with the timekey of its finest field (localtime/utc: timekey_use_utc)."""
    present = [k for k in BUFFER_PARAMS if k in elem.attrs]
    if not present or elem.children("buffer"):
        return
    target = Element("buffer", "", location=elem.attrs[present[0]].location)
    for key in present:
        attr = elem.attrs[key]
        attr.used = True
        new_key = BUFFER_PARAMS[key]
        if new_key is not None:
            value = "throw_exception" if (key, attr.value) == ("buffer_queue_full_action", "exception") else attr.value
            target.attrs[new_key] = Attr(value, attr.location, attr.quoted, attr.ruby_error)
    fmt = elem.attrs.get("time_slice_format")
    if fmt is not None:
        target.arg = "time"
        timekey = next((str(key) for field, key in _TIME_SLICE_TIMEKEYS if field in fmt.value), None)
        # Fluentd's ConfigError for too coarse a format: carried on the value, the binder reports it there.
        error = None if timekey is not None else "time_slice_format only with %Y or %m is too long"
        target.attrs["timekey"] = Attr(timekey or fmt.value, fmt.location, ruby_error=error)
        localtime, utc = elem.attrs.get("localtime"), elem.attrs.get("utc")
        if localtime is not None and utc is not None:
            target.attrs["timekey_use_utc"] = Attr(
                "", utc.location, ruby_error="both of utc and localtime are specified, use only one of them")
        elif localtime is not None:
            target.attrs["timekey_use_utc"] = Attr(str(localtime.value not in _TRUE_WORDS).lower(), localtime.location)
        elif utc is not None:
            target.attrs["timekey_use_utc"] = Attr(str(utc.value in _TRUE_WORDS).lower(), utc.location)
    elem.elements.append(target)


def _parse_format(key: str, attr: Attr, target: Element) -> None:
    value = attr.value
    if len(value) >= 2 and value.startswith("/") and value.rfind("/") > 0:
        target.attrs["@type"] = Attr("regexp", attr.location)
        target.attrs["expression"] = Attr(value, attr.location)
    else:
        target.attrs["@type"] = Attr(value, attr.location)


def _plain_format(key: str, attr: Attr, target: Element) -> None:
    target.attrs["@type"] = Attr(attr.value, attr.location)


def _inject_special(key: str, attr: Attr, target: Element) -> None:
    # include_time_key true -> time_key defaults to "time"; include_tag_key true -> tag_key "tag"
    if attr.value in ("", "true", "yes"):
        default_key = "time_key" if key == "include_time_key" else "tag_key"
        target.attrs.setdefault(default_key, Attr("time" if key == "include_time_key" else "tag", attr.location))
        if key == "include_time_key":     # Fluentd's compat helper: injected time is a string
            target.attrs.setdefault("time_type", Attr("string", attr.location))
