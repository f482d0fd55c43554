"""The small part of Ruby that Fluentd configs embed in double-quoted values as `#{...}`.

We find where the code ends the way Ruby would and evaluate only ENV/hostname/worker_id forms."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class Unsupported(Exception):
    """The expression uses Ruby beyond the subset kawa evaluates."""


class SetNil(Exception):
    """`use_nil` was evaluated: Fluentd makes the whole value nil."""


class SetDefault(Exception):
    """`use_default` was evaluated: Fluentd makes the whole value the parameter's default."""


class RubyRuntimeError(Exception):
    """Ruby itself would raise while evaluating (e.g. ENV.fetch of an unset variable)."""


@dataclass(frozen=True, slots=True)
class RubyContext:
    """What embedded Ruby can see: the environment, `hostname` and `worker_id`."""

    env: Mapping[str, str]
    hostname: str
    worker_id: str


def find_code_end(text: str, start: int) -> int:
    """Index of the `}` closing the `#{` whose code starts at `start`, or -1.

    Fluentd asks Ripper for the first `}` that makes `"#{code}"` valid Ruby; a brace counter that
    skips string literals and comments finds the same `}` for any code a config realistically holds.
    """
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        elif c == "'":
            i = _skip_single_quoted(text, i + 1)
            if i < 0:
                return -1
            continue
        elif c == '"':
            i = _skip_double_quoted(text, i + 1)
            if i < 0:
                return -1
            continue
        elif c == "#":
            nl = text.find("\n", i)
            if nl < 0:
                return -1
            i = nl
        i += 1
    return -1


def _skip_single_quoted(text: str, i: int) -> int:
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "'":
            return i + 1
        i += 1
    return -1


def _skip_double_quoted(text: str, i: int) -> int:
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        if text.startswith("#{", i):
            end = find_code_end(text, i + 2)
            if end < 0:
                return -1
            i = end + 1
            continue
        i += 1
    return -1


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<sq>'(?:[^'\\]|\\.)*')
      | (?P<dq>"(?:[^"\\#]|\\.|\#(?!\{))*")
      | (?P<int>-?\d+)
      | (?P<ident>[A-Za-z_]\w*[?!]?)
      | (?P<op>\|\||::|[\[\](),.?:])
    )""",
    re.VERBOSE | re.DOTALL,
)

_DQ_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "b": "\b", "0": "\0", "e": "\x1b", "s": " ",
               "a": "\a", "v": "\v"}


def _tokenize(code: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    code = code.rstrip()
    while pos < len(code):
        m = _TOKEN.match(code, pos)
        if m is None or m.end() == pos:
            raise Unsupported(code)
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _unquote(kind: str, tok: str) -> str:
    body = tok[1:-1]
    if kind == "sq":
        return re.sub(r"\\([\\'])", r"\1", body)
    return re.sub(r"\\(.)", lambda m: _DQ_ESCAPES.get(m.group(1), m.group(1)), body, flags=re.DOTALL)


RubyValue = str | int | bool | None


def to_s(value: RubyValue) -> str:
    """Ruby's `"#{value}"`: nil is empty, booleans are true/false."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


Thunk = Callable[[], RubyValue]


class _Compiler:
    """Recursive descent over: literals, ENV[..], ENV.fetch(..), hostname, worker_id,
    Socket.gethostname, use_nil, use_default, `.nil?`/`.to_s`/`.empty?`, `||`, `a ? b : c`, (..).

    Each rule returns a thunk, so `||` and `?:` evaluate lazily as Ruby does (an unset ENV on the
    left of `|| use_nil` must fire use_nil, a set one must not)."""

    def __init__(self, tokens: list[tuple[str, str]], ctx: RubyContext) -> None:
        self.toks = tokens
        self.i = 0
        self.ctx = ctx

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, text: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (text is not None and tok[1] != text):
            raise Unsupported()
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] in ("op", "ident") and tok[1] == text:
            self.i += 1
            return True
        return False

    def program(self) -> Thunk:
        thunk = self.ternary()
        if self.peek() is not None:
            raise Unsupported()
        return thunk

    def ternary(self) -> Thunk:
        cond = self.or_expr()
        if not self.accept("?"):
            return cond
        yes = self.ternary()
        self.take(":")
        no = self.ternary()
        return lambda: yes() if _truthy(cond()) else no()

    def or_expr(self) -> Thunk:
        left = self.postfix()
        while self.accept("||"):
            right = self.postfix()
            left = (lambda a, b: lambda: _or(a, b))(left, right)
        return left

    def postfix(self) -> Thunk:
        value = self.primary()
        while self.accept("."):
            _, name = self.take()
            if name == "nil?":
                value = (lambda v: lambda: v() is None)(value)
            elif name == "to_s":
                value = (lambda v: lambda: to_s(v()))(value)
            elif name == "empty?":
                value = (lambda v: lambda: _empty(v()))(value)
            else:
                raise Unsupported()
        return value

    def primary(self) -> Thunk:
        kind, text = self.take()
        if kind in ("sq", "dq"):
            lit: RubyValue = _unquote(kind, text)
            return lambda: lit
        if kind == "int":
            num = int(text)
            return lambda: num
        if kind == "op" and text == "(":
            inner = self.ternary()
            self.take(")")
            return inner
        if kind != "ident":
            raise Unsupported()
        if text == "ENV":
            return self.env_access()
        if text == "Socket":
            if not self.accept("."):
                self.take("::")
            self.take("gethostname")
            return lambda: self.ctx.hostname
        if text == "hostname":
            return lambda: self.ctx.hostname
        if text == "worker_id":
            return lambda: self.ctx.worker_id
        consts: dict[str, RubyValue] = {"true": True, "false": False, "nil": None}
        if text in consts:
            const = consts[text]
            return lambda: const
        if text == "use_nil":
            return _raise_nil
        if text == "use_default":
            return _raise_default
        raise Unsupported()

    def env_access(self) -> Thunk:
        env = self.ctx.env
        if self.accept("["):
            key = self.ternary()
            self.take("]")
            return lambda: env.get(_env_key(key()))
        self.take(".")
        self.take("fetch")
        self.take("(")
        key = self.ternary()
        default = self.ternary() if self.accept(",") else None
        self.take(")")

        def fetch() -> RubyValue:
            name = _env_key(key())
            if name in env:
                return env[name]
            if default is not None:
                return default()
            raise RubyRuntimeError(f'key not found: "{name}"')

        return fetch


def _truthy(value: RubyValue) -> bool:
    return value is not None and value is not False


def _or(left: Thunk, right: Thunk) -> RubyValue:
    value = left()
    return value if _truthy(value) else right()


def _empty(value: RubyValue) -> RubyValue:
    if not isinstance(value, str):
        raise Unsupported()
    return value == ""


def _env_key(key: RubyValue) -> str:
    if not isinstance(key, str):
        raise Unsupported()  # Ruby raises TypeError; we report it as unsupported Ruby
    return key


def _raise_nil() -> RubyValue:
    raise SetNil()


def _raise_default() -> RubyValue:
    raise SetDefault()


def evaluate(code: str, ctx: RubyContext) -> RubyValue:
    """Evaluate embedded code. Raises Unsupported, SetNil, SetDefault or RubyRuntimeError."""
    tokens = _tokenize(code)
    if not tokens:
        return None  # "#{}" is an empty string in Ruby
    return _Compiler(tokens, ctx).program()()
