"""Config syntax parser: Fluentd's golden cfg_* cases plus one test per syntax rule.

Golden cases need shared/golden beside the repo; they are skipped with a reason when it is absent."""

from __future__ import annotations

import json
import re

from pathlib import Path

import pytest

from kawa.config.dump import dump_config
from kawa.config.element import Element
from kawa.config.literal import escape_for_dump
from kawa.config.parser import (USE_DEFAULT, USE_NIL, parse_config_file,
                                parse_config_file_with_warnings, parse_config_string,
                                parse_config_string_with_warnings)
from kawa.errors import ConfigParseError

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden"


def golden_case(name: str) -> Path:
    case = GOLDEN / name
    if not case.is_dir():
        pytest.skip(f"golden case {name} not found under {GOLDEN} (shared/ lives beside the repo)")
    return case


def one(text: str, key: str = "k", **kw: object) -> str:
    """Value of `key` in `text` parsed at top level."""
    env = kw.pop("env", {})
    return parse_config_string(text, env=env, hostname="h", **kw).attrs[key].value  # type: ignore[arg-type]


# --- golden cases ------------------------------------------------------------------------------

def _dump_block(case: Path) -> list[str]:
    """The supervisor's "using configuration file: <ROOT> ... </ROOT>" dump, as lines."""
    # Bytes, not read_text: universal newlines would turn the \r inside a value into a line break.
    text = (case / "expected" / "dry-run.log.normalized").read_bytes().decode("utf-8")
    start = text.index("using configuration file: ") + len("using configuration file: ")
    end = text.index("</ROOT>", start) + len("</ROOT>")
    return text[start:end].split("\n")


# Parameters the engine (not the syntax) adds to the dump: plugin defaults and inherited paths.
ENGINE_ADDED = {"unmatched_lines", "time_type", "path"}


def _assert_dump_matches(root: Element, golden: list[str]) -> None:
    """Our tree, printed like Fluentd, appears in the golden dump in order. Fluentd quotes values
    of string-typed params (a type only the engine knows), so either spelling is accepted."""
    chunks: list[tuple[list[list[str]], bool]] = []   # (alternative line lists, value may differ)

    def walk(e: Element, level: int) -> None:
        pad = "  " * level
        chunks.append(([[pad + e.title()]], False))
        for key, attr in e.attrs.items():
            raw = f"{pad}  {key} {attr.value}".split("\n")
            quoted = f'{pad}  {key} "{escape_for_dump(attr.value)}"'.split("\n")
            loose = attr.ruby_error is not None or attr.value in (USE_DEFAULT, USE_NIL)
            chunks.append(([raw, quoted], loose))
        for child in e.elements:
            walk(child, level + 1)
        chunks.append(([[f"{pad}</{e.name}>"]], False))

    walk(root, 0)
    i = 0
    skipped: list[str] = []
    for alternatives, loose in chunks:
        while True:
            assert i < len(golden), f"ran out of golden dump looking for {alternatives[0]}"
            if any(golden[i:i + len(alt)] == alt for alt in alternatives):
                i += len(next(alt for alt in alternatives if golden[i:i + len(alt)] == alt))
                break
            if loose and _indented_key(golden[i]) == _indented_key(alternatives[0][0]):
                i += 1   # a value only the engine resolves (unsupported Ruby, use_default)
                break
            skipped.append(golden[i].strip().split(" ")[0])
            i += 1
    assert set(skipped) <= ENGINE_ADDED, skipped
    assert i == len(golden)


def _indented_key(line: str) -> tuple[int, str]:
    stripped = line.lstrip(" ")
    return len(line) - len(stripped), stripped.split(" ", 1)[0]


def _record(root: Element) -> Element:
    return next(f for f in root.children("filter") if f.children("record")).children("record")[0]


