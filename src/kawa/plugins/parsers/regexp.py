"""The `regexp` parser: named captures of a Ruby regexp become the record (Fluentd RegexpParser).
Unanchored like Ruby's Regexp#match; groups that did not participate are left out of the record.
"""

from __future__ import annotations

import re
from itertools import repeat, starmap
from operator import itemgetter
from typing import Any, Callable, Sequence

from kawa.config.schema import option
from kawa.engine.registry import register
from kawa.errors import ConfigError, Problem
from kawa.event import StrValueEvents
from kawa.plugins.base import ParseFailure, PluginContext
from kawa.plugins.parsers._common import NOT_MATCHED, BaseParser, ParsedEvent, ParserOptions
from kawa.plugins.parsers._possessive import possessive_variant


def sre_tree(pattern: re.Pattern[str]) -> Any:
    """`pattern` as `re`'s own parser reads it (None if this Python's `re` has no such parser): for
    the read-only analyses below, which share one parse."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
        return sre_parse.parse(pattern.pattern, pattern.flags)
    except Exception:
        return None


def fast_matcher(pattern: re.Pattern[str], fast: re.Pattern[str] | None = None, *,
                 tree: Any = None) -> Callable[[str], re.Match[str] | None]:
    """Ruby's unanchored match as cheaply as possible: a pattern that starts with ^ or \\A outside any
    alternation can only match at position 0 of a single-line text, so `match` replaces `search` there.
    `fast`: an equivalent pattern to match with (possessive_variant); `pattern` is the one analysed,
    `tree` its sre_tree when the caller has it."""
    runner = pattern if fast is None else fast
    try:
        from re import _constants as sre_const  # type: ignore[attr-defined]
        parsed = tree if tree is not None else sre_tree(pattern)
        first = parsed[0] if len(parsed) else None
        anchored = first is not None and first[0] is sre_const.AT and \
            first[1] in (sre_const.AT_BEGINNING, sre_const.AT_BEGINNING_STRING)
        at_string_start = anchored and first[1] is sre_const.AT_BEGINNING_STRING
    except Exception:
        anchored = at_string_start = False
    if not anchored:
        return runner.search
    if at_string_start or not (pattern.flags & re.MULTILINE):
        return runner.match
    match, search = runner.match, runner.search
    return lambda text: match(text) if "\n" not in text else search(text)


def record_builder(pattern: re.Pattern[str]) -> Callable[..., dict[str, Any]] | None:
    """A function of a match's groups() (every capturing group, in order) that returns the record
    match.groupdict() gives: the named groups, in groupindex order. None when there is nothing to build.

    groupdict looks each name up in groupindex and grows its dict one key at a time; a dict display
    with constant keys is built presized in one step. On the seed's regexp (10 named groups and the
    unnamed time), micro-benchmark on 30,000 lines: groupdict 2.2 us a line, groups() and this
    function 1.6 us; the 1M-line burst took x0.95-0.97 the CPU (bench/ab.py). The function is
    generated (as namedtuple and dataclasses do): parameter names are a0..aN, the keys are repr()'d
    literals, so nothing of the pattern's text reaches the code but its group names as constants."""
    if not pattern.groupindex or pattern.groups > 10_000:     # thousands of groups: groupdict will do
        return None
    params = ", ".join(f"a{i}" for i in range(pattern.groups))
    items = ", ".join(f"{name!r}: a{index - 1}" for name, index in pattern.groupindex.items())
    return eval(f"lambda {params}: {{{items}}}", {})      # noqa: S307 - generated from group names only


def optional_groups(pattern: re.Pattern[str], *, tree: Any = None) -> tuple[str, ...] | None:
    """The named groups that a successful match may leave unset (None in groupdict): those inside a
    repeat that may run zero times, an alternative, a lookaround or a conditional. Every other named
    group takes part in every match, so the parsers need not look at its value for None.
    None: the pattern holds something this walk does not know (then every group counts as optional).
    `tree`: the pattern's sre_tree when the caller has it."""
    return _optional_names(pattern, _optional_contexts(pattern, tree))


