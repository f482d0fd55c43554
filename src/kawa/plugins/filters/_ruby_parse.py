"""The parsing half of kawa's safe Ruby-subset evaluator for `${...}` expressions: tokenizer and Pratt
parser into plain tuples; only the names and methods listed here parse, anything else is a ConfigError.
"""

from __future__ import annotations

import re
from typing import Any

from kawa.errors import ConfigError
from kawa.rubyregex import compile_ruby_regexp

VARIABLES = ("record", "tag", "time", "tag_parts", "tag_prefix", "tag_suffix", "hostname")
CONSTANTS = ("Time", "ENV")
# Kernel's private methods stay callable in Fluentd's cleanroom (it undefines public ones only), so a
# bare one of these is a call kawa does not run, not an undefined name.
_KERNEL_METHODS = frozenset((
    "rand", "srand", "format", "sprintf", "printf", "print", "puts", "p", "pp", "putc", "gets", "readline",
    "readlines", "sleep", "system", "exec", "spawn", "fork", "exit", "exit!", "abort", "at_exit", "raise", "fail",
    "loop", "lambda", "proc", "binding", "caller", "caller_locations", "catch", "throw", "eval", "require",
    "require_relative", "load", "open", "select", "test", "trap", "warn", "autoload", "block_given?",
    "local_variables", "global_variables", "syscall", "trace_var", "untrace_var", "set_trace_func",
    "object_id", "public_methods", "instance_eval", "define_singleton_method", "respond_to?", "method_missing",
    "__method__", "__dir__", "__callee__",
    # keywords: syntax kawa does not run
    "self", "if", "unless", "while", "until", "do", "end", "def", "class", "module", "begin", "rescue", "ensure",
    "case", "when", "then", "else", "elsif", "yield", "return", "break", "next", "redo", "retry", "super",
    "alias", "undef", "in", "for", "defined?",
))
# Any other lowercase name is, to Ruby, a method call on the cleanroom that fails per record (NameError):
# Fluentd starts with such a config (v0.12's `${name.downcase}` example) and errors each event.
_LOCAL_NAME = re.compile(r"[a-z_][A-Za-z0-9_]*")
METHODS = frozenset((
    "nil?", "to_s", "inspect", "to_i", "to_f", "upcase", "downcase", "capitalize", "swapcase", "strip", "lstrip",
    "rstrip", "chomp", "reverse", "length", "size", "bytesize", "empty?", "include?", "start_with?", "end_with?",
    "gsub", "sub", "split", "to_sym", "match?", "chars", "tr", "strftime", "year", "month", "day", "hour", "min",
    "sec", "usec", "nsec", "iso8601", "utc", "localtime", "getutc", "round", "floor", "ceil", "abs", "zero?",
    "positive?", "negative?", "first", "last", "join", "compact", "sort", "uniq", "keys", "values", "key?",
    "has_key?", "fetch", "dig", "to_json", "Time.at", "Time.now", "ENV.fetch", "ENV.key?",
))


# ---------------------------------------------------------------------------------------------- tokens
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*[?!]?)
  | (?P<ivar>@\w+|\$\w+)
  | (?P<op>\*\*|==|!=|=~|!~|<=>|<=|>=|&&|\|\||<<|>>|=>|::|\.\.|[-+*/%<>!?:.,()\[\]{}|&^=])
