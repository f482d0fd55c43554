"""Print an Element tree back in Fluentd syntax, as the "using configuration file: <ROOT>" log does.

Mirrors Fluentd's Element#to_s: two-space nesting, `key value`, secrets shown as xxxxxx."""

from __future__ import annotations

from collections.abc import Callable

from kawa.config.element import Attr, Element
from kawa.config.literal import escape_for_dump

SecretKeys = Callable[[tuple[str, ...], str], bool]
ParamType = Callable[[tuple[str, ...], str], str | None]


def dump_config(root: Element, *, secret_keys: SecretKeys | None = None, indent: int = 2,
                param_type: ParamType | None = None) -> str:
    """Render `root` (normally ROOT) without a trailing newline.

    `path` given to the callbacks is the chain of section titles below ROOT, e.g.
    ("<match app.**>", "<buffer>"). Quoting follows Fluentd: a parameter whose type is "string"
    is printed in double quotes with escapes, any other type bare. Without `param_type` (plain
    syntax level) a value is quoted exactly when it was quoted in the file.
    """
    lines: list[str] = []
    _dump(root, 0, (), lines, secret_keys, indent, param_type)
    return "\n".join(lines)


def format_value(attr: Attr, path: tuple[str, ...], key: str, secret_keys: SecretKeys | None = None,
                 param_type: ParamType | None = None) -> str:
    """The text printed after `key ` for one attribute."""
    if secret_keys is not None and secret_keys(path, key):
        return "xxxxxx"
    if param_type is not None:
        quote = param_type(path, key) == "string"
    else:
        quote = attr.quoted is not None
    return f'"{escape_for_dump(attr.value)}"' if quote else attr.value


def _dump(element: Element, level: int, path: tuple[str, ...], lines: list[str],
          secret_keys: SecretKeys | None, indent: int, param_type: ParamType | None) -> None:
    pad = " " * (indent * level)
    inner = " " * (indent * (level + 1))
    lines.append(pad + element.title())
    for key, attr in element.attrs.items():
        # "key " with a trailing space for an empty value, exactly as Fluentd prints it.
        lines.append(f"{inner}{key} {format_value(attr, path, key, secret_keys, param_type)}")
    for child in element.elements:
        _dump(child, level + 1, path + (child.title(),), lines, secret_keys, indent, param_type)
    lines.append(pad + f"</{element.name}>")