def unset_witnesses(pattern: re.Pattern[str], *, tree: Any = None) -> tuple[str, ...] | None:
    """One optional named group per optional part of the pattern (see optional_groups): the named
    groups of one part (`(?: "(?<referer>..)" "(?<agent>..)")?`) take part in a match together, so
    when the witness of each part is set, no named group is unset. Checking 2 witnesses instead of
    4 optional groups saves ~110 ns a line on the seed's regexp. None: not known (check every value)."""
    return _witness_names(pattern, _optional_contexts(pattern, tree))


def _optional_names(pattern: re.Pattern[str], contexts: dict[int, int] | None) -> tuple[str, ...] | None:
    if contexts is None:
        return None
    return tuple(name for name, index in pattern.groupindex.items() if index in contexts)


def _witness_names(pattern: re.Pattern[str], contexts: dict[int, int] | None) -> tuple[str, ...] | None:
    if contexts is None:
        return None
    witnesses: dict[int, str] = {}
    for name, index in pattern.groupindex.items():
        if index in contexts:
            witnesses.setdefault(contexts[index], name)
    return tuple(witnesses.values())


def _optional_contexts(pattern: re.Pattern[str], tree: Any) -> dict[int, int] | None:
    """group index -> id of the innermost optional part holding it, for the groups a match may leave
    unset. Groups with the same id take part together: each optional part (a repeat that may run
    zero times, each alternative, lookaround or conditional branch) gets an id of its own, and a
    group inside a part takes part whenever the part does unless it sits in a further optional part.
    None: the pattern holds something this walk does not know."""
    try:
        from re import _constants as c  # type: ignore[attr-defined]
        repeats = (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT))
        leaves = (c.LITERAL, c.NOT_LITERAL, c.IN, c.ANY, c.AT, c.CATEGORY, c.GROUPREF)   # hold no group
        contexts: dict[int, int] = {}
        ids = iter(range(1, 1 << 30))

        def walk(items: Any, context: int | None) -> None:
            for op, av in items:
                if op is c.SUBPATTERN:
                    if context is not None and av[0] is not None:
                        contexts[av[0]] = context
                    walk(av[-1], context)
                elif op in repeats:
                    walk(av[2], next(ids) if av[0] == 0 else context)
                elif op is c.BRANCH:
                    for alternative in av[1]:
                        walk(alternative, next(ids))
                elif op is c.ATOMIC_GROUP:
                    walk(av, context)
                elif op in (c.ASSERT, c.ASSERT_NOT):
                    walk(av[1], next(ids))
                elif op is c.GROUPREF_EXISTS:
                    walk(av[1], next(ids))
                    if av[2] is not None:
                        walk(av[2], next(ids))
                elif op not in leaves:
                    raise LookupError(op)      # an op that may hold groups: do not guess

        walk(tree if tree is not None else sre_tree(pattern), None)
    except Exception:
        return None
    return contexts


class RegexpOptions(ParserOptions):
    expression = option(type="regexp", doc="Regexp with named captures, /.../ with i or m flags")
    ignorecase = option(False, "bool", deprecated="Use /pattern/i instead, this option is no longer effective")
    multiline = option(False, "bool", deprecated="Use /pattern/m instead, this option is no longer effective")
    time_key = "time"


