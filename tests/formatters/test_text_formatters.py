"""ltsv, csv, tsv, hash and msgpack formatters: Fluentd's output bytes for the same records."""

from __future__ import annotations

import msgpack
import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import FormatterDriver

T = 1562746800 * 10**9
RECORD = {"message": "awesome", "greeting": "hello"}


def test_ltsv_default_and_options() -> None:
    assert FormatterDriver("ltsv", "").format("t", T, RECORD) == "message:awesome\tgreeting:hello\n"
    d = FormatterDriver("ltsv", "delimiter ,\nlabel_delimiter =\nreplacement _\nnewline crlf")
    assert d.format("t", T, {"a": "x,y", "b": 1}) == "a=x_y,b=1\r\n"
    assert FormatterDriver("ltsv", "add_newline false").format("t", T, {"a": "x"}) == "a:x"


def test_ltsv_values_use_ruby_to_s() -> None:
    d = FormatterDriver("ltsv", "")
    assert d.format("t", T, {"n": None, "f": 1.0, "b": True, "h": {"k": [1, "v"]}, "tab": "a\tb"}) == \
        'n:\tf:1.0\tb:true\th:{"k"=>[1, "v"]}\ttab:a b\n'


def test_csv_force_quotes_default_and_nil() -> None:
    d = FormatterDriver("csv", "fields message,greeting,missing")
    assert d.format("t", T, RECORD) == '"awesome","hello",""\n'
    assert d.format("t", T, {"message": 'say "hi"', "greeting": 3}) == '"say ""hi""","3",""\n'


def test_csv_without_force_quotes_quotes_only_what_ruby_csv_quotes() -> None:
    d = FormatterDriver("csv", "fields a,b,c,d,e\nforce_quotes false")
    assert d.format("t", T, {"a": "plain", "b": "", "c": None, "d": "x,y", "e": "l1\nl2"}) == \
        'plain,"",,"x,y","l1\nl2"\n'


def test_csv_delimiter_tab_spellings_nested_fields_and_newline() -> None:
    for spelling in ("TAB", "\\t"):
        d = FormatterDriver("csv", f"fields a,$.b.c\ndelimiter {spelling}\nadd_newline false")
        assert d.format("t", T, {"a": 1, "b": {"c": "x"}}) == '"1"\t"x"'
    with pytest.raises(ConfigError):
        FormatterDriver("csv", "fields ,")


def test_tsv() -> None:
    d = FormatterDriver("tsv", "keys message,missing,n")
    assert d.format("t", T, {**RECORD, "n": 2.5}) == "awesome\t\t2.5\n"
    d = FormatterDriver("tsv", "keys a,b\ndelimiter |\nadd_newline false")
    assert d.format("t", T, {"a": "x\ty", "b": [1]}) == "x\ty|[1]"


def test_hash_is_ruby_hash_to_s() -> None:
    d = FormatterDriver("hash", "")
    assert d.format("t", T, RECORD) == '{"message"=>"awesome", "greeting"=>"hello"}\n'
    assert d.format("t", T, {"a": None, "b": [1, 2.0, False], "c": "é\"\n", "d": {}}) == \
        '{"a"=>nil, "b"=>[1, 2.0, false], "c"=>"é\\"\\n", "d"=>{}}\n'
    assert FormatterDriver("hash", "add_newline false").format("t", T, {}) == "{}"


def test_msgpack_bytes_round_trip_even_for_raw_bytes() -> None:
    d = FormatterDriver("msgpack", "")
    raw = b"\xff\xfeok".decode("utf-8", "surrogateescape")
    record = {"message": "awesome", "n": 1, "f": 0.5, "raw": raw}
    data = d.instance.format_bytes("t", T, record)
    assert data == d.format("t", T, record).encode("utf-8", "surrogateescape")
    assert data[:1] == b"\x84" and msgpack.unpackb(data, raw=True)[b"raw"] == b"\xff\xfeok"
    assert d.instance.format_batch("t", [(T, {"a": 1}), (T, {"b": 2})]).encode("utf-8", "surrogateescape") == \
        b"\x81\xa1a\x01\x81\xa1b\x02"


def test_stdout_formatter_output_types() -> None:
    d = FormatterDriver("stdout", "output_type ltsv")
    assert d.format("app", T, {"a": 1}).endswith(" app: a:1\n")
    d = FormatterDriver("stdout", "output_type hash")
    assert d.format("app", T, {"a": 1}).endswith(' app: {"a"=>1}\n')
