"""Builds a worker's pipeline from the config tree: plugins configured, labels wired, problems collected.

`--dry-run` stops here. Every problem in the whole tree is collected before failing, so one run
lists them all. Configuration order and log lines follow Fluentd's RootAgent: labels first, then
the top-level filters/matches, then sources.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from kawa.config import compat
from kawa.config.element import Attr, Element
from kawa.config.schema import BindContext, PluginSpec
from kawa.engine import registry
from kawa.engine.match import compile_pattern
from kawa.engine.router import ROOT_LABEL, Router
from kawa.engine.system import SystemOptions
from kawa.errors import ConfigError, Location, Problem
from kawa.log import LEVELS, Logger
from kawa.plugins.base import Filter, Input, Output, Plugin, PluginContext

_LEGACY = {"type": "@type", "id": "@id", "log_level": "@log_level"}
_ids = itertools.count(0x3C4)


@dataclass
class Pipeline:
    system: SystemOptions
    router: Router
    inputs: list[Input] = field(default_factory=list)
    filters: list[Filter] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    plugins: list[Plugin] = field(default_factory=list)   # every plugin, children included
    warnings: list[Problem] = field(default_factory=list)
    no_effect: list[str] = field(default_factory=list)    # options accepted but not acted on


def bind_system(root: Element, bind: BindContext) -> SystemOptions:
    systems = root.children("system")
    if len(systems) > 1:
        bind.problem("<system> may appear only once", systems[1].location, ("<system>",))
    if systems:
        return SystemOptions.bind(systems[0], bind, ("<system>",))  # type: ignore[return-value]
    return SystemOptions.defaults()  # type: ignore[return-value]


class PipelineBuilder:
    def __init__(self, root: Element, log: Logger, *, worker_id: int = 0, dry_run: bool = False,
                 extras: dict[str, Any] | None = None, log_level_fixed: bool = False) -> None:
        self.root = root
        self.log = log
        self.worker_id = worker_id
        self.dry_run = dry_run
        self.log_level_fixed = log_level_fixed      # -v / -q given: <system> log_level must not override
        self.extras = extras if extras is not None else {}
        self.bind = BindContext(lookup=self._lookup)
        self.plugin_log = log.child(prefix=f"#{worker_id} ")
        # Fluentd prints configure-time warnings from the worker ("#0 ..."); a dry run has no worker.
        self._warn_log = log if dry_run else self.plugin_log
        self._warned = 0
        self._secret_attrs: set[int] = set()
        self._param_types: dict[int, dict[str, str]] = {}
        self._in_worker_section: set[int] = set()

    # -- public -------------------------------------------------------------------------------
    def build(self) -> Pipeline:
        system = bind_system(self.root, self.bind)
        self.system = system
        self._remember_secrets(system)
        self._flush_warnings()
        system_element = next(iter(self.root.children("system")), None)
        if system.log_level and not self.log_level_fixed and system_element is not None \
                and "log_level" in system_element.attrs:
            self.log.sink.level = LEVELS[system.log_level]
        router = Router(self.plugin_log)
        pipe = Pipeline(system, router)
        self.pipe = pipe
        # monitor_agent / prometheus read every plugin's stats() through this at scrape time.
        self.extras["pipeline"] = pipe
        top = self._worker_elements(self.root, system.workers or 1)
        for elem in top:
            if elem.name == "label":
                self._configure_label(elem, elem.arg)
        for elem in top:
            if elem.name in ("filter", "match"):
                self._configure_directive(elem, ROOT_LABEL)
        if not system.without_source:
            for elem in top:
                if elem.name == "source":
                    self._configure_source(elem)
        for elem in top:
            if elem.name not in ("source", "filter", "match", "label", "system", "worker"):
                self._unused_directive(elem)
        pipe.warnings = self.bind.warnings
        self._collect_no_effect(system, ("<system>",))
        self._flush_warnings()
        if self.bind.problems:
            raise ConfigError(self.bind.problems)
        return pipe

    # -- structure ------------------------------------------------------------------------------
    def _worker_elements(self, root: Element, workers: int) -> list[Element]:
        out: list[Element] = []
        for elem in root.elements:
            if elem.name != "worker":
                out.append(elem)
                continue
            ids = _parse_worker_range(elem, workers, self.bind)
            if self.worker_id in ids:
                for child in elem.elements:
                    if child.name in ("source", "filter", "match", "label"):
                        out.append(child)
                        self._in_worker_section.add(id(child))
                    else:
                        self.bind.problem(f"<{child.name}> is not allowed in <worker>", child.location,
                                          (elem.title(),))
        return out

    def _configure_label(self, elem: Element, name: str) -> None:
        if not name:
            self.bind.problem("<label> needs a name, e.g. <label @OUTPUT>", elem.location, (elem.title(),))
            return
        if name in self.pipe.router.labels:
            self.bind.problem(f"label {name} is defined twice", elem.location, (elem.title(),))
            return
        self.pipe.router.label(name)
        for child in elem.elements:
            if child.name in ("filter", "match"):
                self._configure_directive(child, name)
            else:
                self.bind.problem(f"<{child.name}> is not allowed in <label>", child.location, (elem.title(),))

    def _configure_directive(self, elem: Element, label: str) -> None:
        kind = "filter" if elem.name == "filter" else "output"
        pattern_src = elem.arg or "**"
        where = f" in {label}" if label else ""
        plugin = self._build(kind, elem, label)
        if plugin is None:
            self._flush_warnings()
            return
        if not self.dry_run:
            self.log.info(f"adding {elem.name}{where} pattern=\"{pattern_src}\" type=\"{plugin.type_name}\"")
        self._flush_warnings()
        try:
            pattern = compile_pattern(pattern_src)
        except ValueError as exc:
            self.bind.problem(str(exc), elem.location, (elem.title(),))
            return
        self.pipe.router.label(label).directives.append((pattern, plugin, kind == "filter"))
        (self.pipe.filters if kind == "filter" else self.pipe.outputs).append(plugin)  # type: ignore[arg-type]

    def _configure_source(self, elem: Element) -> None:
        plugin = self._build("input", elem, ROOT_LABEL)
        if (plugin is not None and (self.system.workers or 1) > 1 and id(elem) not in self._in_worker_section
                and not getattr(plugin, "multi_workers_ready", False)):
            # Every worker would read the same input: Fluentd refuses this too.
            cls = type(plugin)
            self.bind.problem(f"Plugin '{plugin.type_name}' does not support multi workers configuration "
                              f"({cls.__module__}.{cls.__qualname__}); put it in a <worker N> section",
                              elem.location, (elem.title(),))
            return
        if plugin is not None:
            if not self.dry_run:
                self.log.info(f"adding source type=\"{plugin.type_name}\"")
            self.pipe.inputs.append(plugin)  # type: ignore[arg-type]
        self._flush_warnings()

    def _flush_warnings(self) -> None:
        for warning in self.bind.warnings[self._warned:]:
            self._warn_log.warn(warning.message)
        self._warned = len(self.bind.warnings)

    def dump(self) -> str:
        """The configuration as Fluentd prints it at start-up, secrets masked (`xxxxxx`)."""
        from kawa.config.parser import dump_config

        # Fluentd quotes a value when its parameter is a string; values no plugin declared keep
        # the quoting they were written with.
        quoting: dict[tuple[tuple[str, ...], str], str | None] = {}

        def walk(elem: Element, path: tuple[str, ...]) -> None:
            types = self._param_types.get(id(elem), {})
            for key, attr in elem.attrs.items():
                if id(attr) in self._secret_attrs:
                    quoting[(path, key)] = None      # Fluentd prints `key xxxxxx`, never quoted
                    continue
                quoting[(path, key)] = types.get(key, "string" if attr.quoted else None)
            for child in elem.elements:
                walk(child, path + (child.title(),))

        walk(self.root, ())
        return dump_config(_masked(self.root, self._secret_attrs),
                           param_type=lambda path, key: quoting.get((path, key)))

    # -- plugins --------------------------------------------------------------------------------
    def _lookup(self, kind: str, type_name: str, location: Location, path: tuple[str, ...]) -> type | None:
        cls = registry.lookup(kind, type_name)
        if cls is None:
            self.bind.problems.append(Problem(
                f"Unknown {kind} plugin '{type_name}'. Run 'kawa plugins' to list the plugins kawa ships",
                location, path))
        return cls

    def _build(self, kind: str, elem: Element, label: str) -> Plugin | None:
        path = (elem.title(),)
        for legacy, modern in _LEGACY.items():
            if legacy in elem.attrs and modern not in elem.attrs:
                self.bind.warnings.append(Problem(
                    f"'{legacy}' is deprecated parameter name. use '{modern}' instead.", elem.attrs[legacy].location))
        type_attr = elem.attrs.get("@type") or elem.attrs.get("type")
        if type_attr is None:
            self.bind.problem("missing @type", elem.location, path)
            return None
        if type_attr.ruby_error:
            self.bind.problem(type_attr.ruby_error, type_attr.location, path, "@type")
            return None
        cls = self._lookup(kind, type_attr.value, type_attr.location, path)
        if cls is None:
            return None
        compat.apply(cls, elem, self.bind.warnings)
        before = len(self.bind.problems)
        options = cls.Options.bind(elem, self.bind, path)
        if len(self.bind.problems) != before:
            return None     # options are wrong: the plugin would only report follow-on errors
        spec = PluginSpec(cls, options, elem)
        target_label = elem.get("@label") or label
        if elem.get("@label") and elem.name in ("source", "match") and not _label_defined(self.root, target_label):
            self.bind.problem(f"{target_label} label not found", elem.attrs["@label"].location, path)
            return None
        return self._instantiate(spec, elem.get("@id") or elem.get("id"), target_label,
                                 elem.get("@log_level") or elem.get("log_level"))

    def _instantiate(self, spec: PluginSpec, plugin_id: str | None, label: str, log_level: str | None) -> Plugin | None:
        ctx = PluginContext(
            plugin_id=plugin_id or f"object:{next(_ids):x}",
            log=self.plugin_log.child(level=log_level),
            system=self.system,
            emitter=self.pipe.router.bind(label),
            worker_id=self.worker_id,
            dry_run=self.dry_run,
            build=lambda child, child_id: self._build_child(child, child_id, label),
            extras=self.extras,
        )
        before = len(self.bind.problems)
        try:
            plugin = spec.cls(spec.options, ctx)
        except ConfigError as exc:
            path = (spec.element.title(),)
            for p in exc.problems:
                problem = Problem(p.message, p.location or spec.element.location, p.path or path, p.option)
                if p not in self.bind.problems and problem not in self.bind.problems:
                    self.bind.problems.append(problem)
            return None
        if len(self.bind.problems) != before:
            return None
        self.pipe.plugins.append(plugin)
        self._collect_no_effect(spec.options, (spec.element.title(),))
        self._remember_secrets(spec.options)
        return plugin

    def _build_child(self, spec: PluginSpec | None, plugin_id: str, label: str) -> Plugin:
        if spec is None:   # the section's own problem (e.g. unknown @type) is already recorded
            raise ConfigError(self.bind.problems[-1:] or [Problem("invalid section")])
        log_level = spec.element.get("@log_level")
        plugin = self._instantiate(spec, spec.element.get("@id") or plugin_id, spec.element.get("@label") or label,
                                   log_level)
        if plugin is None:
            raise ConfigError(self.bind.problems[-1:] or [Problem("invalid section", spec.element.location)])
        return plugin

    def _remember_secrets(self, options: Any) -> None:
        element = getattr(options, "_element", None)
        if element is None:
            return
        types = self._param_types.setdefault(id(element), {})
        for name, opt in type(options)._options.items():
            for key in (name, *opt.aliases):
                types[key] = opt.type
            if opt.secret:
                for key in (name, *opt.aliases):
                    if key in element.attrs:
                        self._secret_attrs.add(id(element.attrs[key]))
        for name in type(options)._sections:
            value = getattr(options, name, None)
            for item in value if isinstance(value, list) else [value]:
                inner = getattr(item, "options", item)
                if inner is not None and hasattr(inner, "_element"):
                    self._remember_secrets(inner)

    def _unused_directive(self, elem: Element) -> None:
        """A top-level section no one reads: Fluentd's check_not_fetched warns once per parameter
        (the section printed whole) and starts. Its embedded Ruby was evaluated while parsing, so Ruby
        kawa cannot run there is still an error: Fluentd would have run (or failed on) it."""
        from kawa.config.dump import dump_config

        shown = dump_config(elem, param_type=lambda path, key: None).strip()
        for key, attr in elem.attrs.items():
            attr.used = True
            if attr.ruby_error:
                self.bind.problem(attr.ruby_error, attr.location, (elem.title(),), key)
            else:
                self.bind.warnings.append(Problem(f"parameter '{key}' in {shown} is not used.", attr.location))
        for child in elem.elements:
            self._unused_directive(child)

    def _collect_no_effect(self, options: Any, path: tuple[str, ...]) -> None:
        element = getattr(options, "_element", None)
        if element is None:
            return
        for name, opt in type(options)._options.items():
            if opt.no_effect and name in element.attrs:
                self.pipe.no_effect.append(f"{element.attrs[name].location}: {' '.join(path)}: "
                                           f"{name}: {opt.no_effect}")
        for name, sec in type(options)._sections.items():
            if sec.plugin_kind is not None:
                continue       # a plugin section's options are listed when that plugin is built
            value = getattr(options, name, None)
            for inner in value if isinstance(value, list) else [value]:
                if inner is not None:
                    self._collect_no_effect(inner, path + (inner._element.title(),))


def _masked(elem: Element, secret: set[int]) -> Element:
    attrs = {k: (Attr("xxxxxx", a.location) if id(a) in secret else a) for k, a in elem.attrs.items()}
    return Element(elem.name, elem.arg, attrs, [_masked(e, secret) for e in elem.elements], elem.location)


def _label_defined(root: Element, name: str) -> bool:
    for elem in root.elements:
        if elem.name == "label" and elem.arg == name:
            return True
        if elem.name == "worker" and _label_defined(elem, name):
            return True
    return False


def _parse_worker_range(elem: Element, workers: int, bind: BindContext) -> range:
    arg = elem.arg.strip()
    try:
        if "-" in arg:
            lo, hi = (int(x) for x in arg.split("-", 1))
        else:
            lo = hi = int(arg)
    except ValueError:
        bind.problem(f"<worker> needs a worker id or range like 0-1; got '{arg}'", elem.location, (elem.title(),))
        return range(0)
    if lo > hi or hi >= workers or lo < 0:
        bind.problem(f"worker id {arg} specified by <worker> directive is not allowed. "
                     f"Available worker id is between 0 and {workers - 1}", elem.location, (elem.title(),))
        return range(0)
    return range(lo, hi + 1)
