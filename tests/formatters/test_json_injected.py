"""json formatter + <inject>: the spliced fast path (format_batch_injected) gives exactly the bytes of
inject_batch followed by format_batch, for any records (property test) and the corner cases it must detect.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kawa.log import LogSink, Logger
from kawa.plugins.formatters.json import _CannotSplice
from kawa.plugins.inject import InjectOptions, Injector
from kawa.testing.drivers import FormatterDriver

_KEYS = st.sampled_from(["time", "tag", "host", "worker", "message", "a", 'x"time', "t\u00e9", "k\n"])
_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
            | st.floats(allow_nan=True, allow_infinity=True)
            | st.sampled_from([1e16, 1e-5, -0.0, 0.0, 100.0, 1.5e300, 123456789.0])
            | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
            | st.sampled_from(['{,"', '"time":', ",1e5", "\udcff", "e-0.0000", "},{", "}"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_KEYS, inner, max_size=3), max_leaves=6)
_RECORDS = st.dictionaries(_KEYS | st.text(max_size=6), _VALUES, max_size=6)
_TIMES = st.integers(min_value=0, max_value=4_102_444_800 * 10 ** 9) | st.sampled_from([1_700_000_000 * 10 ** 9])


def _injector(**settings_: Any) -> Injector:
    opts = InjectOptions.defaults()
    for key, value in settings_.items():
        setattr(opts, key, value)
    return Injector(opts, Logger(LogSink(io.StringIO())), worker_id=3)


INJECTORS = [
    dict(time_key="time", tag_key="tag", time_type="string", time_format="%Y-%m-%dT%H:%M:%S.%N%z", utc=True),
    dict(time_key="time", time_type="unixtime"),
    dict(time_key="t", time_type="float"),
    dict(tag_key="tag", hostname_key="host", hostname="h\u00f6st", worker_id_key="worker"),
    dict(time_key="tag", tag_key="tag", time_type="string", utc=True),
]


def _reference(formatter: Any, tag: str, events: list, injector: Injector) -> bytes:
    return formatter.format_batch(tag, injector.inject_batch(tag, events)).encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("inject_settings", INJECTORS)
@settings(max_examples=150, deadline=None)
@given(batch=st.lists(st.tuples(_TIMES, _RECORDS), max_size=8), tag=st.sampled_from(["app.x", 'we"ird', "t\u00e9g"]))
def test_spliced_bytes_equal_copying_path(inject_settings: dict, batch: list, tag: str) -> None:
    formatter = FormatterDriver("json").instance
    injector = _injector(**inject_settings)
    assert formatter.format_batch_injected(tag, batch, injector) == _reference(formatter, tag, batch, injector)


def _spliced(events: list, injector: Injector, tag: str = "app") -> bytes | None:
    formatter = FormatterDriver("json").instance
    return formatter._spliced(tag, events, injector)


STANDARD = INJECTORS[0]
T = 1_700_000_000 * 10 ** 9 + 5


def test_common_records_take_the_spliced_path() -> None:
    out = _spliced([(T, {"path": "/a", "code": "200"}), (T, {"n": 1, "f": 1.5})], _injector(**STANDARD))
    assert out == (b'{"path":"/a","code":"200","tag":"app","time":"2023-11-14T22:13:20.000000005+0000"}\n'
                   b'{"n":1,"f":1.5,"tag":"app","time":"2023-11-14T22:13:20.000000005+0000"}\n')


@pytest.mark.parametrize("record", [{}, {"time": "x"}, {"tag": 1}, {"f": 1e16}, {"z": -0.0}, {"s": "e-", "g": 0.00001}])
def test_records_the_splice_cannot_prove_go_the_copying_way(record: dict) -> None:
    injector = _injector(**STANDARD)
    assert _spliced([(T, {"a": "b"}), (T, record)], injector) is None
    formatter = FormatterDriver("json").instance
    assert formatter.format_batch_injected("app", [(T, record)], injector) == \
        _reference(formatter, "app", [(T, record)], injector)


def test_nested_injected_keys_do_not_stop_the_splice() -> None:
    # inject merges top-level keys only: a nested "time" stays where it is
    out = _spliced([(T, {"n": {"time": 1}})], _injector(**STANDARD))
    assert out == b'{"n":{"time":1},"tag":"app","time":"2023-11-14T22:13:20.000000005+0000"}\n'


def test_float_time_is_not_spliced() -> None:
    # Oj writes floats its own way (oj_float): the float time must stop the splice
    with pytest.raises(_CannotSplice):
        _spliced([(T, {"a": "b"})], _injector(time_key="t", time_type="float"))


BRACE_RECORDS = [
    [{"a": "x},{"}, {"b": "y"}],                      # values ending in braces
    [{"a": [{"k": "v"}, {"k": "w"}]}, {"b": "y"}],    # records nested in a list
    [{"a": 'q"},{"r'}, {"b": "y"}],                     # an escaped quote next to braces
    [{"a": "1"}, {"b": "2"}, {"c": "3"}],
]


@pytest.mark.parametrize("records", BRACE_RECORDS)
@pytest.mark.parametrize("times", [(T, T, T), (T, T + 10**9, T), (T + 2, T + 1, T)])
@pytest.mark.parametrize("inject_settings", [STANDARD, INJECTORS[3]])
def test_each_record_gets_the_tail_of_its_own_time(records: list, times: tuple, inject_settings: dict) -> None:
    injector = _injector(**inject_settings)
    events = list(zip(times, records))
    out = _spliced(events, injector)
    assert out is not None
    formatter = FormatterDriver("json").instance
    assert out == _reference(formatter, "app", events, injector)


class _NoSearch:
    """Stands in for the json formatter's number search: fails the test when it runs."""

    def search(self, data: bytes) -> None:
        raise AssertionError("searched a batch of str values for numbers")


# (no injected key: a record holding one takes the copying path, where each record is searched)
_STR_RECORDS = st.dictionaries((_KEYS | st.text(max_size=6)).filter(lambda k: k not in ("time", "tag", "host", "worker")),
                               st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
                               | st.sampled_from(['1e+16', '-0.0', ':1', '":1', "0.00001"]), min_size=1, max_size=6)


@pytest.mark.parametrize("inject_settings", [STANDARD, INJECTORS[1], INJECTORS[3]])
@settings(max_examples=100, deadline=None)
@given(batch=st.lists(st.tuples(_TIMES, _STR_RECORDS), min_size=1, max_size=8))
def test_str_value_events_give_the_same_bytes_without_the_number_search(inject_settings: dict, batch: list) -> None:
    from unittest import mock

    from kawa.event import StrValueEvents
    from kawa.plugins.formatters import json as json_formatter

    formatter = FormatterDriver("json").instance
    injector = _injector(**inject_settings)
    expected = _reference(formatter, "app", batch, injector)
    with mock.patch.object(json_formatter, "_NON_STRING_VALUE", _NoSearch()):
        assert formatter.format_batch_injected("app", StrValueEvents(batch), injector) == expected
        with pytest.raises(AssertionError, match="searched"):      # a plain list is still searched
            formatter._spliced("app", [(T, {"a": "b"})], injector)