@register("parser", "regexp")
class RegexpParser(BaseParser):
    Options = RegexpOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        expression: re.Pattern[str] = options.expression
        if options.ignorecase or options.multiline:
            flags = expression.flags | (re.IGNORECASE if options.ignorecase else 0) | \
                (re.DOTALL if options.multiline else 0)
            expression = re.compile(expression.pattern, flags)
        if not expression.groupindex:
            raise ConfigError([Problem("No named captures in 'expression' parameter. "
                                       "The regexp must have at least one named capture", None, ())])
        self.expression = expression
        # matching uses the possessive variant (same matches, less backtracking state); everything
        # else sees `expression` as configured
        tree = sre_tree(expression)
        contexts = _optional_contexts(expression, tree)       # one walk for both analyses
        optional = _optional_names(expression, contexts)
        witnesses = _witness_names(expression, contexts)
        # The time group is matched unnamed and read by number when the time leaves the record
        # anyway, in every match (not optional), on parse_batch's path (a subclass with its own
        # matching keeps it named).
        key = self.time_key
        unnamed = key if (key is not None and not self.keep_time_key and key in expression.groupindex
                          and optional is not None and key not in optional
                          and type(self).parse_batch is RegexpParser.parse_batch) else None
        fast, _changed = possessive_variant(expression, unnamed)     # rewrites a parse of its own
        self._time_group = expression.groupindex[key] if unnamed is not None and key not in fast.groupindex else None
        self._match = fast_matcher(expression, fast, tree=tree)
        # fast_matcher wraps `match` in a newline check for ^-anchored multiline patterns
        # every match comes from `fast`, so its groups() build the record
        self._build = record_builder(fast)
        # the groups whose value may be None (None: any group may be), spelled with the very key
        # objects of the records (the builder's constants), so a lookup finds them by identity
        keys = fast.groupindex if self._build is None else self._build(*range(fast.groups))
        own_keys = {name: name for name in keys}
        self.optional_groups = None if optional is None else tuple(own_keys.get(k, k) for k in optional)
        self.unset_witnesses = None if witnesses is None else tuple(own_keys.get(k, k) for k in witnesses)
        self._line_match = fast.match if getattr(self._match, "__name__", "") == "<lambda>" else None

    def parse_batch(self, texts: Sequence[str]) -> tuple[list[ParsedEvent], list[ParseFailure]]:
        match = self._match
        # Lines from tail never hold a newline: then an anchored pattern needs no per-line check
        # (one C-level scan of the batch instead of a Python call per line).
        if self._line_match is not None and "\n" not in "\x00".join(texts):
            match = self._line_match
        return parse_with(self, match, texts, time_group=self._time_group, build=self._build)

    def parse_into(self, text: str, events: list[ParsedEvent], failures: list[ParseFailure]) -> None:
        got, bad = self.parse_batch((text,))
        events.extend(got)
        failures.extend(bad)


def parse_with(parser: BaseParser, match: Callable[[str], Any], texts: Sequence[str],
               fix: Callable[[dict[str, Any]], None] | None = None,
               time_group: int | None = None,
               build: Callable[..., dict[str, Any]] | None = None) -> tuple[list[ParsedEvent], list[ParseFailure]]:
    """The regexp loop: match -> record (groupdict, or `build`; None dropped) -> time (cached per
    batch) -> types.

    `match(text)` returns a match object or None; `fix` adjusts a record (fast-path variants; its
    values stay str: a batch without failures or type conversion is a StrValueEvents).
    `time_group`: the number of the (unnamed) group holding the time string, when `match` matches
    with the time group unnamed (possessive_variant's `unnamed`; never with `fix`).
    `build`: record_builder of the one pattern every match comes from (None: groupdict).
    Each line is matched once: the per-line loop takes over the same match objects when the
    whole-batch path steps aside."""
    matches = list(map(match, texts))
    whole = _parse_whole_batch(parser, matches, fix, time_group, build)
    if whole is not None:
        return whole, []
    return parse_each(parser, texts, matches, fix, time_group, build)


