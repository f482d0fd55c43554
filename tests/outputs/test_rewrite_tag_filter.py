"""rewrite_tag_filter: rules, backreferences, placeholders, emit modes, config errors (with the plugin's
messages), and, through the real process, labels and the loop guard."""

from __future__ import annotations

import asyncio

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import OutputDriver

T = 1_700_000_000 * 1_000_000_000


def feed(d: OutputDriver, tag: str, records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    async def go() -> None:
        async with d.run():
            await d.feed_batch(tag, [(T + i, r) for i, r in enumerate(records)])
    asyncio.run(go())
    return [(t, r) for t, _time, r in d.emitter.events]


APACHE = """
capitalize_regex_backreference yes
<rule>
  key     path
  pattern /\\.(gif|jpe?g|png|pdf|zip)$/
  tag     clear
</rule>
<rule>
  key     status
  pattern /^200$/
  tag     clear
  invert  true
</rule>
<rule>
  key     domain
  pattern /^.+\\.com$/
  tag     clear
  invert  true
</rule>
<rule>
  key     domain
  pattern /^maps\\.example\\.com$/
  tag     site.ExampleMaps
</rule>
<rule>
  key     domain
  pattern /^news\\.example\\.com$/
  tag     site.ExampleNews
</rule>
<rule>
  key     domain
  pattern /^(mail)\\.(example)\\.com$/
  tag     site.$2$1
</rule>
<rule>
  key     domain
  pattern /.+/
  tag     site.unmatched
</rule>
"""


def test_the_plugins_readme_example() -> None:
    d = OutputDriver("rewrite_tag_filter", APACHE)
    got = feed(d, "td.apache.access", [
        {"domain": "maps.example.com", "path": "/logo.png", "status": "200"},      # static file
        {"domain": "maps.example.com", "path": "/", "status": "500"},              # not 200
        {"domain": "example.jp", "path": "/", "status": "200"},                    # not .com
        {"domain": "maps.example.com", "path": "/", "status": "200"},
        {"domain": "news.example.com", "path": "/", "status": "200"},
        {"domain": "mail.example.com", "path": "/", "status": "200"},              # $2$1 capitalized
        {"domain": "other.example.com", "path": "/", "status": "200"},
        {"domain": "maps.example.com", "path": "/a", "status": "200"},
    ])
    # batch mode: one emit per new tag, in the order each tag first appears
    assert [(tag, r["path"]) for tag, r in got] == [
        ("clear", "/logo.png"), ("clear", "/"), ("clear", "/"),
        ("site.ExampleMaps", "/"), ("site.ExampleMaps", "/a"),
        ("site.ExampleNews", "/"), ("site.ExampleMail", "/"), ("site.unmatched", "/")]
    assert d.emitter.sizes == [3, 2, 1, 1, 1]
    assert 'adding rewrite_tag_filter rule: status [#<Fluent::PluginHelper::RecordAccessor::Accessor ' \
           '@keys="status">, /^200$/, "!", "clear", nil]' in "\n".join(d.logs)


def test_record_mode_emits_each_event_alone() -> None:
    d = OutputDriver("rewrite_tag_filter", APACHE + "emit_mode record")
    feed(d, "td.apache.access", [{"domain": "maps.example.com", "path": "/", "status": "200"}] * 3)
    assert d.emitter.sizes == [1, 1, 1]


def test_placeholders_and_remove_tag_prefix() -> None:
    d = OutputDriver("rewrite_tag_filter", """
remove_tag_prefix kube
hostname_command echo node-7
<rule>
  key level
  pattern /^(\\w+)$/
  tag ${tag_parts[1]}.$1.${tag}.__TAG__.__TAG_PARTS[0]__.${hostname}.__HOSTNAME__.$9
</rule>
""")
    got = feed(d, "kube.app.web", [{"level": "error"}])
    assert got == [("web.error.app.web.app.web.app.node-7.node-7.", {"level": "error"})]


def test_unknown_placeholder_is_warned_and_left_empty() -> None:
    d = OutputDriver("rewrite_tag_filter", "<rule>\nkey k\npattern /x/\ntag a.${tag_parts[5]}b\n</rule>")
    got = feed(d, "one.two", [{"k": "x"}])
    assert got == [("a.b", {"k": "x"})]
    assert any("rewrite_tag_filter: unknown placeholder found. :placeholder=>${tag_parts[5]} :tag=>one.two "
               ":rewritetag=>a.${tag_parts[5]}b" in line for line in d.logs), d.logs


def test_events_no_rule_rewrites_are_dropped() -> None:
    d = OutputDriver("rewrite_tag_filter", """
<rule>
  key $.kubernetes.labels.app
  pattern /^(.+)$/
  tag app.$1
</rule>
<rule>
  key missing
  pattern /./
  tag none.matched
  invert true
</rule>
""")
    got = feed(d, "app.web", [
        {"kubernetes": {"labels": {"app": "web"}}},       # new tag == old tag: dropped
        {"kubernetes": {"labels": {"app": "db"}}},
        {"kubernetes": "not a hash"},                      # no value: the next rule (invert, value "")
        {"kubernetes": {"labels": {"app": ""}}},           # empty value: skipped by the non-invert rule
    ])
    assert got == [("app.db", {"kubernetes": {"labels": {"app": "db"}}}),
                   ("none.matched", {"kubernetes": "not a hash"}),
                   ("none.matched", {"kubernetes": {"labels": {"app": ""}}})]
    assert d.instance.stats() == {"rewritten": 3, "not_rewritten": 1, "looped": 0}


@pytest.mark.parametrize("conf, message", [
    ("", "missing rewriterules"),
    ("rewriterule1 path /x/ clear", '"rewriterule<num>" support has been dropped. Use <rule> section instead.'),
    ("<rule>\nkey a\npattern /x/\ntag b\n</rule>\n<rule>\nkey a\npattern /x/\ntag c\n</rule>",
     "duplicated rewriterules found: key a pattern /x/"),
    ("remove_tag_prefix a\nremove_tag_regexp /^b/\n<rule>\nkey a\npattern /x/\ntag b\n</rule>",
     "remove_tag_prefix and remove_tag_regexp are exclusive"),
    ("<rule>\nkey a\npattern /x/\ntag ${tag_parts[0..2]}\n</rule>",
     "${tag_parts[n]} and __TAG_PARTS[n]__ placeholder does not support range specify"),
    ("emit_mode stream\n<rule>\nkey a\npattern /x/\ntag b\n</rule>", "emit_mode"),
])
def test_configuration_errors(conf: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        OutputDriver("rewrite_tag_filter", conf)
    assert message in str(info.value)


def _run(tmp_path: Path, conf: str, seconds: float) -> str:
    path = tmp_path / "fluent.conf"
    path.write_text(conf)
    log = tmp_path / "kawa.log"
    proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(path)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    time.sleep(seconds)
    proc.terminate()
    assert proc.wait(30) == 0, log.read_text()[-3000:]
    return log.read_text()


def test_rule_labels_route_to_their_label_through_the_real_router(tmp_path: Path) -> None:
    text = _run(tmp_path, f"""
<source>
  @type sample
  tag app.web
  sample [{{"level":"error"}}, {{"level":"info"}}]
</source>
<match app.**>
  @type rewrite_tag_filter
  <rule>
    key level
    pattern /^error$/
    tag alert.${{tag}}
    label @ALERTS
  </rule>
  <rule>
    key level
    pattern /^info$/
    tag plain.${{tag}}
  </rule>
</match>
<match plain.**>
  @type file
  path {tmp_path}/plain
  <buffer>
    flush_mode immediate
  </buffer>
</match>
<label @ALERTS>
  <match alert.**>
    @type file
    path {tmp_path}/alerts
    <buffer>
      flush_mode immediate
    </buffer>
  </match>
</label>
""", 3.0)
    alerts = "".join(p.read_text() for p in tmp_path.glob("alerts*.log"))
    plain = "".join(p.read_text() for p in tmp_path.glob("plain*.log"))
    assert "\talert.app.web\t" in alerts and "info" not in alerts, text
    assert "\tplain.app.web\t" in plain and "error" not in plain, text


def test_a_tag_that_keeps_coming_back_is_dropped_with_an_error(tmp_path: Path) -> None:
    text = _run(tmp_path, """
<source>
  @type sample
  tag app
</source>
<match app.** app>
  @type rewrite_tag_filter
  <rule>
    key message
    pattern /./
    tag app.again.${tag}
  </rule>
</match>
""", 2.5)
    assert "rewrite_tag_filter: events dropped: rewritten 32 times in a row" in text, text[-3000:]
    assert "Traceback" not in text and "RecursionError" not in text


def test_a_rules_label_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "fluent.conf"
    path.write_text("<source>\n@type sample\ntag a\n</source>\n<match a>\n@type rewrite_tag_filter\n"
                    "<rule>\nkey message\npattern /./\ntag b\nlabel @NOWHERE\n</rule>\n</match>\n")
    done = subprocess.run([sys.executable, "-m", "kawa", "-c", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "@NOWHERE label not found" in done.stdout + done.stderr