def _assert_record_matches_output(record: Element, out: dict[str, object]) -> None:
    """record_transformer copied the config values into the output record verbatim."""
    for key, attr in record.attrs.items():
        if attr.ruby_error or "${" in attr.value:
            continue   # arithmetic Ruby we do not run / placeholders filled in by the plugin
        if attr.quoted is None and attr.value[:1] in "[{" and attr.value:
            assert json.loads(attr.value) == out[key], key
        else:
            assert attr.value == out[key], key


def _first_output(case: Path) -> dict[str, object]:
    out = next((case / "expected" / "out").iterdir())
    return json.loads(out.read_text(encoding="utf-8").splitlines()[0])


def test_golden_quoting() -> None:
    case = golden_case("cfg_quoting")
    root = parse_config_file(case / "fluent.conf", env={}, worker_id="")
    _assert_dump_matches(root, _dump_block(case))
    record = _record(root)
    _assert_record_matches_output(record, _first_output(case))
    # `1 + 2` is evaluated (Fluentd: sum=3); `'ab' * 2` is the first form kawa does not run
    assert record.attrs["dq_ruby"].value.startswith("sum=3 str=#{'ab' * 2} ")
    assert record.attrs["dq_ruby"].ruby_error == ("embedded Ruby expression is not supported: "
                                                   "#{'ab' * 2} (syntax at '* 2')")
    quoted = {k: a.quoted for k, a in record.attrs.items()}
    assert quoted["uq_plain"] is None and quoted["dq_hash"] == '"' and quoted["sq_hash"] == "'"
    assert record["no_value"] == "" and record["dq_empty"] == "" and record["sq_empty"] == ""


def test_golden_multiline_json() -> None:
    case = golden_case("cfg_multiline_json")
    root = parse_config_file(case / "fluent.conf", env={}, worker_id="")
    _assert_dump_matches(root, _dump_block(case))
    filters = root.children("filter")
    assert filters[0]["remove_keys"] == '["a","b"]'
    assert _record(root)["added"] == '{"list":["x","y # not a comment"],"n":2}'
    parse = filters[1].children("parse")[0]
    assert parse["types"] == '{"code":"integer","size":"integer"}'
    assert parse["time_format_fallbacks"] == '["%iso8601","unixtime"]'
    # The line after a multi-line value is still numbered right.
    assert parse.attrs["time_key"].location.line == 31
    assert _record(root).attrs["added"].location.line == 17


@pytest.mark.parametrize("name,env", [("cfg_env_set", {"GOLDEN_X": "hello world"}),
                                      ("cfg_env_unset", {})])
def test_golden_env(name: str, env: dict[str, str]) -> None:
    case = golden_case(name)
    # The dump is printed by the supervisor, where worker_id is "".
    root = parse_config_file(case / "fluent.conf", env=env, worker_id="")
    _assert_dump_matches(root, _dump_block(case))
    assert root.children("match")[0]["path_suffix"] == USE_DEFAULT
    # The output comes from worker 0.
    root = parse_config_file(case / "fluent.conf", env=env, worker_id=0)
    _assert_record_matches_output(_record(root), _first_output(case))


def test_golden_include_glob() -> None:
    case = golden_case("cfg_include_glob")
    root, warnings = parse_config_file_with_warnings(case / "fluent.conf", env={}, worker_id="")
    assert warnings == []
    _assert_dump_matches(root, _dump_block(case))
    source, f1, f2, match = root.elements
    assert source.location.file.endswith("conf.d/10-source.conf") and source.location.line == 1
    assert f2.location.file.endswith("extra/record.conf")
    assert [e.name for e in match.elements] == ["format", "inject", "buffer"]
    assert match.elements[0].location.file.endswith("fragments/format.conf")
    assert match.elements[2].location.file.endswith("conf.d/30-match.conf")
    assert match.elements[2].location.line == 6