""", re.X)


def _tokenize(src: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(src):
        ch = src[i]
        if ch in "'\"":
            value, i = _read_string(src, i)
            out.append(("str", value))
            continue
        if ch == "/" and _operand_expected(out):
            end = i + 1
            while end < len(src) and src[end] != "/":
                end += 2 if src[end] == "\\" else 1
            flags_end = end + 1
            while flags_end < len(src) and src[flags_end] in "imx":
                flags_end += 1
            try:
                out.append(("regex", compile_ruby_regexp(src[i + 1:end], src[end + 1:flags_end])))
            except ValueError as exc:
                raise ConfigError(f"invalid regexp in `{src}`: {exc}") from None
            i = flags_end
            continue
        m = _TOKEN.match(src, i)
        if m is None:
            raise ConfigError(f"unsupported Ruby syntax at '{src[i:i + 10]}' in `{src}`")
        kind = m.lastgroup
        if kind == "num":
            text = m.group().replace("_", "")
            out.append(("num", float(text) if ("." in text or "e" in text.lower()) else int(text)))
        elif kind == "ident":
            out.append(("ident", m.group()))
        elif kind == "op":
            out.append(("op", m.group()))
        elif kind == "ivar":
            raise ConfigError(f"unsupported Ruby variable {m.group()} in `{src}`")
        i = m.end()
    out.append(("eof", None))
    return out


def _operand_expected(tokens: list[tuple[str, Any]]) -> bool:
    if not tokens:
        return True
    kind, value = tokens[-1]
    return kind == "op" and value not in (")", "]", "}")


_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "s": " ", "e": "\x1b", "a": "\a", "b": "\b",
                   "f": "\f", "v": "\v"}


def _read_string(src: str, i: int) -> tuple[Any, int]:
    """'...' (only \\' and \\\\ escapes) or "..." (escapes and #{} interpolation) -> str or ("istr", parts)."""
    quote = src[i]
    i += 1
    parts: list[Any] = []
    buf: list[str] = []
    while i < len(src):
        ch = src[i]
        if ch == quote:
            if buf or not parts:
                parts.append("".join(buf))
            return (parts[0] if len(parts) == 1 and isinstance(parts[0], str) else ("istr", parts)), i + 1
        if ch == "\\" and i + 1 < len(src):
            nxt = src[i + 1]
            if quote == "'":
                buf.append(nxt if nxt in "'\\" else "\\" + nxt)
            else:
                buf.append(_SIMPLE_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        if quote == '"' and src.startswith("#{", i):
            end = _matching_brace(src, i + 1)
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(parse_expression(src[i + 2:end]))
            i = end + 1
            continue
        buf.append(ch)
        i += 1
    raise ConfigError(f"unterminated string in `{src}`")


def _matching_brace(src: str, open_at: int) -> int:
    depth = 0
    i = open_at
    quote = None
    while i < len(src):
        ch = src[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ConfigError(f"unbalanced braces in `{src}`")


# ---------------------------------------------------------------------------------------------- parser
_BINARY = {"||": 1, "or": 1, "&&": 2, "and": 2, "==": 4, "!=": 4, "=~": 4, "!~": 4, "<=>": 4, "<": 5, "<=": 5,
           ">": 5, ">=": 5, "|": 6, "^": 6, "&": 7, "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10,
           "%": 10, "**": 12}
_TERNARY = 3


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.tokens = _tokenize(src)
        self.pos = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def next(self) -> tuple[str, Any]:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def accept(self, op: str) -> bool:
        kind, value = self.peek()
        if kind in ("op", "ident") and value == op:
            self.pos += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise ConfigError(f"expected '{op}' near '{self.peek()[1]}' in `{self.src}`")

    def expression(self, min_prec: int = 0) -> Any:
        left = self.unary()
        while True:
            kind, value = self.peek()
            if kind == "op" and value == "?" and min_prec <= _TERNARY:
                self.next()
                then = self.expression(_TERNARY)
                self.expect(":")
                other = self.expression(_TERNARY)
                left = ("tern", left, then, other)
                continue
            prec = _BINARY.get(value) if kind in ("op", "ident") else None
            if prec is None or prec < min_prec:
                return left
            self.next()
            right = self.expression(prec + (0 if value == "**" else 1))
            left = ("bin", value, left, right)

    def unary(self) -> Any:
        kind, value = self.peek()
        if kind == "op" and value == "!" or kind == "ident" and value == "not":
            self.next()
            return ("not", self.unary())
        if kind == "op" and value == "-":
            self.next()
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, value = self.next()
        if kind == "num":
            return ("lit", value)
        if kind == "str":
            return ("istr", value[1]) if isinstance(value, tuple) else ("lit", value)
        if kind == "regex":
            return ("lit", value)
        if kind == "ident":
            if value in ("nil", "true", "false"):
                return ("lit", {"nil": None, "true": True, "false": False}[value])
            if value in VARIABLES:
                return ("var", value)
            if value in CONSTANTS:
                return ("const", value)
            if _LOCAL_NAME.fullmatch(value) and value not in _KERNEL_METHODS and self.peek() != ("op", "("):
                return ("undefined", value)
            raise ConfigError(f"unsupported name '{value}' in `{self.src}`; enable_ruby supports "
                              f"{', '.join(VARIABLES)}, Time and ENV")
        if kind == "op" and value == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if kind == "op" and value == "[":
            return ("array", self.items("]"))
        if kind == "op" and value == "{":
            pairs = []
            while not self.accept("}"):
                key = self.expression()
                self.expect("=>")
                pairs.append((key, self.expression()))
                if not self.accept(","):
                    self.expect("}")
                    break
            return ("hash", pairs)
        raise ConfigError(f"unsupported Ruby syntax near '{value}' in `{self.src}`")

    def items(self, close: str) -> list[Any]:
        items = []
        while not self.accept(close):
            items.append(self.expression())
            if not self.accept(","):
                self.expect(close)
                break
        return items

    def postfix(self, node: Any) -> Any:
        while True:
            kind, value = self.peek()
            if kind == "op" and value in (".", "&."):
                self.next()
                kind, name = self.next()
                if kind != "ident":
                    raise ConfigError(f"expected a method name after '.' in `{self.src}`")
                if name not in METHODS and not (node[0] == "const" and f"{node[1]}.{name}" in METHODS):
                    raise ConfigError(f"unsupported method '{name}' in `{self.src}`; see the record_transformer "
                                      "docs for the Ruby kawa evaluates")
                args = self.items(")") if self.accept("(") else []
                node = ("call", node, name, args)
            elif kind == "op" and value == "[":
                self.next()
                node = ("index", node, self.items("]"))
            else:
                return node


def parse_expression(src: str) -> Any:
    parser = _Parser(src)
    node = parser.expression()
    if parser.peek()[0] != "eof":
        raise ConfigError(f"unsupported Ruby syntax near '{parser.peek()[1]}' in `{src}`")
    return node
