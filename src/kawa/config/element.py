"""The parsed configuration tree: elements (sections) and attributes, each with its file:line."""

from __future__ import annotations

from dataclasses import dataclass, field

from kawa.errors import Location


@dataclass(slots=True)
class Attr:
    """One `key value` line. `value` is the string after Fluentd's quoting/escape rules.

    `ruby_error` is set when the value was a double-quoted string holding embedded Ruby that kawa
    does not evaluate; the parse still succeeds (so syntax checks of real configs pass) and the
    plugin that uses the option reports the problem at configure time.
    `quoted` tells how the value was written: None (bare), '"' or "'".
    """

    value: str
    location: Location
    quoted: str | None = None
    ruby_error: str | None = None
    used: bool = False             # set by the schema binder; unused attrs are reported as unknown


@dataclass(slots=True)
class Element:
    """A section: `<name arg> ... </name>`. The root element is named "ROOT" with arg ""."""

    name: str
    arg: str
    attrs: dict[str, Attr] = field(default_factory=dict)
    elements: list["Element"] = field(default_factory=list)
    location: Location = field(default_factory=lambda: Location("<string>", 0))

    def __getitem__(self, key: str) -> str:
        return self.attrs[key].value

    def get(self, key: str, default: str | None = None) -> str | None:
        attr = self.attrs.get(key)
        return attr.value if attr is not None else default

    def has(self, key: str) -> bool:
        return key in self.attrs

    def children(self, name: str) -> list["Element"]:
        return [e for e in self.elements if e.name == name]

    def title(self) -> str:
        """How the section is written in the config, e.g. `<match app.**>`."""
        return f"<{self.name} {self.arg}>" if self.arg else f"<{self.name}>"