@pytest.mark.parametrize("name,message,line", [
    ("cfg_err_incomplete_json", "got incomplete JSON array configuration", 12),
    ("cfg_err_reserved_prefix", "'@' is the system reserved prefix. Don't use '@' prefix "
                                "parameter in the configuration: @foo", 3),
])
def test_golden_parse_errors(name: str, message: str, line: int) -> None:
    case = golden_case(name)
    assert (case / "expected" / "dry-run.rc").read_text().strip() == "1"
    assert f"{message} at fluent.conf line {line}," in (case / "expected" / "dry-run.log").read_text()
    with pytest.raises(ConfigParseError) as err:
        parse_config_file(case / "fluent.conf", env={})
    assert err.value.bare_message == message
    assert err.value.location is not None and err.value.location.line == line
    assert err.value.location.file == str(case / "fluent.conf")


# --- structure ---------------------------------------------------------------------------------

def test_sections_nest_and_carry_locations() -> None:
    root = parse_config_string("# c\n\n<match a.** b>\n  @type x\n  <buffer tag, time>\n"
                               "    k v\n  </buffer>\n</match>\n", name="f.conf", env={})
    match = root.elements[0]
    assert (root.name, root.arg) == ("ROOT", "")
    assert (match.name, match.arg, match.location.line) == ("match", "a.** b", 3)
    buf = match.elements[0]
    assert (buf.arg, buf.location.line, buf.attrs["k"].location.line) == ("tag, time", 5, 6)
    assert match.attrs["@type"].location == buf.location.__class__("f.conf", 4)


def test_section_arg_may_be_quoted_and_tag_may_have_comment() -> None:
    root = parse_config_string('<source> # comment\n</source>\n<match "a b">\n</match>', env={})
    assert [e.arg for e in root.elements] == ["", "a b"]


@pytest.mark.parametrize("text,message", [
    ("<a>\n</b>\n", "unmatched end tag"),
    ("<a>\nk v\n", "expected end tag '</a>' but got end of file"),
    ("<a x\n", "expected '>'"),
    ("<a> x\n</a>", "expected end of line after tag"),
    ("<a>\n</a> x", "expected end of line after end tag"),
    ('k "v" x', "expected end of line"),
    ('k "abc', "unexpected end of file in a double quoted string"),
    ("k 'abc\n'", "unexpected end of file in a single quoted string"),
    ('k "\\q"', "unexpected back-slash escape character 'q'"),
    ("k {\"a\": 1\n", "got incomplete JSON hash configuration"),
])
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigParseError) as err:
        parse_config_string(text, env={})
    assert err.value.bare_message == message


def test_error_line_numbers() -> None:
    with pytest.raises(ConfigParseError) as err:
        parse_config_string("<a>\n  k v\n</b>\n", name="x.conf", env={})
    assert err.value.location is not None and (err.value.location.file, err.value.location.line) == ("x.conf", 3)


def test_duplicate_key_last_wins_in_first_position() -> None:
    root = parse_config_string("a 1\nb 2\na 3\n", env={})
    assert list(root.attrs) == ["a", "b"] and root["a"] == "3"


# --- values ------------------------------------------------------------------------------------

@pytest.mark.parametrize("written,value", [
    ("hello world", "hello world"),
    ("a#b", "a#b"),
    ("value # comment", "value"),
    ("value\t# comment", "value"),
    ("#t", "#t"),                      # a value may start with '#'
    ("a\\tb\\n", "a\\tb\\n"),          # no escapes unquoted
    ("spaced value   ", "spaced value"),
    ("#{ENV['X']}", "#{ENV['X']}"),    # no Ruby unquoted
    ("use_nil", "use_nil"),
    ("tag irc.http_5xx_error>", "tag irc.http_5xx_error>"),
])
def test_unquoted(written: str, value: str) -> None:
    assert one(f"k {written}\n", env={"X": "x"}) == value


