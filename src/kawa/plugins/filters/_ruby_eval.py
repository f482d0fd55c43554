"""The running half of kawa's safe evaluator for Ruby expressions in `${...}` (record_transformer with
enable_ruby, record_modifier): an interpreter over Python values with Ruby semantics.

No eval/exec: _ruby_parse accepts only known names and methods (a ConfigError at configure time).
Runtime errors mirror Ruby's (NoMethodError on nil, ZeroDivisionError).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Callable

from kawa.ruby_values import ruby_float_to_s, ruby_inspect_value, ruby_to_s
# Re-exported: callers parse and run expressions through this one module.
from kawa.plugins.filters._ruby_parse import _matching_brace, parse_expression  # noqa: F401
from kawa.timeformat import TimeFormatter

NS = 1_000_000_000


class RubyError(Exception):
    """A Ruby runtime error; `ruby_class` is what Fluentd's log would name (NoMethodError, ...)."""

    def __init__(self, message: str, ruby_class: str = "NoMethodError") -> None:
        super().__init__(message)
        self.ruby_class = ruby_class


class RubyTime:
    """Ruby's Time (local time, as Fluentd's Time.at(time)): to_i, to_f, strftime, to_s ..."""

    __slots__ = ("ns",)
    _formatters: dict[str, Callable[[int], Any]] = {}

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def strftime(self, fmt: str) -> str:
        f = RubyTime._formatters.get(fmt)
        if f is None:
            f = RubyTime._formatters[fmt] = TimeFormatter(fmt, localtime=True).format
        return str(f(self.ns))

    def __str__(self) -> str:
        return self.strftime("%Y-%m-%d %H:%M:%S %z")


# ---------------------------------------------------------------------------------------------- values
def ruby_class(value: Any) -> str:
    if value is None:
        return "NilClass"
    if value is True:
        return "TrueClass"
    if value is False:
        return "FalseClass"
    for py, rb in ((str, "String"), (int, "Integer"), (float, "Float"), (dict, "Hash"), (list, "Array"),
                   (RubyTime, "Time")):
        if isinstance(value, py):
            return rb
    return type(value).__name__


def _no_method(name: str, recv: Any) -> RubyError:
    shown = "nil" if recv is None else ("true" if recv is True else "false" if recv is False else
                                        f"an instance of {ruby_class(recv)}")
    if recv is None or isinstance(recv, bool):
        return RubyError(f"undefined method `{name}' for {shown}:{ruby_class(recv)}")
    return RubyError(f"undefined method `{name}' for {ruby_inspect_value(recv)}:{ruby_class(recv)}")


def to_s(value: Any) -> str:
    return str(value) if isinstance(value, RubyTime) else ruby_to_s(value)


def _to_i(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        if value is None:
            return 0
        raise _no_method("to_i", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise RubyError(f"{ruby_float_to_s(value)}", "FloatDomainError")
        return int(value)
    if isinstance(value, RubyTime):
        return value.ns // NS
    if isinstance(value, str):
        m = re.match(r"\s*([+-]?\d[\d_]*)", value)
        return int(m.group(1).replace("_", "")) if m else 0
    raise _no_method("to_i", value)


def _to_f(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise _no_method("to_f", value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, RubyTime):
        return value.ns / NS
    if isinstance(value, str):
        m = re.match(r"\s*([+-]?(?:\d[\d_]*)(?:\.\d+)?(?:[eE][+-]?\d+)?)", value)
        return float(m.group(1).replace("_", "")) if m else 0.0
    raise _no_method("to_f", value)


def _arith(op: str, a: Any, b: Any) -> Any:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool) or a is None:
        raise _no_method(op, a)
    if isinstance(a, str):
        if op == "+" and isinstance(b, str):
            return a + b
        if op == "*" and isinstance(b, int):
            return a * b
        if op == "%":
            return a % (tuple(b) if isinstance(b, list) else b)
        raise RubyError(f"no implicit conversion of {ruby_class(b)} into String", "TypeError")
    if isinstance(a, list) and op == "+" and isinstance(b, list):
        return a + b
    if not isinstance(a, num):
        raise _no_method(op, a)
    if not isinstance(b, num):
        raise RubyError(f"{ruby_class(b)} can't be coerced into {ruby_class(a)}", "TypeError")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "**":
        return a ** b
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            raise RubyError("divided by 0", "ZeroDivisionError")
        return a // b if op == "/" else a % b
    if op == "/":
        return a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a) * math.copysign(1, b))
    return math.fmod(a, b) if (a < 0) == (b < 0) else a - b * math.floor(a / b)


