"""Fluentd v1 configuration syntax parser: config text -> Element tree, as Fluentd 1.18 builds it.

Follows v1_parser.rb / literal_parser.rb / basic_parser.rb rule by rule, quirks included."""

from __future__ import annotations

import bisect
import glob
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kawa.config import literal as lit
from kawa.config.dump import dump_config
from kawa.config.element import Attr, Element
from kawa.config.ruby import (RubyContext, RubyRuntimeError, SetDefault, SetNil, Unsupported,
                              evaluate, find_code_end, to_s)
from kawa.errors import ConfigParseError, Location, Problem

__all__ = ["parse_config_file", "parse_config_string", "parse_config_file_with_warnings",
           "parse_config_string_with_warnings", "dump_config", "USE_NIL", "USE_DEFAULT"]

# `"#{use_nil}"` / `"#{use_default}"` make Fluentd store nil / :default; Attr values are strings,
# so we store these words and the schema binder gives them their meaning.
USE_NIL = "use_nil"
USE_DEFAULT = "use_default"

ELEM_SYMBOLS = ("match", "source", "filter", "system")   # where an unknown @param is an error
RESERVED_PARAMS = ("@type", "@id", "@label", "@log_level")
MAX_INCLUDE_DEPTH = 64   # Fluentd would die with "stack level too deep" on an include loop


@dataclass(slots=True)
class _Value:
    """A scanned string: text (None when nothing was there), how it was quoted, Ruby trouble."""

    text: str | None
    quoted: str | None = None
    ruby_error: str | None = None


class _Parse:
    """State shared by every file of one parse: Ruby context and collected warnings."""

    def __init__(self, ctx: RubyContext) -> None:
        self.ctx = ctx
        self.warnings: list[Problem] = []