@pytest.mark.parametrize("written,value", [
    (r'"tab:\t nl:\n cr:\r q:\" bs:\\ sq:\' nul:\0 f:\f b:\b"',
     "tab:\t nl:\n cr:\r q:\" bs:\\ sq:' nul:\0 f:\f b:\b"),
    (r'"\$\{\#\@\/\["', "${#@/["),
    ('"a # b"', "a # b"),
    ('"x"# c', "x"),
    ('"line1\nline2"', "line1\nline2"),
    ('"join \\\nlines"', "join lines"),     # backslash-newline continues the line
    ('"\\#{x}"', "#{x}"),
    ('""', ""),
])
def test_double_quoted(written: str, value: str) -> None:
    assert one(f"k {written}\n") == value


@pytest.mark.parametrize("written,value", [
    (r"'a \t \n b'", r"a \t \n b"),
    (r"'it\'s \\ \q'", "it's \\ \\q"),
    ("'#{ENV[\"X\"]}'", '#{ENV["X"]}'),
    ("'a # b'", "a # b"),
    ("''", ""),
])
def test_single_quoted(written: str, value: str) -> None:
    assert one(f"k {written}\n", env={"X": "x"}) == value


def test_quoted_records_how_written() -> None:
    root = parse_config_string("a x\nb \"x\"\nc 'x'\nd [1]\ne\n", env={})
    assert [root.attrs[k].quoted for k in "abcde"] == [None, '"', "'", None, None]


def test_key_without_value_and_comment_only_value() -> None:
    root = parse_config_string("flag\nk # looks like a comment\nlast", env={})
    assert root["flag"] == "" and root["last"] == ""
    assert root["k"] == "# looks like a comment"   # Fluentd: the value starts at the '#'


def test_crlf_line_ends() -> None:
    root = parse_config_string("<a>\r\n  k v\r\n  j \"q\"\r\n</a>\r\n", env={})
    assert root.elements[0]["k"] == "v" and root.elements[0]["j"] == "q"


# --- JSON values -------------------------------------------------------------------------------

@pytest.mark.parametrize("written,value", [
    ('[1, "two", {"three": 3}]', '[1,"two",{"three":3}]'),
    ('{"k": "v", "n": null, "f": 1.5, "e": 1e20}', '{"k":"v","n":null,"f":1.5,"e":1.0e+20}'),
    ('["é/ü"]', '["é/ü"]'),
    ('[\n  "a", # comment\n  "b#c"\n]', '["a","b#c"]'),
    ('{"a": 1, "a": 2}', '{"a":2}'),
    ('["#{ENV[\'X\']}"]', '["x"]'),
    ('[1] # trailing comment', "[1]"),
])
def test_json_values(written: str, value: str) -> None:
    assert one(f"k {written}\n", env={"X": "x"}) == value


def test_multiline_json_locations() -> None:
    root = parse_config_string('a [1,\n  2,\n  3]\nb x\n', env={})
    assert root["a"] == "[1,2,3]" and root.attrs["b"].location.line == 4


def test_incomplete_json_array_reports_end_of_file() -> None:
    with pytest.raises(ConfigParseError) as err:
        parse_config_string("<p>\n  time_format [%d/%b/%Y]\n</p>\n", env={})
    assert err.value.bare_message == "got incomplete JSON array configuration"
    assert err.value.location is not None and err.value.location.line == 3


# --- embedded Ruby -----------------------------------------------------------------------------

ENV = {"X": "ex", "EMPTY": ""}


@pytest.mark.parametrize("code,value", [
    ("ENV['X']", "ex"),
    ('ENV["X"]', "ex"),
    ("ENV['UNSET']", ""),
    ("ENV.fetch('UNSET', 'dflt')", "dflt"),
    ("ENV.fetch('X')", "ex"),
    ("ENV['UNSET'] || 'lit'", "lit"),
    ('ENV["UNSET"] || "lit"', "lit"),
    ("ENV['EMPTY'] || 'lit'", ""),                # "" is true in Ruby
    ("ENV['UNSET'] || true", "true"),
    ("ENV['UNSET'] || false", "false"),
    ("ENV['UNSET'] || nil", ""),
    ("ENV['UNSET'] || ENV['X'] || 'z'", "ex"),
    ("Socket.gethostname", "h"),
    ("hostname", "h"),
    ("worker_id", "3"),
    ("'str'", "str"),
    ("ENV['X'].nil? ? 'unset' : 'set'", "set"),
    ("", ""),
])
def test_ruby_forms(code: str, value: str) -> None:
    assert one(f'k "#{{{code}}}"\n', env=ENV, worker_id=3) == value


