"""Prometheus text exposition format 0.0.4, rendered by hand (no prometheus_client: RSS matters).

A Family is one `# HELP`/`# TYPE` block; samples are (label values, value) in the def's label order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kawa.metrics.catalog import MetricDef

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    definition: MetricDef
    labels: tuple[str, ...] = ()          # base labels (from <labels>) first, then the def's
    samples: dict[tuple[str, ...], float | int] = field(default_factory=dict)
    type: str = ""                        # overrides definition.type (gauge_all false)

    def set(self, values: tuple[str, ...], value: float | int) -> None:
        self.samples[values] = value

    def add(self, values: tuple[str, ...], value: float | int) -> None:
        self.samples[values] = self.samples.get(values, 0) + value


def format_value(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render(families: list[Family]) -> str:
    """The exposition text. Families without samples are left out (no value is not zero)."""
    out: list[str] = []
    append = out.append
    for fam in families:
        if not fam.samples:
            continue
        d = fam.definition
        append(f"# HELP {d.name} {escape_help(d.help)}\n")
        append(f"# TYPE {d.name} {fam.type or d.type}\n")
        names = fam.labels or d.labels
        for values, value in fam.samples.items():
            if names:
                pairs = ",".join(f'{n}="{escape_label(str(v))}"' for n, v in zip(names, values))
                append(f"{d.name}{{{pairs}}} {format_value(value)}\n")
            else:
                append(f"{d.name} {format_value(value)}\n")
    return "".join(out)