class _FileParser:
    """Parses one file's text (an included file gets its own _FileParser, as in Fluentd)."""

    def __init__(self, text: str, label: str, base_dir: str, state: _Parse, depth: int = 0) -> None:
        self.s = text
        self.pos = 0
        self.last: str | None = None   # text of the last successful skip/scan (Ruby's @ss[0])
        self.label = label
        self.base_dir = base_dir
        self.state = state
        self.depth = depth
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # --- StringScanner primitives -------------------------------------------------------------
    def skip(self, rx: re.Pattern[str] | str) -> bool:
        if isinstance(rx, str):
            if self.s.startswith(rx, self.pos):
                self.pos += len(rx)
                self.last = rx
                return True
            self.last = None
            return False
        m = rx.match(self.s, self.pos)
        if m is None:
            self.last = None
            return False
        self.pos = m.end()
        self.last = m.group(0)
        return True

    def scan(self, rx: re.Pattern[str]) -> str | None:
        return self.last if self.skip(rx) else None

    def eof(self) -> bool:
        return self.pos >= len(self.s)

    def spacing(self) -> bool:
        return self.skip(lit.SPACING_RE)

    def line_end(self) -> bool:
        return self.skip(lit.LINE_END_RE)

    # --- locations and errors -----------------------------------------------------------------
    def loc(self, pos: int) -> Location:
        return Location(self.label, bisect.bisect_right(self._line_starts, pos))

    def error_loc(self) -> Location:
        # Fluentd's error_sample counts a position just past a newline as the end of that line.
        pos = self.pos
        if pos > 0 and pos <= len(self.s) and self.s[pos - 1] == "\n":
            pos -= 1
        return self.loc(pos)

    def error(self, message: str) -> ConfigParseError:
        return ConfigParseError(message, self.error_loc())

    def warn(self, message: str, pos: int) -> None:
        self.state.warnings.append(Problem(message, self.loc(pos)))

    # --- elements -----------------------------------------------------------------------------
    def parse_element(self, root: bool, name: str | None, attrs: dict[str, Attr],
                      elems: list[Element]) -> None:
        while True:
            self.spacing()
            if self.eof():
                if root:
                    return
                raise self.error(f"expected end tag '</{name}>' but got end of file")
            start = self.pos
            if self.skip("</"):
                end_name = self.scan(lit.ELEMENT_NAME_RE)
                self.spacing()
                if not self.skip(">"):
                    raise self.error("expected character in tag name")
                if not self.line_end():
                    raise self.error("expected end of line after end tag")
                if end_name != name:
                    raise self.error("unmatched end tag")
                return
            if self.skip("<"):
                self.parse_section(start, elems)
            elif root and self.skip(lit.INCLUDE_RE):
                if not (self.last or "").startswith("@"):
                    self.warn("'include' is deprecated. Use '@include' instead", start)
                self.parse_include(attrs, elems)
            else:
                self.parse_param(root, name, start, attrs, elems)

    def parse_section(self, start: int, elems: list[Element]) -> None:
        name = self.scan(lit.ELEMENT_NAME_RE)
        self.spacing()
        arg = self.scan_string(lit.ARG_BOUNDARY)
        self.spacing()
        if not self.skip(">"):
            raise self.error("expected '>'")
        if not self.line_end():
            raise self.error("expected end of line after tag")
        if arg.ruby_error:
            self.warn(arg.ruby_error, start)
        element = Element(name or "", arg.text or "", location=self.loc(start))
        self.parse_element(False, name, element.attrs, element.elements)
        elems.append(element)

    def parse_param(self, root: bool, section: str | None, start: int, attrs: dict[str, Attr],
                    elems: list[Element]) -> None:
        key = self.scan_string(lit.SPACING).text or ""
        location = self.loc(start)
        if not self.skip(lit.SPACING_WITHOUT_COMMENT_RE):
            raise self.error("expected end of line")  # e.g. `"key"value`; Ruby crashes here
        if "\n" in (self.last or "") or self.eof():
            attrs[key] = Attr("", location)   # a key alone on its line (flags like `enable_ruby`)
            return
        if key == "@include":
            self.parse_include(attrs, elems)
            return
        if key.startswith("@") and key not in RESERVED_PARAMS:
            if root or section in ELEM_SYMBOLS:
                raise self.error("'@' is the system reserved prefix. "
                                 f"Don't use '@' prefix parameter in the configuration: {key}")
            self.warn("'@' is the system reserved prefix. It works in the nested configuration "
                      f"for now but it will be rejected: {key}", start)
        value = self.parse_literal()
        if not self.line_end():
            raise self.error("expected end of line")
        attrs[key] = Attr(value.text if value.text is not None else "", location, value.quoted,
                          value.ruby_error)

    # --- @include -----------------------------------------------------------------------------
    def parse_include(self, attrs: dict[str, Attr], elems: list[Element]) -> None:
        start = self.pos
        uri = self.scan_string(lit.LINE_END)
        if uri.ruby_error:
            raise ConfigParseError(f"cannot resolve @include path: {uri.ruby_error}", self.loc(start))
        if uri.text is None or uri.text in (USE_NIL, USE_DEFAULT) and uri.quoted == '"':
            raise ConfigParseError("@include needs a path", self.loc(start))
        self.eval_include(attrs, elems, uri.text, self.loc(start))
        self.line_end()

    def eval_include(self, attrs: dict[str, Attr], elems: list[Element], uri: str,
                     location: Location) -> None:
        # Fluentd parses the target as a URI after turning spaces into '+', then decodes it as a
        # form component: '+' and %XX in a file name are decoded (a literal '+' becomes a space).
        plussed = uri.replace(" ", "+")
        scheme_m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", plussed)
        scheme = scheme_m.group(1).lower() if scheme_m else None
        if scheme == "file":
            raw_path = urllib.parse.urlsplit(plussed).path
        elif scheme is None or len(scheme) == 1:   # plain path, or a Windows drive letter
            raw_path = plussed
        else:
            raise ConfigParseError(f"including configuration over {scheme} is not supported: {uri}"
                                   if scheme not in ("http", "https") else
                                   f"including configuration over http is not supported: {uri}",
                                   location)
        path = urllib.parse.unquote_plus(raw_path)
        if path.startswith("/"):
            pattern = path
        else:
            pattern = os.path.abspath(os.path.join(self.base_dir, path))
        if self.depth >= MAX_INCLUDE_DEPTH:
            raise ConfigParseError(f"include error {uri} - @include nested more than "
                                   f"{MAX_INCLUDE_DEPTH} levels (does a file include itself?)",
                                   location)
        # A glob matching nothing (or a missing plain file) includes nothing, as in Fluentd.
        entries = sorted(glob.glob(pattern, recursive=True))
        if not entries and not glob.has_magic(pattern):
            # Fluentd says nothing here; a mistyped path would silently drop part of the pipeline.
            # A pattern (conf.d/*.conf) matching nothing is a normal empty directory: no warning.
            self.state.warnings.append(Problem(
                f"@include {uri} at {location}: {pattern} does not exist, so nothing was included "
                "(Fluentd includes nothing either)", location))
        for entry in entries:
            text = _read_config(entry, lambda msg: ConfigParseError(f"include error {uri} - {msg}",
                                                                    location))
            sub = _FileParser(text, entry, os.path.dirname(entry), self.state, self.depth + 1)
            sub.parse_element(True, None, attrs, elems)

    # --- literals -----------------------------------------------------------------------------
    def parse_literal(self) -> _Value:
        self.skip(lit.SPACING_WITHOUT_COMMENT_RE)
        if self.skip("["):
            return self.scan_json(True)
        if self.skip("{"):
            return self.scan_json(False)
        return self.scan_string(lit.LINE_END)

    def scan_string(self, boundary: str) -> _Value:
        if self.skip('"'):
            return self.scan_double_quoted()
        if self.skip("'"):
            return self.scan_single_quoted()
        text = self.scan(lit.nonquoted_re(boundary))
        return _Value(text or None)

    def scan_single_quoted(self) -> _Value:
        out: list[str] = []
        s = self.s
        while True:
            c = s[self.pos] if self.pos < len(s) else ""
            if c == "'":
                self.pos += 1
                return _Value("".join(out), "'")
            if c == "\\" and s.startswith(("\\'", "\\\\"), self.pos):
                out.append(s[self.pos + 1])
                self.pos += 2
            elif c and c != "\n":   # Ruby's /./: a single-quoted value cannot span lines
                out.append(c)
                self.pos += 1
            else:
                raise self.error("unexpected end of file in a single quoted string")

    def scan_double_quoted(self) -> _Value:
        out: list[str] = []
        s = self.s
        is_nil = is_default = False
        ruby_error: str | None = None
        while True:
            c = s[self.pos] if self.pos < len(s) else ""
            if c == '"':
                self.pos += 1
                break
            m = lit.DQ_CHAR_BEFORE_EOL_RE.match(s, self.pos)
            if m:
                # A character followed by a line break is kept with the break; a backslash there is
                # a line continuation and both disappear.
                if c != "\\":
                    out.append(m.group(0))
                self.pos = m.end()
            elif c == "\\" and self.pos + 1 < len(s) and s[self.pos + 1] != "\n":
                try:
                    out.append(lit.double_quoted_escape(s[self.pos + 1]))
                except lit.EscapeError as e:
                    self.pos += 2
                    raise self.error(str(e)) from None
                self.pos += 2
            elif s.startswith("#{", self.pos):
                text, kind, err = self.embedded_code()
                is_nil = is_nil or kind == "nil"
                is_default = is_default or kind == "default"
                ruby_error = ruby_error or err
                out.append(text)
            elif c and c != "\n":
                out.append(c)
                self.pos += 1
            else:
                raise self.error("unexpected end of file in a double quoted string")
        if is_nil:
            return _Value(USE_NIL, '"', ruby_error)
        if is_default:
            return _Value(USE_DEFAULT, '"', ruby_error)
        return _Value("".join(out), '"', ruby_error)

    def embedded_code(self) -> tuple[str, str | None, str | None]:
        """At `#{`: evaluate up to the matching `}`. Returns (text, nil/default marker, error)."""
        code_start = self.pos + 2
        end = find_code_end(self.s, code_start)
        if end < 0:
            self.pos = len(self.s)
            raise self.error("expected end of embedded code but $end")
        code = self.s[code_start:end]
        self.pos = end + 1
        try:
            return to_s(evaluate(code, self.state.ctx)), None, None
        except SetNil:
            return "", "nil", None
        except SetDefault:
            return "", "default", None
        except RubyRuntimeError as e:
            raise ConfigParseError(f"embedded Ruby #{{{code}}} failed: {e}", self.error_loc()) from None
        except Unsupported as e:
            raw = "#{" + code + "}"
            return raw, None, f"embedded Ruby expression is not supported: {raw} ({e})"

    def scan_json(self, is_array: bool) -> _Value:
        # Fluentd reads one character at a time and stops at the first point where the text so far
        # parses as JSON; a `#` is a comment only if the JSON before it is complete once closed.
        buffer = "[" if is_array else "{"
        closer = "]" if is_array else "}"
        line = ""
        s = self.s
        ruby_error: str | None = None
        result: object = None
        found = False
        while not found and self.pos < len(s):
            c = s[self.pos]
            self.pos += 1
            if c == "#":
                head = line.rstrip(" \t\n\v\f\r\0")
                if head.endswith(","):
                    head = head[:-1]
                if _json_ok(buffer + head + closer):
                    nl = s.find("\n", self.pos)
                    self.pos = len(s) if nl < 0 else nl + 1
                    buffer += line + "\n"
                    line = ""
                elif lit.JSON_EMBED_RE.match(s, self.pos):
                    self.pos -= 1
                    text, _kind, err = self.embedded_code()
                    ruby_error = ruby_error or err
                    line += text
                else:
                    line += "#"
                continue
            if c == "\n":
                buffer += line + "\n"
                line = ""
                continue
            line += c
            if c == closer:   # the outer value can only become complete here
                try:
                    result = lit.json_parse(buffer + line)
                    found = True
                except ValueError:
                    pass
        if not found:
            raise self.error(f"got incomplete JSON {'array' if is_array else 'hash'} configuration")
        return _Value(lit.json_dump(result), None, ruby_error)