def test_ruby_concatenation_and_defaults() -> None:
    assert one('k "pre-#{ENV[\'X\']}-#{ENV[\'UNSET\']}-post"', env=ENV) == "pre-ex--post"
    assert one("k \"#{ENV['X'] || use_nil}\"", env=ENV) == "ex"
    assert one("k \"#{ENV['UNSET'] || use_nil}\"", env=ENV) == USE_NIL
    assert one("k \"a#{use_default}\"", env=ENV) == USE_DEFAULT
    assert one("k \"#{worker_id}\"", env=ENV) == "0"   # default worker 0


def test_ruby_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAWA_TEST_VAR", "from-os")
    assert parse_config_string("k \"#{ENV['KAWA_TEST_VAR']}\"")["k"] == "from-os"


def test_unsupported_ruby_is_kept_with_error() -> None:
    root = parse_config_string('k "a-#{Socket.getifaddrs}-#{ENV[\'X\']}"\nj "#{x; y}"\n', env=ENV)
    attr = root.attrs["k"]
    assert attr.value == "a-#{Socket.getifaddrs}-ex"
    assert attr.ruby_error == ("embedded Ruby expression is not supported: #{Socket.getifaddrs} "
                               "(Socket.getifaddrs)")
    assert root.attrs["j"].ruby_error == "embedded Ruby expression is not supported: #{x; y} (name x)"


def test_ruby_code_with_braces_and_quotes() -> None:
    attr = parse_config_string('k "#{[1].map { |i| "}#{i}" }.first}"\n', env={}).attrs["k"]
    assert attr.ruby_error is not None and attr.value == '#{[1].map { |i| "}#{i}" }.first}'


def test_env_fetch_without_default_of_unset_variable_fails() -> None:
    with pytest.raises(ConfigParseError, match='key not found: "NOPE"'):
        parse_config_string("k \"#{ENV.fetch('NOPE')}\"", env={})


# --- reserved @params --------------------------------------------------------------------------

@pytest.mark.parametrize("section", ["source", "match", "filter", "system", None])
def test_unknown_at_param_is_an_error_at_plugin_level(section: str | None) -> None:
    text = f"<{section}>\n  @foo bar\n</{section}>\n" if section else "@foo bar\n"
    with pytest.raises(ConfigParseError) as err:
        parse_config_string(text, env={})
    assert err.value.bare_message == ("'@' is the system reserved prefix. Don't use '@' prefix "
                                      "parameter in the configuration: @foo")


def test_unknown_at_param_only_warns_deeper_and_in_label() -> None:
    text = "<label @X>\n  @foo 1\n</label>\n<match a>\n  <buffer>\n    @bar 2\n  </buffer>\n</match>\n"
    root, warnings = parse_config_string_with_warnings(text, name="w.conf", env={})
    assert root.elements[1].elements[0]["@bar"] == "2"
    assert [(w.message.split(": ")[-1], w.location.line if w.location else 0) for w in warnings] \
        == [("@foo", 2), ("@bar", 6)]


def test_reserved_params_and_legacy_names_are_plain_attrs() -> None:
    root = parse_config_string("<match a>\n @type t\n @id i\n @label @L\n @log_level debug\n"
                               " type old\n id x\n</match>\n", env={})
    assert root.elements[0].attrs.keys() == {"@type", "@id", "@label", "@log_level", "type", "id"}


# --- @include ----------------------------------------------------------------------------------

