"""fluent-plugin-rewrite-tag-filter (shipped with td-agent and fluent-package): re-emits each event under a
tag built from the first <rule> whose regexp matches (or, with `invert`, does not match) a record value.

    <match app.**>
      @type rewrite_tag_filter
      <rule>
        key     level
        pattern /^(ERROR|WARN)$/
        tag     alert.$1.${tag}
      </rule>
    </match>

Events no rule rewrites (or whose new tag is their old one) are dropped, as the plugin does. The new tag
takes `$1`.. (the rule's captures), `${tag}` / `__TAG__`, `${tag_parts[N]}` / `__TAG_PARTS[N]__` and
`${hostname}` / `__HOSTNAME__`.
"""

from __future__ import annotations

import contextvars
import re
import socket
import subprocess
from typing import Any

from kawa.config.element import Element
from kawa.config.schema import BindContext, Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event, Record
from kawa.plugins.base import Emitter, Output, PluginContext
from kawa.record_accessor import DigError, RecordAccessor
from kawa.ruby_values import ruby_inspect_value, ruby_to_s

# Fluentd's placeholders in a rule's tag; kawa also fills __TAG_PARTS[N]__, which the plugin's own
# pattern (__[A-Z_]+__) never matches, leaving it in the tag as written (docs/compatibility.md).
_PLACEHOLDER = re.compile(r"\$\{[a-z_]+(?:\[[0-9]+\])?\}|__TAG_PARTS\[[0-9]+\]__|__[A-Z_]+__")
_BACKREFERENCE = re.compile(r"\$(\d+)")
_RANGE = re.compile(r"\$\{tag_parts\[\d\.\.\.?\d\]\}|__TAG_PARTS\[\d\.\.\.?\d\]__")
_INVALID_UTF8 = re.compile("[\udc80-\udcff]")
# A rewritten tag that this <match> takes again is re-emitted again: after this many rounds for one
# event, it is dropped with an error instead of looping until the stack runs out.
MAX_ROUNDS = 32
_rounds: contextvars.ContextVar[int] = contextvars.ContextVar("kawa_rewrite_tag_rounds", default=0)


class RuleSection(Options):
    key = option(doc="The record key (record_accessor syntax: $.a.b) whose value the pattern is applied to.")
    pattern = option(type="regexp", doc="The regexp.")
    tag = option(doc="The new tag.")
    label = option(None, doc="The label the event goes to (default: this <match>'s).")
    invert = option(False, "bool", doc="Rewrite when the pattern does not match.")


class RewriteTagFilterOptions(Options):
    capitalize_regex_backreference = option(False, "bool", doc="Capitalize every $N.")
    remove_tag_prefix = option(None, doc="Removed (with its dot) from the tag the placeholders see.")
    remove_tag_regexp = option(None, "regexp", doc="Removed from the tag the placeholders see.")
    hostname_command = option("hostname", doc="The command whose output ${hostname} is.")
    emit_mode = option("batch", "enum", choices=("record", "batch"),
                       doc="batch: one emit per new tag and label; record: one emit per event.")
    rules = section(RuleSection, multi=True, aliases=("rule",), doc="The rules, tried in order.")

    @classmethod
    def bind(cls, element: Element, ctx: BindContext, path: tuple[str, ...] = ()) -> Any:
        # the plugin's own message for the pre-2.0 syntax, instead of "unknown option"
        legacy = [key for key in element.attrs if key.startswith("rewriterule")]
        for key in legacy:
            element.attrs[key].used = True
        if legacy:
            ctx.problem('"rewriterule<num>" support has been dropped. Use <rule> section instead.',
                        element.attrs[legacy[0]].location, path or (element.title(),), legacy[0])
        return super().bind(element, ctx, path)


class _Rule:
    __slots__ = ("accessor", "search", "invert", "tag", "label", "has_backreference")

    def __init__(self, rule: RuleSection) -> None:
        self.accessor = RecordAccessor(rule.key)
        self.search = rule.pattern.search
        self.invert = rule.invert
        self.tag: str = rule.tag
        self.label: str | None = rule.label
        self.has_backreference = _BACKREFERENCE.search(rule.tag) is not None


