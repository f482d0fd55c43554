"""Finds a plugin class by kind and @type, Fluentd-style: by module naming convention, no central list.

`@type grep` in a <filter> imports kawa.plugins.filters.grep; the module registers its class with
the `register` decorator. Third-party plugins can register through the `kawa.plugins` entry point group.
"""

from __future__ import annotations

import importlib
from typing import Callable, TypeVar

KINDS = ("input", "parser", "filter", "output", "formatter", "buffer")
_PACKAGES = {kind: f"kawa.plugins.{kind}s" for kind in KINDS}
# buffers live in kawa.plugins.buffers like every other kind

_registry: dict[tuple[str, str], type] = {}
T = TypeVar("T", bound=type)


def register(kind: str, *names: str) -> Callable[[T], T]:
    """Class decorator: `@register("filter", "grep")`. Extra names are aliases (sample/dummy)."""
    assert kind in KINDS, f"BUG: unknown plugin kind {kind}"

    def deco(cls: T) -> T:
        cls.kind = kind  # type: ignore[attr-defined]
        cls.type_name = names[0]  # type: ignore[attr-defined]
        for name in names:
            _registry[(kind, name)] = cls
        return cls

    return deco


def lookup(kind: str, type_name: str) -> type | None:
    """The class for `@type type_name` of this kind, or None when kawa does not ship it."""
    found = _registry.get((kind, type_name))
    if found is not None:
        return found
    if type_name.isidentifier():
        try:
            importlib.import_module(f"{_PACKAGES[kind]}.{type_name}")
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith(_PACKAGES[kind]):
                raise
        found = _registry.get((kind, type_name))
        if found is not None:
            return found
    from importlib import metadata   # ~2 MiB (email, zipfile, csv): only for a @type kawa does not ship

    for ep in metadata.entry_points(group="kawa.plugins"):
        if ep.name == f"{kind}.{type_name}":
            ep.load()
    return _registry.get((kind, type_name))


def available() -> dict[str, list[str]]:
    """Every shipped plugin, by kind (imports every plugin module; used by `kawa plugins`)."""
    import pkgutil

    for package in _PACKAGES.values():
        try:
            pkg = importlib.import_module(package)
        except ModuleNotFoundError:
            continue
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    for (kind, name) in _registry:
        out[kind].append(name)
    return {k: sorted(v) for k, v in out.items()}
