"""Options declared once per plugin: conversion, validation, errors, docs and secret masking.

A plugin's `Options` class lists `option(...)` and `section(...)` attributes; `bind()` turns a
config Element into an instance, collecting every Problem (all at once, with file:line).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

from kawa.config import values
from kawa.config.element import Attr, Element
from kawa.errors import Location, Problem

# Parameters every plugin element may carry; the engine reads them, binding only marks them used.
RESERVED = ("@type", "@id", "@label", "@log_level", "type", "id", "log_level")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

# A Section.default_type meaning "the @type of the enclosing element" (Fluentd output.rb: a
# <secondary> without @type is of its primary's type).
ENCLOSING_TYPE = "<enclosing @type>"


@dataclass(frozen=True)
class Option:
    """One `key value` option; `type` is a Fluentd config type name (see kawa.config.values)."""

    default: Any = REQUIRED
    type: str = "string"
    doc: str = ""
    secret: bool = False
    deprecated: str | None = None      # Fluentd's text: "'x' parameter is deprecated: <deprecated>"
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()      # for type "enum"
    value_type: str | None = None      # element type for "array" / "hash"
    no_effect: str | None = None       # accepted for compatibility; why it has no effect (listed by --dry-run)
    name: str = ""                     # filled in by Options.__init_subclass__

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def convert(self, raw: str) -> Any:
        return values.convert(self.type, raw, list=self.choices, value_type=self.value_type)


@dataclass(frozen=True)
class Section:
    """A nested `<name>` section bound to another Options class (or, with `plugin_kind`, to a plugin
    chosen by the section's @type, e.g. <parse>, <format>, <buffer>)."""

    options: type["Options"] | None = None
    multi: bool = False
    required: bool = False
    doc: str = ""
    plugin_kind: str | None = None     # "parser" | "formatter" | "buffer" | "output" ...
    default_type: str | None = None    # @type when the section omits it
    aliases: tuple[str, ...] = ()      # extra section names accepted (e.g. <and> for <regexp>s)
    name: str = ""


def option(default: Any = REQUIRED, type: str = "string", *, doc: str = "", secret: bool = False,
           deprecated: str | None = None, aliases: tuple[str, ...] = (), choices: tuple[str, ...] = (),
           value_type: str | None = None, no_effect: str | None = None) -> Any:
    """Declare an option. No default means required. Returns Any so the attribute can be typed."""
    return Option(default, type, doc, secret, deprecated, aliases, choices, value_type, no_effect)


def section(options: type["Options"] | None = None, *, multi: bool = False, required: bool = False,
            doc: str = "", plugin_kind: str | None = None, default_type: str | None = None,
            aliases: tuple[str, ...] = ()) -> Any:
    return Section(options, multi, required, doc, plugin_kind, default_type, aliases)


@dataclass
class PluginSpec:
    """A plugin section resolved to its class and bound options, ready to instantiate."""

    cls: type
    options: "Options"
    element: Element


@dataclass
class BindContext:
    """Collects problems and warnings while binding a whole config tree."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # lookup(kind, type_name, location, path) -> plugin class or None (problem recorded by it)
    lookup: Callable[[str, str, Location, tuple[str, ...]], type | None] | None = None

    def problem(self, message: str, location: Location | None, path: tuple[str, ...],
                option: str | None = None) -> None:
        self.problems.append(Problem(message, location, path, option))


class Options:
    """Base class of every plugin's option declarations."""

    _options: ClassVar[dict[str, Option]] = {}
    _sections: ClassVar[dict[str, Section]] = {}
    # the element this instance was bound from (None for defaults built in code)
    _element: Element | None = None
    # the section argument, e.g. chunk keys in <buffer tag,time>
    _arg: str = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        opts: dict[str, Option] = {}
        secs: dict[str, Section] = {}
        for base in reversed(cls.__mro__[1:]):
            opts.update(getattr(base, "_options", {}))
            secs.update(getattr(base, "_sections", {}))
        for name, value in list(vars(cls).items()):
            if isinstance(value, Option):
                opts[name] = Option(**{**value.__dict__, "name": name})
                delattr(cls, name)
            elif isinstance(value, Section):
                secs[name] = Section(**{**value.__dict__, "name": name})
                delattr(cls, name)
            elif name in opts and not name.startswith("_") and not callable(value):
                # a subclass overriding a default: `time_format = "%d/%b/%Y"` (Fluentd's config_set_default)
                opts[name] = Option(**{**opts[name].__dict__, "default": value})
                delattr(cls, name)
        cls._options = opts
        cls._sections = secs

    @classmethod
    def defaults(cls) -> "Options":
        """An instance with every default (required options left unset); for code-built plugins."""
        inst = cls.__new__(cls)
        for name, opt in cls._options.items():
            setattr(inst, name, None if opt.required else opt.default)
        for name, sec in cls._sections.items():
            setattr(inst, name, [] if sec.multi else None)
        return inst

    def check(self) -> Iterator[str]:
        """Cross-option rules, run after every option converted cleanly. Yield problem messages."""
        return iter(())

    @classmethod
    def bind(cls, element: Element, ctx: BindContext, path: tuple[str, ...] = ()) -> "Options":
        inst = cls.__new__(cls)
        inst._element = element
        inst._arg = element.arg
        path = path or (element.title(),)
        before = len(ctx.problems)
        for key in RESERVED:
            if key in element.attrs:
                element.attrs[key].used = True
        for name, opt in cls._options.items():
            attr, given_as = _find_attr(element, name, opt.aliases)
            if attr is None:
                if opt.required:
                    ctx.problem("required option is missing", element.location, path, name)
                setattr(inst, name, None if opt.required else opt.default)
                continue
            attr.used = True
            if opt.deprecated:
                ctx.warnings.append(Problem(f"'{given_as}' parameter is deprecated: {opt.deprecated}",
                                            attr.location, path))
            setattr(inst, name, _convert(opt, attr, ctx, path, given_as))
        for name, sec in cls._sections.items():
            children = [e for e in element.elements if e.name == name or e.name in sec.aliases]
            if sec.required and not children:
                ctx.problem(f"<{name}> section is required", element.location, path)
            if not sec.multi and len(children) > 1:
                ctx.problem(f"<{name}> may appear only once", children[1].location, path)
            bound = [_bind_section(sec, child, ctx, path + (child.title(),), element) for child in children]
            setattr(inst, name, bound if sec.multi else (bound[0] if bound else None))
        _report_unknown(cls, element, ctx, path)
        if len(ctx.problems) == before:
            for message in inst.check():
                ctx.problem(message, element.location, path)
        return inst

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={getattr(self, k, None)!r}" for k in self._options)
        return f"{type(self).__name__}({items})"


def _find_attr(element: Element, name: str, aliases: tuple[str, ...]) -> tuple[Attr | None, str]:
    for key in (name, *aliases):
        attr = element.attrs.get(key)
        if attr is not None:
            return attr, key
    return None, name


def _convert(opt: Option, attr: Attr, ctx: BindContext, path: tuple[str, ...], given_as: str) -> Any:
    if attr.ruby_error:
        ctx.problem(attr.ruby_error, attr.location, path, given_as)
        return opt.default if not opt.required else None
    raw = attr.value
    # Fluentd's special values replace the whole value (config-file.md "use_nil / use_default").
    if raw == "use_default":
        return None if opt.required else opt.default
    if raw == "use_nil":
        return None
    try:
        return opt.convert(raw)
    except ValueError as exc:
        if opt.no_effect:
            # the value is never used (`expire_dns_cache nil` in Fluentd's own out_forward example):
            # say so, and do not refuse a config Fluentd loads for an option kawa only accepts
            ctx.warnings.append(Problem(f"{given_as}: {exc}; ignored, the option has no effect in kawa "
                                        f"({opt.no_effect})", attr.location, path))
            return None if opt.required else opt.default
        ctx.problem(str(exc), attr.location, path, given_as)
        return None if opt.required else opt.default


def _bind_section(sec: Section, child: Element, ctx: BindContext, path: tuple[str, ...], parent: Element) -> Any:
    if sec.plugin_kind is None:
        assert sec.options is not None, f"BUG: section {sec.name} declares neither options nor plugin_kind"
        return sec.options.bind(child, ctx, path)
    type_attr = child.attrs.get("@type") or child.attrs.get("type")
    type_name = type_attr.value if type_attr is not None else sec.default_type
    if type_name == ENCLOSING_TYPE:
        parent_type = parent.attrs.get("@type") or parent.attrs.get("type")
        type_name = parent_type.value if parent_type is not None else None
    if type_name is None:
        ctx.problem("missing @type", child.location, path)
        return None
    if ctx.lookup is None:
        raise RuntimeError("BUG: binding a plugin section needs BindContext.lookup")
    cls = ctx.lookup(sec.plugin_kind, type_name, (type_attr.location if type_attr else child.location), path)
    if cls is None:
        _mark_all_used(child)
        return None
    # v0.12 parameters in a nested plugin (`format json` in a copy <store>) move like top-level ones.
    from kawa.config import compat

    compat.apply(cls, child, ctx.warnings)
    options_cls: type[Options] = cls.Options
    return PluginSpec(cls, options_cls.bind(child, ctx, path), child)


def _mark_all_used(element: Element) -> None:
    for attr in element.attrs.values():
        attr.used = True
    for child in element.elements:
        _mark_all_used(child)


def _report_unknown(cls: type[Options], element: Element, ctx: BindContext, path: tuple[str, ...]) -> None:
    known = [*cls._options, *(a for o in cls._options.values() for a in o.aliases)]
    for key, attr in element.attrs.items():
        if attr.used:
            continue
        if key.startswith("@"):
            ctx.problem(f"unknown reserved parameter '{key}'", attr.location, path)
            continue
        hint = difflib.get_close_matches(key, known, n=1)
        suffix = f"; did you mean '{hint[0]}'?" if hint else ""
        ctx.problem(f"unknown option '{key}'{suffix}", attr.location, path)
    sections = {n for n in cls._sections} | {a for s in cls._sections.values() for a in s.aliases}
    for child in element.elements:
        if child.name not in sections:
            hint = difflib.get_close_matches(child.name, sorted(sections), n=1)
            suffix = f"; did you mean <{hint[0]}>?" if hint else ""
            ctx.problem(f"unknown section <{child.name}>{suffix}", child.location, path)
