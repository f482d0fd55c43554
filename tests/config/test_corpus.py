"""Every real-world entry config in shared/corpus parses to the same tree Fluentd's parser built.

Compared with _reference_parse/*.parsed.txt, where unevaluated embedded Ruby shows as __EMBEDDED_RUBY__."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from kawa.config.element import Element
from kawa.config.parser import parse_config_file, parse_config_string
from kawa.config.ruby import find_code_end

SHARED = Path(__file__).resolve().parents[3] / "shared"   # <repo>/../shared
CORPUS = SHARED / "corpus"
EMBEDDED = "__EMBEDDED_RUBY__"
# The reference ran with no environment: `"#{ENV['X'] || 'lit'}"` became lit, any other Ruby the marker.
# Only what every Kubernetes pod has: the daemonset's kubernetes_url does ENV.fetch on these (Fluentd,
# like kawa, refuses to start without them).
POD_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
_ENV_OR_LITERAL = re.compile(r"""\s*ENV\[(['"])[^'"]*\1\]\s*\|\|\s*'([^']*)'\s*""")


def _entries() -> list[str]:
    if not (CORPUS / "INDEX.tsv").is_file():
        return []
    with open(CORPUS / "INDEX.tsv", newline="", encoding="utf-8") as f:
        return [row["file"] for row in csv.DictReader(f, delimiter="\t") if row["role"] == "entry"]


def _source_value(attr_file: str, line: int, key: str) -> str:
    """The value text of `key` as written at file:line (for deciding what the reference printed)."""
    text = Path(attr_file).read_text(encoding="utf-8").splitlines()[line - 1].strip()
    return text[len(key):].strip() if text.startswith(key) else text


def _reference_view(written: str) -> str | None:
    """The value as the reference printed it: each `#{...}` replaced by its literal fallback or
    the marker, then read with the normal double-quote rules. None when every piece was an
    `ENV[..] || 'lit'` form: then our own evaluation (with an empty env) must produce the value."""
    out: list[str] = []
    i = 0
    marked = False
    while (j := written.find("#{", i)) >= 0:
        if j > 0 and written[j - 1] == "\\":   # `\#{` is an escaped '#', not Ruby
            out.append(written[i:j + 2])
            i = j + 2
            continue
        end = find_code_end(written, j + 2)
        m = _ENV_OR_LITERAL.fullmatch(written[j + 2:end])
        out.append(written[i:j])
        out.append(m.group(2) if m else EMBEDDED)
        marked = marked or m is None
        i = end + 1
    out.append(written[i:])
    if not marked:
        return None
    return parse_config_string("k " + "".join(out), env={}).attrs["k"].value


def _render(element: Element, level: int, out: list[str]) -> None:
    pad = "  " * level
    out.append(f"{pad}<{element.name} {element.arg}>" if element.arg else f"{pad}<{element.name}>")
    for key, attr in element.attrs.items():
        value = attr.value
        if attr.quoted == '"':
            written = _source_value(attr.location.file, attr.location.line, key)
            if "#{" in written:
                value = _reference_view(written) or value
        out.append(f"{pad}  {key} {value}")
    for child in element.elements:
        _render(child, level + 1, out)
    out.append(f"{pad}</{element.name}>")


@pytest.mark.parametrize("entry", _entries() or ["<no corpus>"])
def test_corpus_entry_matches_reference(entry: str) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (it lives beside the repo checkout)")
    root = parse_config_file(CORPUS / entry, env=POD_ENV, hostname="host", worker_id=0)
    ours: list[str] = []
    _render(root, 0, ours)
    reference = CORPUS / "_reference_parse" / (entry.replace("/", "__") + ".parsed.txt")
    expected = reference.read_text(encoding="utf-8").rstrip("\n").split("\n")
    assert "\n".join(ours) == "\n".join(expected)


def test_corpus_has_entries() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (it lives beside the repo checkout)")
    assert len(_entries()) >= 40
