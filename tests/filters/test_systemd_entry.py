"""systemd_entry (and the systemd input's <entry>): fluent-plugin-systemd's field mapping."""

from __future__ import annotations

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import FilterDriver

ENTRY = {"MESSAGE": "hello", "_PID": "42", "_CMDLINE": "/usr/bin/kubelet", "_SYSTEMD_UNIT": "kubelet.service",
         "PRIORITY": "6"}


def run(conf: str, entry: dict[str, str] = ENTRY) -> dict[str, str]:
    d = FilterDriver("systemd_entry", conf)
    d.feed_batch("node", [(1, dict(entry))])
    return d.filtered_records[0]


def test_no_option_keeps_the_entry() -> None:
    assert run("") == ENTRY


def test_field_map_copies_and_joins_and_keeps_the_other_fields() -> None:
    got = run('field_map {"MESSAGE": "log", "_PID": ["process", "pid"], "_CMDLINE": "process"}')
    assert got == {"log": "hello", "process": "42 /usr/bin/kubelet", "pid": "42",
                   "_SYSTEMD_UNIT": "kubelet.service", "PRIORITY": "6"}


def test_strict_keeps_only_the_mapped_fields() -> None:
    assert run('field_map {"MESSAGE": "log"}\nfield_map_strict true') == {"log": "hello"}


def test_names_stripped_and_lowercased_and_joined_with_a_mapped_field_of_that_name() -> None:
    got = run('field_map {"MESSAGE": "pid"}\nfields_strip_underscores true\nfields_lowercase true')
    # "_PID" becomes "pid", which field_map made already: the entry's value first, then the mapped one
    assert got == {"pid": "42 hello", "cmdline": "/usr/bin/kubelet", "systemd_unit": "kubelet.service",
                   "priority": "6"}


def test_a_new_name_takes_only_the_sources_that_name_it_exactly() -> None:
    # the plugin also gave "msg" the value of _PID, whose new name "msg_full" contains "msg"
    got = run('field_map {"MESSAGE": "msg", "_PID": "msg_full"}\nfield_map_strict true')
    assert got == {"msg": "hello", "msg_full": "42"}


def test_strict_with_an_empty_map_warns() -> None:
    d = FilterDriver("systemd_entry", "field_map_strict true")
    assert any("`field_map_strict` set to true with empty `field_map`, expect no fields" in line for line in d.logs)


def test_field_map_values_must_be_strings() -> None:
    with pytest.raises(ConfigError, match="`field_map` values must be strings or an array of strings"):
        FilterDriver("systemd_entry", 'field_map {"MESSAGE": ["a", 1]}')