def test_include_glob_sorted_relative_and_inside_sections(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.conf").write_text("<filter b>\n</filter>\n")
    (tmp_path / "d" / "a.conf").write_text("\n<source>\n  x 1\n</source>\n@include ../frag/*.conf\n")
    (tmp_path / "d" / "c.txt").write_text("<bogus>\n</bogus>\n")
    (tmp_path / "frag").mkdir()
    (tmp_path / "frag" / "f.conf").write_text("<match f>\n</match>\n")
    (tmp_path / "inner.conf").write_text("k2 v2\n<format>\n</format>\n")
    main = tmp_path / "main.conf"
    main.write_text("@include d/*.conf\n@include none/*.conf\n@include missing.conf\n"
                    "<match m>\n  k1 v1\n  @include inner.conf\n  <buffer>\n  </buffer>\n</match>\n")
    root = parse_config_file(main, env={})
    assert [e.title() for e in root.elements] == ["<source>", "<match f>", "<filter b>", "<match m>"]
    src = root.elements[0]
    assert src.location.file == str(tmp_path / "d" / "a.conf") and src.location.line == 2
    assert src.attrs["x"].location.line == 3
    m = root.elements[3]
    assert list(m.attrs) == ["k1", "k2"] and [e.name for e in m.elements] == ["format", "buffer"]
    assert m.attrs["k2"].location.file == str(tmp_path / "inner.conf")
    assert m.elements[1].location == m.location.__class__(str(main), 7)


def test_include_without_at_is_deprecated_but_works(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text("a 1\n")
    root, warnings = parse_config_string_with_warnings("include x.conf\n", base_dir=str(tmp_path), env={})
    assert root["a"] == "1"
    assert warnings[0].message == "'include' is deprecated. Use '@include' instead"
    nested = parse_config_string("<s>\n  include x.conf\n</s>\n", base_dir=str(tmp_path), env={})
    assert nested.elements[0]["include"] == "x.conf"   # only special at top level


def test_include_path_from_ruby_and_spaces(tmp_path: Path) -> None:
    (tmp_path / "my dir").mkdir()
    (tmp_path / "my dir" / "sys.conf").write_text("a 1\n")
    text = "@include \"my dir/#{ENV['UNSET'] || 'sys'}.conf\"\n"
    assert parse_config_string(text, base_dir=str(tmp_path), env={})["a"] == "1"
    text = f"@include file://{tmp_path}/my%20dir/sys.conf\n"
    assert parse_config_string(text, env={})["a"] == "1"


def test_include_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigParseError, match="including configuration over http is not supported"):
        parse_config_string("@include http://example.com/x.conf\n", env={})
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigParseError, match="include error sub - Is a directory"):
        parse_config_string("@include sub\n", base_dir=str(tmp_path), env={})
    (tmp_path / "loop.conf").write_text("@include loop.conf\n")
    with pytest.raises(ConfigParseError, match="include error"):
        parse_config_file(tmp_path / "loop.conf", env={})
    (tmp_path / "bad.conf").write_text("<a>\n")
    with pytest.raises(ConfigParseError) as err:
        parse_config_string("\n@include bad.conf\n", base_dir=str(tmp_path), env={})
    assert err.value.location is not None and err.value.location.file == str(tmp_path / "bad.conf")


# --- dump --------------------------------------------------------------------------------------

def test_dump_format_quoting_and_secrets() -> None:
    root = parse_config_string('<match a.**>\n  @type s3\n  plain x\n  q "t\\tab"\n  flag\n'
                               "  secret s\n  <buffer tag>\n    k 'v'\n  </buffer>\n</match>\n", env={})
    text = dump_config(root, secret_keys=lambda path, key: key == "secret")
    assert text == ("<ROOT>\n  <match a.**>\n    @type s3\n    plain x\n    q \"t\\tab\"\n    flag \n"
                    "    secret xxxxxx\n    <buffer tag>\n      k \"v\"\n    </buffer>\n  </match>\n</ROOT>")
    seen: list[tuple[tuple[str, ...], str]] = []
    dump_config(root, param_type=lambda p, k: seen.append((p, k)) or None)
    assert (("<match a.**>", "<buffer tag>"), "k") in seen
    assert dump_config(root, param_type=lambda p, k: "string" if k == "plain" else None) \
        .splitlines()[3] == '    plain "x"'
    reparsed = parse_config_string(text, env={}).elements[0].elements[0]   # the dump reads back
    assert reparsed.elements[0]["k"] == "v" and reparsed["q"] == "t\tab"


