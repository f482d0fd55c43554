"""The Ruby built-ins Fluentd configs call inside `#{...}`: File.join, Dir.pwd, IPAddr, a few methods.

Values are Python str/int/bool/None plus IPAddr; an error Ruby would raise becomes RubyRuntimeError."""

from __future__ import annotations

import ipaddress
import os
import re

from kawa.ruby_values import ruby_to_s


class Unsupported(Exception):
    """The expression uses Ruby beyond the subset kawa evaluates; the message names the form."""


class RubyRuntimeError(Exception):
    """Ruby itself would raise (a StandardError: KeyError, TypeError, IPAddr::InvalidAddressError ...)."""


class IPAddr:
    """Ruby's IPAddr.new(text): an IPv4 or IPv6 address, `[v6]` brackets and `/prefix` allowed."""

    __slots__ = ("address",)

    def __init__(self, text: str) -> None:
        prefix, slash, length = text.partition("/")
        bracketed = prefix.startswith("[") and prefix.endswith("]")
        if bracketed:
            prefix = prefix[1:-1]
        try:
            address = ipaddress.ip_address(prefix)
            if bracketed and address.version != 6:
                raise RubyRuntimeError("address family mismatch")
            if slash:
                address = ipaddress.ip_network(f"{address}/{length}", strict=False).network_address
        except ValueError:
            raise RubyRuntimeError(f"invalid address: {text}") from None
        self.address = address

    def __str__(self) -> str:
        return str(self.address)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPAddr) and other.address == self.address

    __hash__ = None  # type: ignore[assignment]


RubyValue = str | int | bool | IPAddr | None

# Methods callable on a value (`x.nil?`) and on a class (`File.join(...)`), checked at parse time.
METHODS = frozenset(("nil?", "to_s", "empty?", "to_i", "ipv4?", "ipv6?"))
CLASS_METHODS: dict[str, tuple[str, ...]] = {
    "File": ("join",), "Dir": ("pwd",), "IPAddr": ("new",), "Socket": ("gethostname",)}

_SEPARATOR = "/"


def to_s(value: RubyValue) -> str:
    """Ruby's `"#{value}"`: nil is empty, booleans are true/false."""
    return ruby_to_s(value)


def class_name(value: RubyValue) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    return {str: "String", int: "Integer", IPAddr: "IPAddr"}[type(value)]


def _no_method(name: str, recv: RubyValue) -> RubyRuntimeError:
    shown = class_name(recv) if recv is None or isinstance(recv, bool) else f"an instance of {class_name(recv)}"
    return RubyRuntimeError(f"undefined method `{name}' for {shown}")


def _arity(args: list[RubyValue], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        expected = str(low) if low == high else f"{low}..{high}"
        raise RubyRuntimeError(f"wrong number of arguments (given {len(args)}, expected {expected})")


def _string_arg(value: RubyValue) -> str:
    if not isinstance(value, str):
        raise RubyRuntimeError(f"no implicit conversion of {class_name(value)} into String")
    return value


def file_join(parts: list[RubyValue]) -> str:
    """Ruby's File.join: one `/` between parts; a part starting with `/` replaces the trailing
    separators before it, a part after trailing separators is appended as is."""
    result = ""
    for i, part in enumerate(parts):
        text = _string_arg(part)
        if i > 0:
            trimmed = result.rstrip(_SEPARATOR)
            if text.startswith(_SEPARATOR):
                result = trimmed
            elif trimmed == result:
                result += _SEPARATOR
        result += text
    return result


def class_call(cls: str, method: str, args: list[RubyValue], hostname: str) -> RubyValue:
    if (cls, method) == ("File", "join"):
        return file_join(args)
    if (cls, method) == ("Dir", "pwd"):
        _arity(args, 0, 0)
        return os.getcwd()
    if (cls, method) == ("IPAddr", "new"):
        _arity(args, 0, 2)
        if len(args) == 2:
            raise Unsupported("IPAddr.new with an address family")
        if args and not isinstance(args[0], str):
            raise RubyRuntimeError("address family must be specified")
        return IPAddr(args[0] if args else "::")   # type: ignore[arg-type]
    if (cls, method) == ("Socket", "gethostname"):
        _arity(args, 0, 0)
        return hostname
    raise Unsupported(f"{cls}.{method}")


def call(recv: RubyValue, method: str, args: list[RubyValue]) -> RubyValue:
    """`recv.method(*args)` for the METHODS kawa knows; others raise Ruby's NoMethodError."""
    if method == "nil?":
        return recv is None
    if method == "to_s":
        return to_s(recv)
    if method == "empty?" and isinstance(recv, str):
        return recv == ""
    if method == "to_i" and not isinstance(recv, (bool, IPAddr)):
        if recv is None or isinstance(recv, int):
            return recv or 0
        m = re.match(r"\s*([+-]?\d[\d_]*)", recv)
        return int(m.group(1).replace("_", "")) if m else 0
    if method in ("ipv4?", "ipv6?") and isinstance(recv, IPAddr):
        return recv.address.version == (6 if method == "ipv6?" else 4)
    raise _no_method(method, recv)


def plus(left: RubyValue, right: RubyValue) -> RubyValue:
    """`left + right` for strings and integers, with Ruby's errors otherwise."""
    if isinstance(left, str):
        return left + _string_arg(right)
    if isinstance(left, int) and not isinstance(left, bool):
        if isinstance(right, int) and not isinstance(right, bool):
            return left + right
        raise RubyRuntimeError(f"{class_name(right)} can't be coerced into Integer")
    if isinstance(left, IPAddr):
        raise Unsupported("IPAddr#+")
    raise _no_method("+", left)


def equal(left: RubyValue, right: RubyValue) -> bool:
    if left is None or right is None or isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, IPAddr) and isinstance(right, str):
        try:
            return left == IPAddr(right)
        except RubyRuntimeError:
            return False
    return type(left) is type(right) and left == right