def _compare(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("=~", "!~"):
        if not isinstance(b, re.Pattern):
            a, b = b, a
        m = b.search(a) if isinstance(a, str) else None
        if op == "!~":
            return m is None
        return None if m is None else m.start()
    ok = (isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
          and not isinstance(b, bool)) or (isinstance(a, str) and isinstance(b, str))
    if not ok:
        if a is None or isinstance(a, bool):
            raise _no_method(op, a)
        raise RubyError(f"comparison of {ruby_class(a)} with {ruby_inspect_value(b) if b is not None else 'nil'} "
                        "failed", "ArgumentError")
    if op == "<=>":
        return (a > b) - (a < b)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    return bool(a == b)


def truthy(value: Any) -> bool:
    return value is not None and value is not False


def _index(recv: Any, args: list[Any]) -> Any:
    if recv is None:
        raise _no_method("[]", None)
    if isinstance(recv, dict):
        return recv.get(args[0]) if len(args) == 1 and not isinstance(args[0], (dict, list)) else None
    if isinstance(recv, (list, str)):
        if len(args) == 2:
            start, length = args
            if start > len(recv) or length < 0:
                return None
            return recv[start:start + length]
        key = args[0]
        if isinstance(recv, str) and isinstance(key, str):
            return key if key in recv else None
        if isinstance(recv, str) and isinstance(key, re.Pattern):
            m = key.search(recv)
            return m.group() if m else None
        if not isinstance(key, int) or isinstance(key, bool):
            raise RubyError(f"no implicit conversion of {ruby_class(key)} into Integer", "TypeError")
        return recv[key] if -len(recv) <= key < len(recv) else None
    if isinstance(recv, int):
        return (recv >> args[0]) & 1
    raise _no_method("[]", recv)


def _sub(recv: str, args: list[Any], count: int) -> str:
    pattern, repl = args[0], args[1] if len(args) > 1 else ""
    if not isinstance(repl, str):
        raise RubyError(f"no implicit conversion of {ruby_class(repl)} into String", "TypeError")
    if isinstance(pattern, str):
        return recv.replace(pattern, repl, count or -1)
    template = re.sub(r"\\(\d)", r"\\g<\1>", repl.replace("\\\\", "\x00")).replace("\x00", "\\\\")
    return pattern.sub(template, recv, count=count)


def _split(recv: str, args: list[Any]) -> list[str]:
    sep = args[0] if args else None
    if sep is None or sep == " ":
        return recv.split()
    parts = sep.split(recv) if isinstance(sep, re.Pattern) else recv.split(sep) if sep else list(recv)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _string_method(name: str, s: str, args: list[Any]) -> Any:
    table: dict[str, Callable[[], Any]] = {
        "upcase": s.upper, "downcase": s.lower, "capitalize": s.capitalize, "swapcase": s.swapcase,
        "strip": lambda: s.strip(" \t\n\v\f\r\0"), "lstrip": lambda: s.lstrip(" \t\n\v\f\r\0"),
        "rstrip": lambda: s.rstrip(" \t\n\v\f\r\0"), "chomp": lambda: s[:-2] if s.endswith("\r\n") else
        s[:-1] if s.endswith(("\n", "\r")) else s, "reverse": lambda: s[::-1],
        "length": lambda: len(s), "size": lambda: len(s), "bytesize": lambda: len(s.encode("utf-8", "surrogateescape")),
        "empty?": lambda: s == "", "include?": lambda: args[0] in s,
        "start_with?": lambda: any(s.startswith(a) for a in args),
        "end_with?": lambda: any(s.endswith(a) for a in args),
        "gsub": lambda: _sub(s, args, 0), "sub": lambda: _sub(s, args, 1), "split": lambda: _split(s, args),
        "to_sym": lambda: s, "match?": lambda: args[0].search(s) is not None, "chars": lambda: list(s),
        "tr": lambda: s.translate(str.maketrans(args[0], args[1][:len(args[0])].ljust(len(args[0]),
                                                                                  args[1][-1:] or " "))),
    }
    fn = table.get(name)
    if fn is None:
        raise _no_method(name, s)
    return fn()


def call_method(recv: Any, name: str, args: list[Any]) -> Any:
    if name == "nil?":
        return recv is None
    if name in ("to_s", "inspect"):
        return to_s(recv) if name == "to_s" else ruby_inspect_value(recv)
    if name == "to_i":
        return _to_i(recv)
    if name == "to_f":
        return _to_f(recv)
    if name in ("==", "!="):
        return _compare(name, recv, args[0])
    if isinstance(recv, str):
        return _string_method(name, recv, args)
    if isinstance(recv, RubyTime):
        if name == "strftime":
            return recv.strftime(args[0])
        if name in ("year", "month", "day", "hour", "min", "sec"):
            return int(recv.strftime({"year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "min": "%M",
                                      "sec": "%S"}[name]))
        if name in ("usec", "nsec"):
            return recv.ns % NS // (1000 if name == "usec" else 1)
        if name == "iso8601":
            return recv.strftime("%Y-%m-%dT%H:%M:%S%:z")
        if name in ("utc", "localtime", "getutc"):
            return recv
    if isinstance(recv, (int, float)) and not isinstance(recv, bool):
        if name in ("round", "floor", "ceil"):
            digits = args[0] if args else 0
            if digits > 0:
                return round(recv, digits) if name == "round" else float(recv)
            fn = {"round": lambda v: int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5)),
                  "floor": math.floor, "ceil": math.ceil}[name]
            return int(fn(recv))
        if name == "abs":
            return abs(recv)
        if name in ("zero?", "positive?", "negative?"):
            return {"zero?": recv == 0, "positive?": recv > 0, "negative?": recv < 0}[name]
    if isinstance(recv, list):
        table = {"size": lambda: len(recv), "length": lambda: len(recv), "empty?": lambda: not recv,
                 "first": lambda: recv[0] if recv else None, "last": lambda: recv[-1] if recv else None,
                 "join": lambda: (args[0] if args else "").join(to_s(v) for v in recv),
                 "include?": lambda: any(_equal(v, args[0]) for v in recv), "compact": lambda: [v for v in recv if v is not None],
                 "reverse": lambda: recv[::-1], "sort": lambda: sorted(recv), "uniq": lambda: list(dict.fromkeys(recv))}
        if name in table:
            return table[name]()
    if isinstance(recv, dict):
        table = {"keys": lambda: list(recv), "values": lambda: list(recv.values()), "size": lambda: len(recv),
                 "length": lambda: len(recv), "empty?": lambda: not recv,
                 "key?": lambda: args[0] in recv, "has_key?": lambda: args[0] in recv,
                 "include?": lambda: args[0] in recv, "fetch": lambda: _fetch(recv, args),
                 "dig": lambda: _dig(recv, args), "to_json": lambda: __import__("kawa.plugins.formatters.json",
                                                                                 fromlist=["oj_dumps"]).oj_dumps(recv)}
        if name in table:
            return table[name]()
    if name == "dig" and isinstance(recv, list):
        return _dig(recv, args)
    raise _no_method(name, recv)


