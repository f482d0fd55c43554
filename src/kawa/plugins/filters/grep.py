"""Fluentd's grep filter: keep or drop events by regexps on record fields (<regexp>, <exclude>,
<and>, <or>, deprecated regexpN/excludeN), evaluated per batch with compiled searches.
"""

from __future__ import annotations

import re
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any, Callable

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event, Record
from kawa.ruby_values import Bare, ruby_to_s
from kawa.plugins.base import Filter, PluginContext
from kawa.record_accessor import RecordAccessor
from kawa.rubyregex import compile_ruby_regexp

# filter_grep.rb REGEXP_MAX_NUM
REGEXP_MAX_NUM = 20

Matcher = Callable[[Record], bool]
_RECORD = itemgetter(1)


class ConditionSection(Options):
    key = option(doc="Field to match: a top-level key or a record_accessor path like $.kubernetes.labels.app.")
    pattern = option(type="regexp", doc="Regexp, /.../ with optional i or m flags, or a bare pattern.")


class GroupSection(Options):
    regexp = section(ConditionSection, multi=True, doc="Conditions that must match.")
    exclude = section(ConditionSection, multi=True, doc="Conditions that drop the event when they match.")


def _grep_options() -> type[Options]:
    ns: dict[str, Any] = {"__doc__": "Options of the grep filter.", "__module__": __name__}
    for i in range(1, REGEXP_MAX_NUM + 1):
        ns[f"regexp{i}"] = option(None, deprecated="Use <regexp> section",
                                  doc="Deprecated: 'KEY REGEXP' that must match.")
    for i in range(1, REGEXP_MAX_NUM + 1):
        ns[f"exclude{i}"] = option(None, deprecated="Use <exclude> section",
                                   doc="Deprecated: 'KEY REGEXP' that drops the event when it matches.")
    ns["regexp"] = section(ConditionSection, multi=True,
                           doc="Keep only events whose field matches (several: all must match).")
    ns["exclude"] = section(ConditionSection, multi=True,
                            doc="Drop events whose field matches (several: any match drops).")
    ns["and"] = section(GroupSection, multi=True, doc="<regexp>s that must all match, or <exclude>s that drop "
                        "only when all match.")
    ns["or"] = section(GroupSection, multi=True, doc="<regexp>s of which one must match, or <exclude>s of which "
                       "any match drops.")
    return type("Options", (Options,), ns)


def _plain_literal(pattern: re.Pattern[str]) -> str | None:
    """The text a pattern of plain characters only (no classes, anchors, repeats or case folding)
    looks for: then `text in value` finds the same as `search`, without a match object per call."""
    if pattern.flags & re.IGNORECASE:
        return None
    try:
        from re import _constants as sre_const  # type: ignore[attr-defined]
        from re import _parser as sre_parse  # type: ignore[attr-defined]
        parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    except Exception:   # parser internals changed: keep the regexp search
        return None
    if not len(parsed) or any(op is not sre_const.LITERAL for op, _ in parsed):
        return None
    return "".join(chr(code) for _, code in parsed)


class _Expression:
    """One key + regexp; `matches(record)` is Fluentd's `pattern.match(key.call(record).to_s)`."""

    __slots__ = ("accessor", "pattern", "search")

    def __init__(self, key: str, pattern: Any) -> None:
        self.accessor = RecordAccessor(key)
        self.pattern = pattern
        self.search = pattern.search

    def matcher(self) -> Matcher:
        get = self.accessor.get
        search = self.search

        def matches(record: Record) -> bool:
            value = get(record)
            return search(value if type(value) is str else ruby_to_s(value)) is not None

        return matches


