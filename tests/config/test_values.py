"""Tests for kawa.config.values: strict converters for Fluentd's value grammar.
Each rejection carries "expected <what>, like <example>; got '<raw>'"."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from kawa.config import values as v


@pytest.mark.parametrize("raw, want", [("10", 10), ("-3", -3), ("+7", 7), ("1_000", 1000), (" 5 ", 5)])
def test_integer(raw: str, want: int) -> None:
    assert v.integer(raw) == want


@pytest.mark.parametrize("raw", ["10abc", "", "1.5", "abc", "0x10", "1__0"])
def test_integer_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=f"^expected an integer, like 10; got '{raw}'$"):
        v.integer(raw)


def test_float() -> None:
    assert v.float_("1.5") == 1.5 and v.float_("-2") == -2.0 and v.float_("1e3") == 1000.0
    assert v.float_(".5") == 0.5
    for bad in ("abc", "", "1.5.2", "1,5"):
        with pytest.raises(ValueError, match="expected a number"):
            v.float_(bad)


@pytest.mark.parametrize("raw, want", [("10", 10), ("1k", 1024), ("8M", 8 << 20), ("2g", 2 << 30),
                                       ("1t", 1 << 40), ("10KB", 10240)])
def test_size(raw: str, want: int) -> None:
    assert v.size(raw) == want


@pytest.mark.parametrize("raw", ["1.5k", "k", "10x", "-1k", "10b"])
def test_size_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=f"expected a size, like 8m; got '{raw}'"):
        v.size(raw)


@pytest.mark.parametrize("raw, want", [("30", 30.0), ("0.5s", 0.5), ("10m", 600.0), ("2h", 7200.0),
                                       ("1d", 86400.0), ("1.5", 1.5), ("-1", -1.0)])
def test_time(raw: str, want: float) -> None:
    assert v.time(raw) == want


@pytest.mark.parametrize("raw", ["abc", "10M", "5w", "", "1.5.s"])
def test_time_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        v.time(raw)


def test_bool() -> None:
    assert v.bool_("true") is True and v.bool_("yes") is True and v.bool_("") is True
    assert v.bool_("false") is False and v.bool_("no") is False
    assert v.bool_("# a comment") is True
    for bad in ("True", "1", "on", "nope"):
        with pytest.raises(ValueError, match=f"expected a boolean .*; got '{bad}'"):
            v.bool_(bad)


def test_enum() -> None:
    assert v.enum("json", ["json", "msgpack"]) == "json"
    with pytest.raises(ValueError, match="expected one of json, msgpack, like json; got 'xml'"):
        v.enum("xml", ["json", "msgpack"])
    assert v.make_enum(["a"])("a") == "a"
    assert v.convert("enum", "a", list=["a", "b"]) == "a"


def test_array() -> None:
    assert v.array('["a","b"]') == ["a", "b"]
    assert v.array("a, b ,c") == ["a", "b", "c"]
    assert v.array("a,b,") == ["a", "b"]  # Ruby split drops trailing empties
    assert v.array("") == []
    assert v.array("1,2", "integer") == [1, 2]
    assert v.array("[1, 2]", "integer") == [1, 2]
    assert v.make_array("size")("1k") == [1024]
    for bad in ('["a",', '[1'):
        with pytest.raises(ValueError, match="expected a JSON array"):
            v.array(bad)
    with pytest.raises(ValueError):
        v.array("1,x", "integer")


def test_hash() -> None:
    assert v.hash_('{"k":"v","n":1}') == {"k": "v", "n": 1}
    assert v.hash_("k1:v1, k2:v:2") == {"k1": "v1", "k2": "v:2"}
    assert v.hash_("a:1,b:2", "integer") == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="expected key:value pairs"):
        v.hash_("a:1,b")
    with pytest.raises(ValueError, match="expected a JSON object"):
        v.hash_("{nope")


def test_regexp() -> None:
    assert v.regexp("/^a.b$/m").search("a\nb")
    assert v.regexp("/AB/i").search("ab")
    assert v.regexp("^(?<x>a)").search("a").group("x") == "a"
    for bad in ("/a/xyz", "/a/x", "/(a/"):
        with pytest.raises(ValueError, match="expected a"):
            v.regexp(bad)


def test_convert_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown config value type"):
        v.convert("nope", "x")


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_integer_roundtrip(n: int) -> None:
    assert v.integer(str(n)) == n


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "k", "m", "g", "K", "M"]))
def test_size_property(n: int, unit: str) -> None:
    mult = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit.lower()]
    assert v.size(f"{n}{unit}") == n * mult