@register("output", "rewrite_tag_filter")
class RewriteTagFilterOutput(Output):

    multi_workers_ready = True
    Options = RewriteTagFilterOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        o = options
        self.hostname = _hostname(o.hostname_command)
        self.rules: list[_Rule] = []
        seen: set[tuple[str, bool, str]] = set()
        for rule in o.rules:
            if _RANGE.search(rule.tag):
                raise ConfigError(f"${{tag_parts[n]}} and __TAG_PARTS[n]__ placeholder does not support range "
                                  f"specify at tag {rule.tag}")
            name = (rule.key, rule.invert, rule.pattern.pattern)
            if name in seen:
                raise ConfigError(f"duplicated rewriterules found: key {rule.key} pattern /{rule.pattern.pattern}/"
                                  + (" invert true" if rule.invert else ""))
            seen.add(name)
            self.rules.append(_Rule(rule))
            accessor = f"#<Fluent::PluginHelper::RecordAccessor::Accessor @keys={ruby_inspect_value(rule.key)}>"
            self.log.info(f"adding rewrite_tag_filter rule: {rule.key} [{accessor}, /{rule.pattern.pattern}/, "
                          f"{ruby_inspect_value('!' if rule.invert else '')}, {ruby_inspect_value(rule.tag)}, "
                          f"{ruby_inspect_value(rule.label)}]")
        if not self.rules:
            raise ConfigError("missing rewriterules")
        if o.remove_tag_prefix is not None and o.remove_tag_regexp is not None:
            raise ConfigError("remove_tag_prefix and remove_tag_regexp are exclusive")
        self.remove_tag: re.Pattern[str] | None = o.remove_tag_regexp
        if o.remove_tag_prefix is not None:
            self.remove_tag = re.compile("^" + re.escape(o.remove_tag_prefix) + r"\.?")
        self.batch_mode = o.emit_mode == "batch"
        self._label_emitters: dict[str, Emitter] = {}
        self.counters = {"rewritten": 0, "not_rewritten": 0, "looped": 0}

    async def start(self) -> None:
        # a rule's label must exist (Fluentd finds out at the first event it routes there)
        router = getattr(self.ctx.emitter, "router", None)
        if router is None:
            return
        for rule in self.rules:
            if rule.label and rule.label not in router.labels:
                raise ConfigError(f"{rule.label} label not found")

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)

    async def process(self, tag: str, events: list[Event]) -> None:
        placeholders = self._placeholders(tag)
        rounds = _rounds.get() + 1
        groups: dict[tuple[str | None, str], list[Event]] = {}
        for time, record in events:
            new_tag, label = self._rewrite(tag, record, placeholders)
            if (new_tag is None or new_tag == tag) and label is None:
                self.counters["not_rewritten"] += 1
                continue
            target = (label, tag if new_tag is None else new_tag)
            if self.batch_mode:
                groups.setdefault(target, []).append((time, record))
            else:
                await self._emit(target, [(time, record)], rounds)
        for target, group in groups.items():
            await self._emit(target, group, rounds)

    async def _emit(self, target: tuple[str | None, str], events: list[Event], rounds: int) -> None:
        label, tag = target
        if rounds > MAX_ROUNDS:
            self.counters["looped"] += len(events)
            self.log.limited("rewrite_tag_filter loop", "error", "rewrite_tag_filter: events dropped: rewritten "
                             f"{MAX_ROUNDS} times in a row, the new tag keeps coming back to a rewrite_tag_filter; "
                             "make the rules' tags match another <match>", tag=tag, events=len(events))
            return
        self.counters["rewritten"] += len(events)
        token = _rounds.set(rounds)
        try:
            await self._emitter(label).emit(tag, events)
        finally:
            _rounds.reset(token)

    def _emitter(self, label: str | None) -> Emitter:
        emitter = self.ctx.emitter
        assert emitter is not None, "BUG: rewrite_tag_filter without an emitter"
        if not label:
            return emitter
        bound = self._label_emitters.get(label)
        if bound is None:
            bound = self._label_emitters[label] = emitter.router.bind(label)  # type: ignore[attr-defined]
        return bound

    def _rewrite(self, tag: str, record: Record, placeholders: dict[str, str]) -> tuple[str | None, str | None]:
        for rule in self.rules:
            try:
                value = rule.accessor.get(record)
            except DigError:               # $.a.b where a is not a hash: no value
                value = None
            text = value if type(value) is str else ruby_to_s(value)
            if not text and not rule.invert:
                continue
            if not text.isascii():
                text = _INVALID_UTF8.sub("?", text)          # Ruby's scrub('?') of invalid bytes
            match = rule.search(text)
            if rule.invert:
                if match is not None:
                    continue
                new_tag = rule.tag
            else:
                if match is None:
                    continue
                new_tag = rule.tag
                if rule.has_backreference:
                    new_tag = _BACKREFERENCE.sub(self._backreference(match), new_tag)
            if "$" in new_tag or "__" in new_tag:
                new_tag = _PLACEHOLDER.sub(self._placeholder(tag, new_tag, placeholders), new_tag)
            return new_tag, rule.label
        return None, None

    def _backreference(self, match: re.Match[str]) -> Any:
        capitalize = self.options.capitalize_regex_backreference
        captures = match.groups()

        def replace(ref: re.Match[str]) -> str:
            index = int(ref.group(1))
            value = captures[index - 1] if 0 < index <= len(captures) else None
            if value is None:
                return ""
            return value.capitalize() if capitalize else value

        return replace

    def _placeholder(self, tag: str, new_tag: str, placeholders: dict[str, str]) -> Any:
        def replace(found: re.Match[str]) -> str:
            name = found.group()
            value = placeholders.get(name)
            if value is None:
                self.log.warn(f"rewrite_tag_filter: unknown placeholder found. :placeholder=>{name} :tag=>{tag} "
                              f":rewritetag=>{new_tag}")
                return ""
            return value

        return replace

    def _placeholders(self, tag: str) -> dict[str, str]:
        if self.remove_tag is not None:
            tag = self.remove_tag.sub("", tag, count=1)
        result = {"__HOSTNAME__": self.hostname, "${hostname}": self.hostname, "__TAG__": tag, "${tag}": tag}
        for i, part in enumerate(tag.split(".")):
            result[f"${{tag_parts[{i}]}}"] = part
            result[f"__TAG_PARTS[{i}]__"] = part
        return result


def _hostname(command: str) -> str:
    """The output of `hostname_command` without its line end, as the plugin's backticks give it."""
    if command == "hostname":
        return socket.gethostname()
    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=10)  # noqa: S602
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"hostname_command '{command}' failed: {exc}") from None
    return done.stdout.rstrip("\r\n")
