"""The small part of Ruby that Fluentd configs embed in double-quoted values as `#{...}`.

We find where the code ends the way Ruby would and evaluate a safe subset (no eval): see _Compiler."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kawa.config import ruby_builtins as builtins
# Re-exported: the parser and tests import the whole embedded-Ruby API from this module.
from kawa.config.ruby_builtins import RubyRuntimeError, RubyValue, Unsupported, to_s

__all__ = ["RubyContext", "RubyRuntimeError", "RubyValue", "SetDefault", "SetNil", "Unsupported",
           "evaluate", "find_code_end", "to_s"]


class SetNil(Exception):
    """`use_nil` was evaluated: Fluentd makes the whole value nil (not a StandardError: no rescue)."""


class SetDefault(Exception):
    """`use_default` was evaluated: Fluentd makes the whole value the parameter's default."""


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
      | (?P<ident>[A-Za-z_]\w*(?:[?!](?!=))?)
      | (?P<op>\|\||&&|==|!=|::|[\[\](),.?:;=+!])
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
            raise Unsupported(f"syntax at {code[pos:].lstrip()[:20]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _unquote(kind: str, tok: str) -> str:
    body = tok[1:-1]
    if kind == "sq":
        return re.sub(r"\\([\\'])", r"\1", body)
    return re.sub(r"\\(.)", lambda m: _DQ_ESCAPES.get(m.group(1), m.group(1)), body, flags=re.DOTALL)


Scope = dict[str, RubyValue]
Compiled = Callable[[Scope], RubyValue]   # a compiled expression, run against the locals
# Fluentd prepends `hostname = Socket.gethostname` and `worker_id = ENV[...] || ''` to the code, so
# both are local variables the code may read or reassign.
_PRELUDE_LOCALS = ("hostname", "worker_id")
_LOCAL_NAME = re.compile(r"[a-z_]\w*")   # Capitalised names are Ruby constants, `x?` is a method
_CONSTANTS: dict[str, RubyValue] = {"true": True, "false": False, "nil": None}
# Ruby's `(IPAddr.new(x) rescue y)` rescues StandardError; our stand-in for those is RubyRuntimeError.
_RESCUABLE = (RubyRuntimeError,)


class _Compiler:
    """Recursive descent over statements `a; b`, local assignment, `x rescue y`, `?:`, `||`, `&&`,
    `==`/`!=`, `+`, `!`, literals, ENV, File.join, Dir.pwd, IPAddr.new, Socket.gethostname,
    use_nil/use_default and a few methods (ruby_builtins.METHODS).

    Each rule returns a thunk reading a per-evaluation scope of locals, so `||`, `?:` and `rescue`
    evaluate lazily as Ruby does (an unset ENV on the left of `|| use_nil` must fire use_nil, a set
    one must not). Like Ruby's parser, a name is a local variable once an assignment to it was seen."""

    def __init__(self, tokens: list[tuple[str, str]], ctx: RubyContext) -> None:
        self.toks = tokens
        self.i = 0
        self.ctx = ctx
        self.locals: set[str] = set(_PRELUDE_LOCALS)

    def peek(self, ahead: int = 0) -> tuple[str, str] | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self, text: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (text is not None and tok[1] != text):
            found = "end of code" if tok is None else repr(tok[1])
            raise Unsupported(f"syntax: expected {text or 'more code'!r}, found {found}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] in ("op", "ident") and tok[1] == text:
            self.i += 1
            return True
        return False

    def program(self) -> Compiled:
        body = self.statements()
        if self.peek() is not None:
            raise Unsupported(f"syntax at {self.peek()[1]!r}")  # type: ignore[index]
        return body

    def statements(self) -> Compiled:
        """`a; b; c` -> value of c (nil when empty)."""
        stmts: list[Compiled] = []
        while self.peek() is not None and self.peek() != ("op", ")"):
            if self.accept(";"):
                continue
            stmts.append(self.statement())
            if not self.accept(";"):
                break
        return (lambda st: lambda scope: _run_all(st, scope))(stmts)

    def statement(self) -> Compiled:
        tok, nxt = self.peek(), self.peek(1)
        if tok is not None and nxt == ("op", "=") and _LOCAL_NAME.fullmatch(tok[1]) and tok[1] not in _CONSTANTS:
            name = tok[1]
            self.i += 2
            self.locals.add(name)    # Ruby: the name is a local from here on, even in its own value
            value = self.statement()
            return lambda scope: _assign(scope, name, value(scope))
        body = self.ternary()
        while self.accept("rescue"):
            body = (lambda b, r: lambda scope: _rescue(b, r, scope))(body, self.ternary())
        return body

    def ternary(self) -> Compiled:
        cond = self.binary(0)
        if not self.accept("?"):
            return cond
        yes = self.ternary()
        self.take(":")
        no = self.ternary()
        return lambda scope: yes(scope) if _truthy(cond(scope)) else no(scope)

    # lowest to highest; all left-associative
    _LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",), ("==", "!="), ("+",))

    def binary(self, level: int) -> Compiled:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in self._LEVELS[level]:
            self.i += 1
            right = self.binary(level + 1)
            left = _BINARY_OPS[tok[1]](left, right)
        return left

    def unary(self) -> Compiled:
        if self.accept("!"):
            inner = self.unary()
            return lambda scope: not _truthy(inner(scope))
        return self.postfix()

    def postfix(self) -> Compiled:
        value = self.primary()
        while self.accept("."):
            _, name = self.take()
            if name not in builtins.METHODS:
                raise Unsupported(f"method .{name}")
            args = self.arguments() if self.accept("(") else []
            value = (lambda v, m, a: lambda scope: builtins.call(v(scope), m, [x(scope) for x in a]))(
                value, name, args)
        return value

    def arguments(self) -> list[Compiled]:
        """After `(`: comma-separated expressions up to `)`."""
        args: list[Compiled] = []
        while not self.accept(")"):
            args.append(self.ternary())
            if not self.accept(","):
                self.take(")")
                break
        return args

    def primary(self) -> Compiled:
        kind, text = self.take()
        if kind in ("sq", "dq"):
            lit: RubyValue = _unquote(kind, text)
            return lambda scope: lit
        if kind == "int":
            num = int(text)
            return lambda scope: num
        if kind == "op" and text == "(":
            inner = self.statements()
            self.take(")")
            return inner
        if kind != "ident":
            raise Unsupported(f"syntax at {text!r}")
        if text in self.locals:
            return lambda scope: scope.get(text)
        if text in _CONSTANTS:
            const = _CONSTANTS[text]
            return lambda scope: const
        if text == "use_nil":
            return _raise_nil
        if text == "use_default":
            return _raise_default
        if text == "ENV":
            return self.env_access()
        if text in builtins.CLASS_METHODS:
            if not self.accept("."):
                self.take("::")
            _, method = self.take()
            if method not in builtins.CLASS_METHODS[text]:
                raise Unsupported(f"{text}.{method}")
            args = self.arguments() if self.accept("(") else []
            ctx = self.ctx
            return lambda scope: builtins.class_call(text, method, [a(scope) for a in args], ctx.hostname)
        raise Unsupported(f"name {text}")

    def env_access(self) -> Compiled:
        env = self.ctx.env
        if self.accept("["):
            key = self.ternary()
            self.take("]")
            return lambda scope: env.get(_env_key(key(scope)))
        self.take(".")
        _, method = self.take()
        if method != "fetch":
            raise Unsupported(f"ENV.{method}")
        self.take("(")
        args = self.arguments()
        if not 1 <= len(args) <= 2:
            raise Unsupported(f"ENV.fetch with {len(args)} arguments")
        key, default = args[0], (args[1] if len(args) == 2 else None)

        def fetch(scope: Scope) -> RubyValue:
            name = _env_key(key(scope))
            if name in env:
                return env[name]
            if default is not None:
                return default(scope)
            raise RubyRuntimeError(f'key not found: "{name}"')

        return fetch


_BINARY_OPS: dict[str, Callable[[Compiled, Compiled], Compiled]] = {
    "||": lambda a, b: lambda scope: v if _truthy(v := a(scope)) else b(scope),
    "&&": lambda a, b: lambda scope: b(scope) if _truthy(v := a(scope)) else v,
    "==": lambda a, b: lambda scope: builtins.equal(a(scope), b(scope)),
    "!=": lambda a, b: lambda scope: not builtins.equal(a(scope), b(scope)),
    "+": lambda a, b: lambda scope: builtins.plus(a(scope), b(scope)),
}


def _run_all(stmts: list[Compiled], scope: Scope) -> RubyValue:
    value: RubyValue = None
    for stmt in stmts:
        value = stmt(scope)
    return value


def _assign(scope: Scope, name: str, value: RubyValue) -> RubyValue:
    scope[name] = value
    return value


def _rescue(body: Compiled, fallback: Compiled, scope: Scope) -> RubyValue:
    try:
        return body(scope)
    except _RESCUABLE:
        return fallback(scope)


def _truthy(value: RubyValue) -> bool:
    return value is not None and value is not False


def _env_key(key: RubyValue) -> str:
    if not isinstance(key, str):
        raise RubyRuntimeError(f"no implicit conversion of {builtins.class_name(key)} into String")
    return key


def _raise_nil(scope: Scope) -> RubyValue:
    raise SetNil()


def _raise_default(scope: Scope) -> RubyValue:
    raise SetDefault()


def evaluate(code: str, ctx: RubyContext) -> RubyValue:
    """Evaluate embedded code. Raises Unsupported, SetNil, SetDefault or RubyRuntimeError."""
    tokens = _tokenize(code)
    if not tokens:
        return None  # "#{}" is an empty string in Ruby
    program = _Compiler(tokens, ctx).program()
    return program({"hostname": ctx.hostname, "worker_id": ctx.worker_id})
