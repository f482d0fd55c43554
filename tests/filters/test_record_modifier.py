"""record_modifier filter: <record> expansion, remove_keys / whitelist_keys, <replace>, char_encoding,
errors as error events, config errors."""

from __future__ import annotations

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import FilterDriver

T = 1562746800 * 10**9


def test_record_values_typed_alone_interpolated_otherwise() -> None:
    d = FilterDriver("record_modifier", "<record>\nfirst ${tag_parts[0]}\nplain bar\nnum ${record['n'] * 2}\n"
                                        "text n=${record['n']} at ${time} from ${tag}\n</record>")
    original = {"n": 3}
    d.feed("app.web", T, original)
    assert d.filtered_records == [{"n": 3, "first": "app", "plain": "bar", "num": 6,
                                   "text": "n=3 at 1562746800 from app.web"}]
    assert original == {"n": 3}


def test_remove_keys_accessor_and_whitelist_keys_with_record_keys() -> None:
    d = FilterDriver("record_modifier", "remove_keys a,$.b.c")
    d.feed("t", T, {"a": 1, "b": {"c": 2, "d": 3}, "e": 4})
    assert d.filtered_records == [{"b": {"d": 3}, "e": 4}]
    d = FilterDriver("record_modifier", "whitelist_keys e, a\n<record>\nadded x\n</record>")
    d.feed("t", T, {"a": 1, "b": 2, "e": 4})
    assert d.filtered_records == [{"e": 4, "a": 1, "added": "x"}]
    with pytest.raises(ConfigError, match="exclusive"):
        FilterDriver("record_modifier", "remove_keys a\nwhitelist_keys b")


def test_replace_sections_use_ruby_gsub_references() -> None:
    d = FilterDriver("record_modifier", "<replace>\nkey msg\nexpression /(?<user>\\w+)@(?<host>\\w+)/\n"
                                        "replace \\k<user> at \\k<host> [\\0]\n</replace>")
    d.feed("t", T, {"msg": "mail bob@example now"})
    d.feed("t", T, {"other": 1})
    assert d.filtered_records == [{"msg": "mail bob at example [bob@example] now"}, {"other": 1}]
    d = FilterDriver("record_modifier", "<replace>\nkey m\nexpression /(a)(b)?/\nreplace <\\1\\2\\\\>\n</replace>")
    d.feed("t", T, {"m": "xa"})
    assert d.filtered_records == [{"m": "x<a\\>"}]


def test_bare_replace_expression_warns_like_the_plugin() -> None:
    d = FilterDriver("record_modifier", "<replace>\nkey m\nexpression a+\nreplace -\n</replace>")
    assert d.logs == ['[warn]: #0 You should use "pattern /a+/" instead of "pattern a+"']
    d.feed("t", T, {"m": "baaad"})
    assert d.filtered_records == [{"m": "b-d"}]


def test_runtime_errors_become_error_events() -> None:
    d = FilterDriver("record_modifier", "<record>\nx ${record['missing'].upcase}\n</record>")
    d.feed_batch("t", [(T, {"a": 1}), (T, {"missing": "ok"})])
    assert d.filtered_records == [{"missing": "ok", "x": "OK"}]
    assert len(d.error_events) == 1 and "undefined method `upcase' for nil" in d.error_events[0][3]
    d = FilterDriver("record_modifier", "<record>\nh ${hostname}\n</record>")
    d.feed("t", T, {})
    assert d.filtered_records == [] and "hostname" in d.error_events[0][3]


def test_char_encoding_to_utf8_replaces_invalid_bytes() -> None:
    bad = b"ok\xff".decode("utf-8", "surrogateescape")
    d = FilterDriver("record_modifier", "char_encoding utf-8:utf-8")
    d.feed("t", T, {"m": bad, "n": [bad]})
    assert d.filtered_records == [{"m": "ok\ufffd", "n": ["ok\ufffd"]}]
    with pytest.raises(ConfigError):
        FilterDriver("record_modifier", "char_encoding utf-8:euc-jp")
    with pytest.raises(ConfigError, match="prepare_value"):
        FilterDriver("record_modifier", "prepare_value @x = 1")