def _json_ok(text: str) -> bool:
    try:
        lit.json_parse(text)
        return True
    except ValueError:
        return False


def _read_config(path: str, make_error: Callable[[str], ConfigParseError]) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        where = "io_fread" if isinstance(e, IsADirectoryError) else "rb_sysopen"
        raise make_error(f"{e.strerror} @ {where} - {path}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigParseError("invalid byte sequence in UTF-8", Location(path, line)) from None


def _context(env: Mapping[str, str] | None, hostname: str | None,
             worker_id: int | str | None) -> RubyContext:
    return RubyContext(env=os.environ if env is None else env,
                       hostname=socket.gethostname() if hostname is None else hostname,
                       worker_id=str(0 if worker_id is None else worker_id))


def _parse_text(text: str, label: str, base_dir: str, ctx: RubyContext) -> tuple[Element, list[Problem]]:
    state = _Parse(ctx)
    parser = _FileParser(text, label, base_dir, state)
    root = Element("ROOT", "", location=Location(label, 1))
    parser.parse_element(True, None, root.attrs, root.elements)
    parser.spacing()
    if not parser.eof():
        raise parser.error("expected EOF")   # reached after a stray `</>` at top level
    return root, state.warnings


def parse_config_string_with_warnings(
        text: str, *, name: str = "<string>", base_dir: str | None = None,
        env: Mapping[str, str] | None = None, hostname: str | None = None,
        worker_id: int | str | None = None) -> tuple[Element, list[Problem]]:
    """Like parse_config_string, also returning the warnings Fluentd would log while parsing."""
    return _parse_text(text, name, os.getcwd() if base_dir is None else base_dir,
                       _context(env, hostname, worker_id))


def parse_config_file_with_warnings(
        path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
        hostname: str | None = None,
        worker_id: int | str | None = None) -> tuple[Element, list[Problem]]:
    """Like parse_config_file, also returning the warnings Fluentd would log while parsing."""
    label = os.fspath(path)

    def make_error(message: str) -> ConfigParseError:
        return ConfigParseError(f"cannot read config file: {message}", Location(label, 0))

    text = _read_config(label, make_error)
    return _parse_text(text, label, os.path.dirname(label), _context(env, hostname, worker_id))


def parse_config_string(text: str, *, name: str = "<string>", base_dir: str | None = None,
                        env: Mapping[str, str] | None = None, hostname: str | None = None,
                        worker_id: int | str | None = None) -> Element:
    """Parse config text. Relative @include paths resolve against base_dir (default: cwd)."""
    return parse_config_string_with_warnings(text, name=name, base_dir=base_dir, env=env,
                                             hostname=hostname, worker_id=worker_id)[0]


def parse_config_file(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
                      hostname: str | None = None, worker_id: int | str | None = None) -> Element:
    """Parse a config file (UTF-8) with its @includes expanded. Raises ConfigParseError."""
    return parse_config_file_with_warnings(path, env=env, hostname=hostname, worker_id=worker_id)[0]