def test_defaults_for_hostname_and_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    root = parse_config_string('h "#{hostname}"\nw "#{worker_id}"\n', env={})
    assert (root["h"], root["w"]) == ("box", "0")


def test_parse_speed_on_long_json() -> None:
    items = ", ".join(f'"item-{i}"' for i in range(3000))
    assert one(f"k [{items}]\n").count("item-") == 3000





# --- embedded Ruby of the fluentd-kubernetes-daemonset v1.19 configs ---------------------------

K8S_URL = ("#{ENV['FLUENT_FILTER_KUBERNETES_URL'] || (host = ENV.fetch('KUBERNETES_SERVICE_HOST'); "
           "port = ENV.fetch('KUBERNETES_SERVICE_PORT'); host = (IPAddr.new(host).ipv6? ? '[' + host + ']' : "
           "host rescue host); 'https://' + host + ':' + port + '/api')}")
POS_FILE = "#{File.join('/var/log/', ENV.fetch('FLUENT_POS_EXTRA_DIR', ''), 'fluentd-containers.log.pos')}"


@pytest.mark.parametrize("env,url", [
    ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "https://10.96.0.1:443/api"),
    ({"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"},
     "https://[fd00:10:96::1]:443/api"),
    # not an address: IPAddr.new raises, `rescue host` keeps the name
    ({"KUBERNETES_SERVICE_HOST": "kubernetes.default.svc", "KUBERNETES_SERVICE_PORT": "6443"},
     "https://kubernetes.default.svc:6443/api"),
    ({"FLUENT_FILTER_KUBERNETES_URL": "https://api:8443", "KUBERNETES_SERVICE_HOST": "fd00::1"}, "https://api:8443"),
    ({"FLUENT_FILTER_KUBERNETES_URL": "https://api:8443"}, "https://api:8443"),   # right of || never runs
])
def test_daemonset_kubernetes_url(env: dict[str, str], url: str) -> None:
    assert one(f'k "{K8S_URL}"', env=env) == url


def test_daemonset_kubernetes_url_outside_a_pod_fails_like_fluentd() -> None:
    with pytest.raises(ConfigParseError, match='key not found: "KUBERNETES_SERVICE_HOST"'):
        one(f'k "{K8S_URL}"', env={})
    with pytest.raises(ConfigParseError, match='key not found: "KUBERNETES_SERVICE_PORT"'):
        one(f'k "{K8S_URL}"', env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})


@pytest.mark.parametrize("env,path", [
    ({}, "/var/log/fluentd-containers.log.pos"),
    ({"FLUENT_POS_EXTRA_DIR": ""}, "/var/log/fluentd-containers.log.pos"),
    ({"FLUENT_POS_EXTRA_DIR": "extra"}, "/var/log/extra/fluentd-containers.log.pos"),
    ({"FLUENT_POS_EXTRA_DIR": "/extra/"}, "/var/log/extra/fluentd-containers.log.pos"),
])
def test_daemonset_pos_file(env: dict[str, str], path: str) -> None:
    assert one(f'k "{POS_FILE}"', env=env) == path


