"""A small strict parser of the Prometheus text format 0.0.4, for tests (raises ValueError on anything off).

Checks: HELP/TYPE before samples and once per family, contiguous families, metric and label
name syntax, label value escapes, numeric values, no duplicate series, final newline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class ParsedFamily:
    name: str
    type: str = "untyped"
    help: str = ""
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def value(self, **labels: str) -> float:
        """The value of the one series whose labels include `labels`."""
        found = [v for k, v in self.samples.items() if set(labels.items()) <= set(k)]
        if len(found) != 1:
            raise KeyError(f"{self.name}{labels}: {len(found)} series match")
        return found[0]

    def labelsets(self) -> list[dict[str, str]]:
        return [dict(k) for k in self.samples]


def parse(text: str) -> dict[str, ParsedFamily]:
    if text and not text.endswith("\n"):
        raise ValueError("exposition must end with a newline")
    families: dict[str, ParsedFamily] = {}
    current: str | None = None
    finished: set[str] = set()
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if not line:
            raise ValueError(f"line {n}: empty line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue    # a comment
            name = parts[2]
            if not _NAME.fullmatch(name):
                raise ValueError(f"line {n}: bad metric name {name!r}")
            if name != current:
                if name in finished or (current is not None and name in families):
                    raise ValueError(f"line {n}: family {name} is not contiguous")
                if current is not None:
                    finished.add(current)
                current = name
            fam = families.setdefault(name, ParsedFamily(name))
            if parts[1] == "TYPE":
                if fam.samples or getattr(fam, "_typed", False):
                    raise ValueError(f"line {n}: TYPE after samples or twice for {name}")
                if len(parts) != 4 or parts[3] not in _TYPES:
                    raise ValueError(f"line {n}: bad TYPE line")
                fam.type = parts[3]
                fam._typed = True  # type: ignore[attr-defined]
            else:
                fam.help = parts[3] if len(parts) == 4 else ""
            continue
        name, labels, rest = _sample(line, n)
        if name != current:
            if name in families:
                raise ValueError(f"line {n}: samples of {name} are not contiguous")
            if current is not None:
                finished.add(current)
            current = name
        fam = families.setdefault(name, ParsedFamily(name))
        value_text = rest.split(" ")
        if len(value_text) not in (1, 2):
            raise ValueError(f"line {n}: expected a value and an optional timestamp")
        value = _value(value_text[0], n)
        key = tuple(sorted(labels.items()))
        if key in fam.samples:
            raise ValueError(f"line {n}: duplicate series {name}{labels}")
        fam.samples[key] = value
    return families


def _sample(line: str, n: int) -> tuple[str, dict[str, str], str]:
    m = _NAME.match(line)
    if not m:
        raise ValueError(f"line {n}: bad sample line {line!r}")
    name, i = m.group(), m.end()
    labels: dict[str, str] = {}
    if i < len(line) and line[i] == "{":
        i += 1
        while line[i] != "}":
            lm = _LABEL.match(line, i)
            if not lm or line[lm.end():lm.end() + 2] != '="':
                raise ValueError(f"line {n}: bad label at column {i}")
            label, i = lm.group(), lm.end() + 2
            chars: list[str] = []
            while line[i] != '"':
                if line[i] == "\\":
                    esc = line[i + 1]
                    if esc not in ('\\', '"', "n"):
                        raise ValueError(f"line {n}: bad escape \\{esc}")
                    chars.append("\n" if esc == "n" else esc)
                    i += 2
                else:
                    chars.append(line[i])
                    i += 1
            i += 1
            if label in labels:
                raise ValueError(f"line {n}: label {label} twice")
            labels[label] = "".join(chars)
            if line[i] == ",":
                i += 1
            elif line[i] != "}":
                raise ValueError(f"line {n}: expected , or }} at column {i}")
        i += 1
    if i >= len(line) or line[i] != " ":
        raise ValueError(f"line {n}: expected a space before the value")
    return name, labels, line[i + 1:]


def _value(text: str, n: int) -> float:
    if text in ("NaN", "+Inf", "-Inf"):
        return {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}[text]
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"line {n}: bad value {text!r}") from None
