"""record_accessor: Fluentd's $.a.b / $['a'] / $.a[0] syntax, Ruby dig semantics, delete/set."""

from __future__ import annotations

import re

import pytest

from kawa.errors import ConfigError
from kawa.record_accessor import DigError, RecordAccessor, parse_accessor


@pytest.mark.parametrize("param,keys", [
    ("log", "log"), ("a.b", "a.b"), ("$.a.b", ["a", "b"]), ("$.a[0].b", ["a", 0, "b"]),
    ("$['a']['app.kubernetes.io/name']", ["a", "app.kubernetes.io/name"]), ('$["a"][1]', ["a", 1]),
    ("$.a[0][1]", ["a", 0, 1]), ("$.a..", ["a"]), ("$.a..b", ["a", "", "b"]),
])
def test_parse(param: str, keys: object) -> None:
    assert parse_accessor(param) == keys


@pytest.mark.parametrize("param,message", [
    ("$.", "empty keys in dot notation"), ("$.a b", "whitespace character is not allowed"),
    ("$.a[0", "'[' found but ']' not found"), ("$.a[0]x", "found more characters after ']'"),
    ("$['a\"]", "Mismatched quotes"), ("$['a'", "Incomplete bracket"), ("$[]", "missing array index"),
])
def test_parse_errors(param: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_accessor(param)


def test_get_follows_ruby_dig() -> None:
    acc = RecordAccessor("$.kubernetes.labels.app")
    assert acc.get({"kubernetes": {"labels": {"app": "web"}}}) == "web"
    assert acc.get({"kubernetes": None}) is None
    assert acc.get({}) is None
    with pytest.raises(DigError, match="String does not have #dig method"):
        acc.get({"kubernetes": "not-a-hash"})
    with pytest.raises(DigError, match="no implicit conversion of String into Integer"):
        acc.get({"kubernetes": {"labels": ["web"]}})
    assert RecordAccessor("$.items[-1].name").get({"items": [{"name": "a"}, {"name": "z"}]}) == "z"
    assert RecordAccessor("$.items[5]").get({"items": []}) is None
    assert RecordAccessor("$.single").nested is False


def test_delete_and_set_never_create_intermediates() -> None:
    rec = {"a": {"b": 1, "c": 2}, "l": [1, 2, 3]}
    RecordAccessor("$.a.b").delete(rec)
    RecordAccessor("$.l[0]").delete(rec)
    RecordAccessor("$.x.y").delete(rec)
    RecordAccessor("$.x.y").set(rec, 5)
    RecordAccessor("$.a.d").set(rec, 5)
    assert rec == {"a": {"c": 2, "d": 5}, "l": [2, 3]}