def parse_each(parser: BaseParser, texts: Sequence[str], matches: Sequence[Any],
               fix: Callable[[dict[str, Any]], None] | None = None,
               time_group: int | None = None,
               build: Callable[..., dict[str, Any]] | None = None) -> tuple[list[ParsedEvent], list[ParseFailure]]:
    """parse_with one line at a time (`matches[i]`: the match of `texts[i]` or None): any batch,
    failures included."""
    events: list[ParsedEvent] = []
    failures: list[ParseFailure] = []
    append = events.append
    key = parser.time_key
    keep = parser.keep_time_key
    tparse = parser.time_parser.parse
    terr = parser._time_error
    convert = parser.convert_values if parser.needs_convert else None
    times: dict[Any, int] = {}          # busy logs repeat the same time string many times a batch
    # Only a pattern with optional parts can leave a group unset (None): skip the scan otherwise.
    optional = getattr(parser, "optional_groups", None) != ()
    for text, m in zip(texts, matches):
        if m is None:
            failures.append(ParseFailure(text, NOT_MATCHED, "unmatched"))
            continue
        record = m.groupdict() if build is None else build(*m.groups())
        # all(): a truth test per value, 3x cheaper than `None in` (a rich compare each); an empty
        # string also takes the filtering path, which drops only the None values
        if optional and not all(record.values()):
            record = {k: v for k, v in record.items() if v is not None}
        if fix is not None:
            fix(record)
        time = None
        if time_group is not None:
            src = m.group(time_group)
        elif key is None:
            src = None
        else:
            src = record.get(key) if keep else record.pop(key, None)
        if src is not None:
            time = times.get(src)
            if time is None:
                try:
                    time = times[src] = tparse(src)
                except terr as exc:
                    failures.append(ParseFailure(text, str(exc), "invalid"))
                    continue
        if convert is not None:
            convert(record)
        append((time, record))
    return events, failures


def _parse_whole_batch(parser: BaseParser, matches: list[Any], fix: Callable[[dict[str, Any]], None] | None,
                       time_group: int | None = None,
                       build: Callable[..., dict[str, Any]] | None = None) -> list[ParsedEvent] | None:
    """parse_with's result for a batch where every line matched and every time parses (nearly every
    batch of a healthy log), one step at a time over the whole batch: each step is one `map` run in
    C instead of a Python loop turn per line, about 0.5 µs a line less. None: some line fails, so
    the per-line loop does the batch (its records anew from the match objects: nothing here has a
    side effect before that)."""
    if not all(matches):                # a match object is always true; a line that failed is None
        return None
    groups: list[tuple[Any, ...]] | None = None
    if build is None:
        records = list(map(_GROUPDICT, matches))
    else:
        groups = list(map(_GROUPS, matches))
        records = list(starmap(build, groups))
    if _some_falsy(records, getattr(parser, "unset_witnesses", None)):
        # a group that took no part is None: left out of the record, as in the per-line loop
        records = [r if all(r.values()) else {k: v for k, v in r.items() if v is not None} for r in records]
    if fix is not None:
        for record in records:
            fix(record)
    key = parser.time_key
    if key is None:
        times: list[Any] = [None] * len(records)
    else:
        sources: list[Any] | None
        if time_group is not None:      # a group every match sets
            sources = list(map(_GROUP, matches, repeat(time_group)) if groups is None
                           else map(itemgetter(time_group - 1), groups))
            if not all(sources):        # an empty time string: the loop reports the line
                return None
        else:
            take = dict.get if parser.keep_time_key else dict.pop
            sources = list(map(take, records, repeat(key), repeat(_MISSING)))
            if _MISSING in sources:     # (an identity test per item first: a cheap scan)
                if sources.count(_MISSING) != len(sources):
                    return None         # some records have a time and some not: the loop sorts them
                sources = None          # the pattern has no time group: no record has a time
        if sources is None:
            times = [None] * len(records)
        else:
            parsed: dict[Any, Any] = {}     # busy logs repeat the same time string many times a batch
            tparse = parser.time_parser.parse
            try:
                for source in set(sources):
                    parsed[source] = tparse(source)
            except parser._time_error:
                return None
            times = list(map(parsed.__getitem__, sources))
    if parser.needs_convert:
        convert = parser.convert_values
        for record in records:
            convert(record)
        return list(zip(times, records))
    return StrValueEvents(zip(times, records))      # named groups give str values only


def _some_falsy(records: list[dict[str, Any]], witnesses: tuple[str, ...] | None) -> bool:
    """True when a record may hold None: the witness of some optional part is falsy (None or "").
    `witnesses`: unset_witnesses (None: every value is looked at), one C-level scan per key."""
    if witnesses is None:
        return not all(map(all, map(dict.values, records)))
    return not all(all(map(itemgetter(key), records)) for key in witnesses)


_GROUPDICT = re.Match.groupdict
_GROUP = re.Match.group
_GROUPS = re.Match.groups
_MISSING = object()