@register("filter", "grep")
class GrepFilter(Filter):
    Options = _grep_options()
    keeps_str_values = True     # it only selects events

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        regexp_and: dict[str, _Expression] = {}
        regexp_or: dict[str, _Expression] = {}
        exclude_and: dict[str, _Expression] = {}
        exclude_or: dict[str, _Expression] = {}
        for name, target in (("regexp", regexp_and), ("exclude", exclude_or)):
            for i in range(1, REGEXP_MAX_NUM + 1):
                raw = getattr(options, f"{name}{i}")
                if raw is None:
                    continue
                key, sep, source = raw.partition(" ")
                if not sep:
                    raise ConfigError(f"{name}{i} does not contain 2 parameters")
                if key in target:
                    raise ConfigError(f"{name}{i} contains a duplicated key, {key}")
                try:
                    target[key] = _Expression(key, compile_ruby_regexp(source))
                except ValueError as exc:
                    raise ConfigError(f"{name}{i}: invalid regexp '{source}': {exc}") from None
        regexps = options.regexp or []
        excludes = options.exclude or []
        if len(regexps) > 1:
            self.log.info("Top level multiple <regexp> is interpreted as 'and' condition")
        for cond in regexps:
            self._add(regexp_and, cond, "Duplicate key: ")
        if len(excludes) > 1:
            self.log.info("Top level multiple <exclude> is interpreted as 'or' condition")
        for cond in excludes:
            self._add(exclude_or, cond, "Duplicate key: ")
        for group_name, regexp_target, exclude_target in (("and", regexp_and, exclude_and),
                                                          ("or", regexp_or, exclude_or)):
            for group in getattr(options, group_name) or []:
                if group.regexp and group.exclude:
                    raise ConfigError(f"Do not specify both <regexp> and <exclude> in <{group_name}>")
                for cond in group.regexp:
                    self._add(regexp_target, cond, f"Duplicate key in <{group_name}>: ")
                for cond in group.exclude:
                    self._add(exclude_target, cond, f"Duplicate key in <{group_name}>: ")
        self._regexp_and = list(regexp_and.values())
        self._regexp_or = list(regexp_or.values())
        self._exclude_and = list(exclude_and.values())
        self._exclude_or = list(exclude_or.values())
        self._keep = self._build_keep()
        self._single = self._single_expression()

    @staticmethod
    def _add(target: dict[str, _Expression], cond: Any, duplicate_message: str) -> None:
        if cond.key in target:
            raise ConfigError(duplicate_message + cond.key)
        target[cond.key] = _Expression(cond.key, cond.pattern)

    def _build_keep(self) -> Matcher:
        regexp_and = [e.matcher() for e in self._regexp_and]
        regexp_or = [e.matcher() for e in self._regexp_or]
        exclude_and = [e.matcher() for e in self._exclude_and]
        exclude_or = [e.matcher() for e in self._exclude_or]

        def keep(record: Record) -> bool:
            for m in regexp_and:
                if not m(record):
                    return False
            if regexp_or and not any(m(record) for m in regexp_or):
                return False
            if exclude_and and all(m(record) for m in exclude_and):
                return False
            for m in exclude_or:
                if m(record):
                    return False
            return True

        return keep

    def _single_expression(self) -> tuple[str, Any, bool, str | None] | None:
        """(key, search, is_exclude, plain literal or None) when the whole filter is one condition on
        a top-level key."""
        groups = [(self._regexp_and, False), (self._regexp_or, False),
                  (self._exclude_and, True), (self._exclude_or, True)]
        exprs = [(e, excl) for lst, excl in groups for e in lst]
        if len(exprs) != 1 or exprs[0][0].accessor.nested:
            return None
        expr, is_exclude = exprs[0]
        return str(expr.accessor.key), expr.search, is_exclude, _plain_literal(expr.pattern)

    def filter_batch(self, tag: str, events: list[Event]) -> list[Event]:
        single = self._single
        if single is not None:
            # The common case (`exclude1 path /healthcheck`): one search per event, all in C while
            # every record holds the key as a string; else Ruby's to_s per value below.
            key, search, is_exclude, literal = single
            try:
                values = map(itemgetter(key), map(_RECORD, events))
                # str.__contains__ raises TypeError for a value that is not a str, as search does
                found = map(search, values) if literal is None else map(str.__contains__, values, repeat(literal))
                return type(events)(compress(events, map(not_, found) if is_exclude else found))
            except (KeyError, TypeError):
                pass
            to_s = ruby_to_s
            if is_exclude:
                return [ev for ev in events
                        if search(v if type(v := ev[1].get(key)) is str else to_s(v)) is None]
            return [ev for ev in events
                    if search(v if type(v := ev[1].get(key)) is str else to_s(v)) is not None]
        keep = self._keep
        out: list[Event] = []
        for ev in events:
            try:
                if keep(ev[1]):
                    out.append(ev)
            except Exception as exc:  # Fluentd keeps the record when matching raises (e.g. dig on a String)
                self.log.warn("failed to grep events", error_class=Bare(_ruby_error_class(exc)), error=str(exc))
                out.append(ev)
        return out

    def filter(self, tag: str, time: int, record: Record) -> Record | None:
        return record if self.filter_batch(tag, [(time, record)]) else None


def _ruby_error_class(exc: BaseException) -> str:
    return "TypeError" if isinstance(exc, TypeError) else type(exc).__name__