def _fetch(recv: dict[str, Any], args: list[Any]) -> Any:
    if args[0] in recv:
        return recv[args[0]]
    if len(args) > 1:
        return args[1]
    raise RubyError(f"key not found: {ruby_inspect_value(args[0])}", "KeyError")


def _dig(recv: Any, args: list[Any]) -> Any:
    for key in args:
        if recv is None:
            return None
        recv = _index(recv, [key])
    return recv


# ---------------------------------------------------------------------------------------------- interpreter
def evaluate(node: Any, env: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "var":
        return env[node[1]]
    if kind == "istr":
        return "".join(p if isinstance(p, str) else to_s(evaluate(p, env)) for p in node[1])
    if kind == "call":
        recv_node, name, arg_nodes = node[1], node[2], node[3]
        args = [evaluate(a, env) for a in arg_nodes]
        if recv_node[0] == "const":
            return _const_call(recv_node[1], name, args, env)
        return call_method(evaluate(recv_node, env), name, args)
    if kind == "index":
        if node[1][0] == "const" and node[1][1] == "ENV":
            return os.environ.get(evaluate(node[2][0], env))
        return _index(evaluate(node[1], env), [evaluate(a, env) for a in node[2]])
    if kind == "bin":
        op = node[1]
        if op in ("&&", "and"):
            left = evaluate(node[2], env)
            return evaluate(node[3], env) if truthy(left) else left
        if op in ("||", "or"):
            left = evaluate(node[2], env)
            return left if truthy(left) else evaluate(node[3], env)
        a, b = evaluate(node[2], env), evaluate(node[3], env)
        if op in ("==", "!=", "=~", "!~", "<", "<=", ">", ">=", "<=>"):
            return _compare(op, a, b)
        if op in ("+", "-", "*", "/", "%", "**"):
            return _arith(op, a, b)
        raise RubyError(f"undefined method `{op}' for {ruby_class(a)}")
    if kind == "tern":
        return evaluate(node[2] if truthy(evaluate(node[1], env)) else node[3], env)
    if kind == "not":
        return not truthy(evaluate(node[1], env))
    if kind == "neg":
        value = evaluate(node[1], env)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
        raise _no_method("-@", value)
    if kind == "array":
        return [evaluate(n, env) for n in node[1]]
    if kind == "hash":
        return {evaluate(k, env): evaluate(v, env) for k, v in node[1]}
    if kind == "undefined":
        raise RubyError(f"undefined local variable or method `{node[1]}'", "NameError")
    if kind == "const":
        raise RubyError(f"constant {node[1]} used as a value", "TypeError")
    raise AssertionError(f"BUG: unknown node {kind}")


def _const_call(const: str, name: str, args: list[Any], env: dict[str, Any]) -> Any:
    if const == "Time" and name == "at":
        value = args[0]
        if isinstance(value, RubyTime):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RubyError(f"can't convert {ruby_class(value)} into an exact number", "TypeError")
        return RubyTime(int(value * NS) if isinstance(value, float) else value * NS)
    if const == "Time" and name == "now":
        return RubyTime(env["__clock__"]())
    if const == "ENV" and name == "fetch":
        return os.environ.get(args[0], args[1] if len(args) > 1 else None)
    if const == "ENV" and name == "key?":
        return args[0] in os.environ
    raise _no_method(name, const)