def test_dir_pwd_and_file_join_of_fluentd_examples(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert one('k "#{Dir.pwd}/buf"') == f"{tmp_path}/buf"
    assert one("k \"#{File.join(Dir.pwd, 'test', 'tmp', 'root')}\"") == f"{tmp_path}/test/tmp/root"


@pytest.mark.parametrize("code,value", [
    ("File.join('a', 'b')", "a/b"),
    ("File.join('a/', '/b')", "a/b"),
    ("File.join('', 'b')", "/b"),
    ("File.join('a', '')", "a/"),
    ("File.join('/', '/b')", "/b"),
    ("File.join('a//', 'b')", "a//b"),
    ("File.join", ""),
    ("'a' + 'b' + ENV['X']", "abex"),
    ("1 + 2", "3"),
    ("x = 'v'; y = x + '!'; y", "v!"),
    ("x = x; x.nil?", "true"),                      # Ruby: a name is a local from its assignment on
    ("hostname = 'other'; hostname", "other"),      # Fluentd's prelude locals can be reassigned
    ("(ENV.fetch('UNSET') rescue 'r')", "r"),
    ("ENV.fetch('UNSET') rescue 'r'", "r"),
    ("v = ENV.fetch('UNSET') rescue 'r'; v", "r"),  # `a = b rescue c` is `a = (b rescue c)`
    ("IPAddr.new('::1').ipv6?", "true"),
    ("IPAddr.new('127.0.0.1').ipv6?", "false"),
    ("IPAddr.new('127.0.0.1').ipv4?", "true"),
    ("IPAddr.new('[::1]').ipv6?", "true"),
    ("IPAddr.new('10.1.2.3/8')", "10.0.0.0"),
    ("IPAddr.new('nope').ipv6? rescue 'bad'", "bad"),
    ("'x'.ipv6? rescue 'no method'", "no method"),
    ("ENV['X'] == 'ex' ? 'y' : 'n'", "y"),
    ("ENV['X'] != 'ex' && 'y'", "false"),
    ("!ENV['UNSET'] && 'unset'", "unset"),
    ("((ENV['UNSET'] || 'a') + 'b')", "ab"),
    ("a = 1;;b = 2;", "2"),
])
def test_ruby_statements_and_builtins(code: str, value: str) -> None:
    assert one(f'k "#{{{code}}}"\n', env=ENV) == value


def test_use_nil_is_not_rescued() -> None:
    # Fluentd's SetNil is not a StandardError: `rescue` lets it through
    assert one("k \"#{use_nil rescue 'r'}\"", env=ENV) == USE_NIL


@pytest.mark.parametrize("code,error", [
    ("'a' + nil", "no implicit conversion of nil into String"),
    ("1 + 'a'", "String can't be coerced into Integer"),
    ("nil + 'a'", "undefined method `+' for nil"),
    ("File.join('a', 1)", "no implicit conversion of Integer into String"),
    ("IPAddr.new('999.1.1.1')", "invalid address: 999.1.1.1"),
    ("Dir.pwd(1)", "wrong number of arguments (given 1, expected 0)"),
])
def test_ruby_runtime_errors_fail_the_parse(code: str, error: str) -> None:
    with pytest.raises(ConfigParseError, match=re.escape(error)):
        one(f'k "#{{{code}}}"\n', env=ENV)


@pytest.mark.parametrize("code,detail", [
    ("Socket.getifaddrs.select{|i| i.addr.ipv4? }", "syntax at '{|i| i.addr.ipv4? }'"),
    ("ENV['X'].upcase", "method .upcase"),
    ("undefined_name", "name undefined_name"),
    ("File.read('/etc/passwd')", "File.read"),
    ("Kernel.system('true')", "name Kernel"),
    ("`id`", "syntax at '`id`'"),
    ("ENV.fetch('X') { 'b' }", "syntax at \"{ 'b' }\""),
    ("IPAddr.new('::1') + 1", "IPAddr#+"),
    ("ENV.key?('X')", "ENV.key?"),
    ("X = 1", "name X"),                         # constant assignment
])
def test_unsupported_forms_are_named(code: str, detail: str) -> None:
    attr = parse_config_string(f'k "#{{{code}}}"\n', env=ENV).attrs["k"]
    assert attr.value == "#{" + code + "}"
    assert attr.ruby_error == f"embedded Ruby expression is not supported: #{{{code}}} ({detail})"
