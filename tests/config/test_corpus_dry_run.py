"""`kawa --dry-run` on every real-world entry config in shared/corpus.

Entries whose plugins kawa ships must pass (exit 0); entries using a plugin kawa does not ship must
exit 2 with exactly one `Unknown <kind> plugin '<name>'` line per such plugin (at its @type line),
no other problem and never a traceback. Known gaps in shipped plugins are strict xfails: they must
be removed from KNOWN_GAPS when fixed."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from kawa.cli import main
from kawa.config.element import Element
from kawa.config.parser import parse_config_file
from kawa.engine import registry

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
# section name -> plugin kind its @type names
SECTION_KINDS = {"source": "input", "match": "output", "filter": "filter", "store": "output",
                 "secondary": "output", "parse": "parser", "format": "formatter", "buffer": "buffer"}
UNKNOWN_LINE = re.compile(r"\[error\]: (?P<where>\S+:\d+): .*Unknown (?P<kind>\w+) plugin '(?P<name>[^']+)'\. ")

# What every Kubernetes pod has: the daemonset's kubernetes_url does ENV.fetch on these (Fluentd, like
# kawa, refuses to start without them).
POD_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
           # and what the fluentd-kubernetes-daemonset forward image's README says to set (its port
           # is "#{ENV['FLUENT_FOWARD_PORT']}": empty without it, which Fluentd reads as port 0)
           "FLUENT_FOWARD_HOST": "aggregator", "FLUENT_FOWARD_PORT": "24224"}

# entry -> why kawa still fails it (a gap in a shipped plugin or in the engine), from the last run
KNOWN_GAPS: dict[str, str] = {
    "fluent__fluentd__example__in_forward_tls.conf":
        "<transport tls> with `insecure true` and no cert_path: Fluentd generates a self-signed certificate; "
        "kawa refuses it (Python's ssl cannot make certificates) and asks for cert_path",
    "fluent__fluentd__example__out_forward_client.conf":
        "embedded Ruby with blocks (Socket.getifaddrs.select{...}) is not evaluated",
}
# entry -> the one problem kawa reports for a config Fluentd 1.18 cannot load either.
# v1_literal_example is a syntax sample: its `"#{test}"` runs Kernel#test with no arguments while parsing
# (ArgumentError, Fluentd exits); kawa does not run that Ruby and says so. Its unknown <sectionN> only warn.
FLUENTD_FAILS_TOO: dict[str, str] = {
    # a documentation snippet whose forward <store> is elided ("# ..."): out_forward needs a <server>
    "fluent__fluentd-docs-gitbook__configuration__routing-examples.md__block6.conf":
        "<store>: forward output plugin requires at least one node is required. Add <server> or <service>",
    # its list is example/sd.yaml in Fluentd's source tree: run elsewhere, sd_file stops the start
    "fluent__fluentd__example__out_forward_sd.conf": "/example/sd.yaml not found",
    "fluent__fluentd__example__v1_literal_example.conf":
        "v1_literal_example.conf:22: <section2>: key9: embedded Ruby expression is not supported: #{test} (name test)",
}


def _entries() -> list[str]:
    if not (CORPUS / "INDEX.tsv").is_file():
        return []
    with open(CORPUS / "INDEX.tsv", newline="", encoding="utf-8") as f:
        return [row["file"] for row in csv.DictReader(f, delimiter="\t") if row["role"] == "entry"]


def _expected_unknown(elem: Element, shipped: dict[str, set[str]], out: Counter[tuple[str, str, str]],
                      top: bool = True) -> None:
    """Unknown plugins kawa reports: those whose enclosing plugin sections are all known."""
    for child in elem.elements:
        if top and child.name == "worker":     # Fluentd's dry run configures every <worker N> section
            _expected_unknown(child, shipped, out, top=True)
            continue
        if top and child.name == "label":
            _expected_unknown(child, shipped, out, top=True)
            continue
        kind = SECTION_KINDS.get(child.name)
        attr = child.attrs.get("@type") or child.attrs.get("type")
        if kind and attr is not None and attr.value not in shipped[kind]:
            out[(str(attr.location), kind, attr.value)] += 1
            continue                   # nothing inside an unknown plugin is looked at
        if kind and attr is not None:
            _expected_compat(child, registry.lookup(kind, attr.value), shipped, out)
        _expected_unknown(child, shipped, out, top=False)


# v0.12 parameters naming a plugin (`format kubernetes` in a <source>), section they move into, kind
_COMPAT_TYPES = (("parse", "format", "parser"), ("format", "format", "formatter"), ("buffer", "buffer_type", "buffer"))


def _expected_compat(elem: Element, cls: type | None, shipped: dict[str, set[str]],
                     out: Counter[tuple[str, str, str]]) -> None:
    for section, key, kind in _COMPAT_TYPES:
        attr = elem.attrs.get(key)
        if (section in getattr(cls, "compat_sections", ()) and attr is not None and not elem.children(section)
                and not attr.value.startswith("/") and attr.value not in shipped[kind]):
            out[(str(attr.location), kind, attr.value)] += 1


def _params() -> list[object]:
    return [pytest.param(e, id=e, marks=[pytest.mark.xfail(reason=KNOWN_GAPS[e], strict=True)])
            if e in KNOWN_GAPS else pytest.param(e, id=e) for e in _entries()]


@pytest.mark.parametrize("entry", _params())
def test_corpus_entry_dry_run(entry: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if not CORPUS.is_dir():
        pytest.skip("shared/corpus not available")
    for name, value in POD_ENV.items():
        monkeypatch.setenv(name, value)
    path = CORPUS / entry
    shipped = {kind: set(names) for kind, names in registry.available().items()}
    expected: Counter[tuple[str, str, str]] = Counter()
    _expected_unknown(parse_config_file(path), shipped, expected)
    code = main(["--dry-run", "-c", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if "[error]: " in line]
    reported = Counter((m["where"], m["kind"], m["name"]) for line in errors if (m := UNKNOWN_LINE.search(line)))
    others = [line.split("[error]: ", 1)[1] for line in errors if not UNKNOWN_LINE.search(line)]
    if entry in FLUENTD_FAILS_TOO:
        assert [line.endswith(FLUENTD_FAILS_TOO[entry]) for line in others] == [True] and code == 2
        return
    assert others == [], "problems other than unknown plugins:\n" + "\n".join(others)
    assert reported == expected
    assert code == (2 if expected else 0)


DAEMONSET_IMAGE = "fluent__fluentd-kubernetes-daemonset/docker-image/v1.19/debian-cloudwatch/conf/fluent.conf"


@pytest.mark.parametrize("systemd", ["enabled", "disable"])
def test_the_cloudwatch_daemonset_images_config_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                     systemd: str) -> None:
    """fluent/fluentd-kubernetes-daemonset's debian-cloudwatch configuration, with its journald sources
    (systemd input, `<storage>` cursors) and with them turned off as its README lets one
    (FLUENTD_SYSTEMD_CONF=disable): every part, its `kubernetes` glog parser included, configures."""
    path = CORPUS / DAEMONSET_IMAGE
    if not path.is_file():
        pytest.skip("shared/corpus not available")
    env = {**POD_ENV, "LOG_GROUP_NAME": "/k8s/demo"}
    if systemd == "disable":
        env["FLUENTD_SYSTEMD_CONF"] = "disable"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["--dry-run", "-c", str(path)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "finished dry run mode" in out.out + out.err
    assert ("in_systemd_kubelet" in out.out + out.err) == (systemd == "enabled")
