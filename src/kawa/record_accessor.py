"""Fluentd's record_accessor syntax (`$.a.b`, `$['a']['b']`, `$.a[0]`, or a plain top-level key),
compiled once into get / delete / set functions with Ruby's Hash#dig semantics.
"""

from __future__ import annotations

from typing import Any, Callable

from kawa.errors import ConfigError

Key = str | int


class DigError(TypeError):
    """Ruby's TypeError from Hash#dig / Array#dig (message text as Ruby prints it)."""


def parse_accessor(param: str) -> str | list[Key]:
    """A plain key (str) or the list of dig keys; raises ConfigError with Fluentd's messages."""
    if param.startswith("$."):
        return _parse_dot(param)
    if param.startswith("$["):
        return _parse_bracket(param)
    return param


def _ruby_integer(text: str, param: str) -> int:
    try:
        return int(text.strip().replace("_", ""), 0) if text.strip().lower().startswith(("0x", "0b", "0o")) \
            else int(text.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f'invalid value for Integer(): "{text}" in record accessor {param}') from None


def _parse_dot(param: str) -> list[Key]:
    result: list[Key] = []
    parts = param[2:].split(".")
    while parts and parts[-1] == "":      # Ruby's String#split drops trailing empty fields only
        parts.pop()
    for key in parts:
        if "[" in key:
            result.extend(_parse_dot_array(key, param))
        else:
            result.append(key)
    if not result:
        raise ConfigError("empty keys in dot notation")
    for key in result:
        if isinstance(key, str) and any(c.isspace() for c in key):
            raise ConfigError(f"whitespace character is not allowed in dot notation. Use bracket notation: {key}")
    return result


def _parse_dot_array(key: str, param: str) -> list[Key]:
    start = key.index("[")
    result: list[Key] = [key[:start]] if start else []
    rest = key[start + 1:]
    in_bracket = True
    while rest:
        if in_bracket:
            i = rest.find("]")
            if i < 0:
                raise ConfigError(f"'[' found but ']' not found. Invalid syntax: {param}")
            if i == 0:
                raise ConfigError(f"missing array index in '[]'. Invalid syntax: {param}")
            result.append(_ruby_integer(rest[:i], param))
            rest = rest[i + 1:]
            in_bracket = False
        else:
            i = rest.find("[")
            if i < 0:
                raise ConfigError(f"found more characters after ']'. Invalid syntax: {param}")
            rest = rest[i + 1:]
            in_bracket = True
    return result


def _parse_bracket(param: str) -> list[Key]:
    result: list[Key] = []
    rest = param[1:]
    in_bracket = False
    while rest:
        if in_bracket:
            if rest[0] in "'\"":
                i = rest.find("']")
                if i < 0:
                    i = rest.find('"]')
                if i < 0:
                    raise ConfigError(f"Incomplete bracket. Invalid syntax: {param}")
                if rest[0] != rest[i]:
                    raise ConfigError(f"Mismatched quotes. Invalid syntax: {param}")
                result.append(rest[1:i])
                rest = rest[i + 2:]
            else:
                i = rest.find("]")
                if i < 0:
                    raise ConfigError(f"'[' found but ']' not found. Invalid syntax: {param}")
                if i == 0:
                    raise ConfigError(f"missing array index in '[]'. Invalid syntax: {rest}")
                result.append(_ruby_integer(rest[:i], param))
                rest = rest[i + 1:]
            in_bracket = False
        else:
            i = rest.find("[")
            if i < 0:
                raise ConfigError(f"found more characters after ']'. Invalid syntax: {param}")
            rest = rest[i + 1:]
            in_bracket = True
    if not result:
        raise ConfigError("empty keys in bracket notation")
    return result


def _ruby_class(value: Any) -> str:
    if isinstance(value, str):
        return "String"
    if value is True:
        return "TrueClass"
    if value is False:
        return "FalseClass"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    return type(value).__name__


def dig(value: Any, keys: list[Key]) -> Any:
    """Ruby's `value.dig(*keys)`: nil stops the walk; a non-container or a bad index raises DigError."""
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list):
            if not isinstance(key, int):
                raise DigError(f"no implicit conversion of {_ruby_class(key)} into Integer")
            try:
                value = value[key]
            except IndexError:
                return None
        else:
            raise DigError(f"{_ruby_class(value)} does not have #dig method")
        if value is None:
            return None
    return value


class RecordAccessor:
    """One compiled accessor. `get(record)` raises DigError where Ruby's dig raises TypeError."""

    __slots__ = ("param", "keys", "key", "get", "nested")

    def __init__(self, param: str) -> None:
        self.param = param
        parsed = parse_accessor(param)
        if isinstance(parsed, list) and len(parsed) == 1:
            parsed = parsed[0]  # type: ignore[assignment]
        self.nested = isinstance(parsed, list)
        self.keys: list[Key] = parsed if isinstance(parsed, list) else [parsed]
        self.key: Key = self.keys[0]
        self.get: Callable[[dict[str, Any]], Any]
        if self.nested:
            keys = self.keys
            first, rest = keys[0], keys[1:]

            def get_nested(record: dict[str, Any]) -> Any:
                value = record.get(first)  # type: ignore[call-overload]
                return None if value is None else dig(value, rest)

            self.get = get_nested
        else:
            key = self.key
            self.get = lambda record: record.get(key)  # type: ignore[call-overload]

    def delete(self, record: dict[str, Any]) -> None:
        """Remove the key (nested: from its parent container); missing paths are no-ops."""
        if not self.nested:
            record.pop(self.key, None)  # type: ignore[call-overload]
            return
        try:
            parent = dig(record, self.keys[:-1])
        except DigError:
            return
        last = self.keys[-1]
        if isinstance(parent, dict):
            parent.pop(last, None)
        elif isinstance(parent, list) and isinstance(last, int) and -len(parent) <= last < len(parent):
            del parent[last]

    def set(self, record: dict[str, Any], value: Any) -> None:
        """Set the value; nested: only when the parent exists (no intermediate objects, like Fluentd)."""
        if not self.nested:
            record[self.key] = value  # type: ignore[index]
            return
        try:
            parent = dig(record, self.keys[:-1])
        except DigError:
            return
        last = self.keys[-1]
        if isinstance(parent, dict):
            parent[last] = value
        elif isinstance(parent, list) and isinstance(last, int):
            if last < len(parent) and last >= -len(parent):
                parent[last] = value
            elif last >= len(parent):
                parent.extend([None] * (last - len(parent)))
                parent.append(value)


def is_nested(param: str) -> bool:
    return isinstance(parse_accessor(param), list)
