"""The hand-written exposition renderer against a strict parser (and the parser against bad input)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from kawa.metrics import catalog
from kawa.metrics.exposition import Family, format_value, render


def _promtext():
    name = "kawa_tests_promtext"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "promtext.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


parse = _promtext().parse


def test_label_values_are_escaped_and_round_trip() -> None:
    fam = Family(catalog.TAIL_LAG)
    nasty = 'C:\\logs\\"odd"\nname.log'
    fam.set(("in_tail", nasty), 12)
    fam.set(("in_tail", "/var/log/a.log"), 0)
    text = render([fam])
    assert '\\\\logs\\\\\\"odd\\"\\nname.log' in text
    parsed = parse(text)["kawa_tail_lag_bytes"]
    assert parsed.type == "gauge"
    assert parsed.value(path=nasty) == 12
    assert parsed.value(path="/var/log/a.log") == 0


def test_families_without_samples_are_left_out_and_types_can_be_overridden() -> None:
    empty = Family(catalog.RECORDS)
    counter = Family(catalog.OUTPUT_MONITOR[0][0], type="counter")
    counter.set(("out", "null"), 3)
    families = parse(render([empty, counter]))
    assert list(families) == ["fluentd_output_status_buffer_total_bytes"]
    assert families["fluentd_output_status_buffer_total_bytes"].type == "counter"


def test_values_format_like_the_ruby_client() -> None:
    assert format_value(3) == "3"
    assert format_value(3.0) == "3.0"
    assert format_value(True) == "1"
    assert format_value(math.nan) == "NaN"
    assert format_value(-math.inf) == "-Inf"
    assert float(format_value(1e20)) == 1e20


def test_labelless_family_renders_bare_sample() -> None:
    fam = Family(catalog.CLOUDWATCH_THROTTLES_TOTAL)
    fam.add((), 2)
    fam.add((), 3)
    assert render([fam]).splitlines()[-1] == "kawa_cloudwatch_throttles_total 5"


@pytest.mark.parametrize("bad", [
    "m 1",                                                       # no final newline
    "# TYPE m gauge\nm 1\nm 2\n",                                # duplicate series
    'm{a="x\\q"} 1\n',                                           # bad escape
    "m 1\n# TYPE m gauge\n",                                     # TYPE after samples
    "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",  # family not contiguous
    "m one\n",                                                   # bad value
    '9m 1\n',                                                    # bad name
])
def test_strict_parser_rejects_malformed_text(bad: str) -> None:
    with pytest.raises(ValueError):
        parse(bad)


def test_every_catalog_name_is_a_valid_metric_name() -> None:
    import re

    defs = [d for d, *_ in catalog.OUTPUT_MONITOR] + [d for d, _ in catalog.STATUS_MONITOR] + \
        [d for d, _ in catalog.TAIL_MONITOR] + [v for v in vars(catalog).values() if isinstance(v, catalog.MetricDef)]
    names = [d.name for d in defs]
    assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", n) for n in names)
    by_name: dict[str, set[int]] = {}
    for d in defs:
        by_name.setdefault(d.name, set()).add(id(d))
    assert all(len(ids) == 1 for ids in by_name.values()), "a metric name is defined twice"
    assert all(d.type in ("gauge", "counter") for d in defs)
