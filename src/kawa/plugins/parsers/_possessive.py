"""Auto-possessive repeats: the same matches as a pattern, found with less backtracking bookkeeping.

Log regexps are runs of `[^ ]*` separated by the character the class excludes (`[^ ]* `,
`[^\\]]*\\]`, `[^"]*"`). Python's `re` keeps a backtracking point for every character such a greedy
repeat takes, although giving any back can never succeed: the character that must come next is one
the repeat cannot take, so the only place the run can end is where it ends. PCRE rewrites those
repeats as possessive ("auto-possessification"); `re` does not. Doing it here (Python 3.11 added
possessive repeats) makes the seed's nginx regexp match about 35 % faster.

A repeat is made possessive only when that reasoning holds for certain: its item is a single
character (a literal, a negated literal or a class made of literals and ranges) and the next thing
in the pattern is a literal character the item cannot match, possibly after the end of the groups
that hold the repeat. Anything else (categories such as \\s, `.`, branches, repeated groups,
case-insensitive patterns) is left alone. The variant is only used to match; the original pattern
stays what the rest of kawa sees (its text, error messages).
"""

from __future__ import annotations

import re
from typing import Any

try:        # the parser and compiler behind `re` (private modules, stable since 3.11)
    from re import _compiler as _sre_compiler  # type: ignore[attr-defined]
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _sre_parser  # type: ignore[attr-defined]
except ImportError:     # pragma: no cover - another Python: match with the pattern as written
    _sre_parser = None


def possessive_variant(pattern: re.Pattern[str], unnamed: str | None = None) -> tuple[re.Pattern[str], int]:
    """(`pattern` with every provably useless backtracking repeat made possessive, how many were).

    `unnamed`: a named group to match as an unnamed one (same number): groupdict then leaves it
    out, and its value is taken by number (the regexp parser's time group: a record that never
    holds it costs one dict entry less, and its dict one resize less, than one it is popped from).
    Returns `pattern` itself, 0 when nothing can be changed (or this Python's `re` differs)."""
    if _sre_parser is None or pattern.flags & re.IGNORECASE or not isinstance(pattern.pattern, str):
        return pattern, 0
    try:
        tree = _sre_parser.parse(pattern.pattern, pattern.flags)
        changed = _possessify(tree, None)
        if unnamed is not None:
            del tree.state.groupdict[unnamed]
        elif not changed:
            return pattern, 0
        variant = _sre_compiler.compile(tree, pattern.flags)
    except Exception:   # an internal of `re` we do not know: the pattern as written is always right
        return pattern, 0
    expected = {name: index for name, index in pattern.groupindex.items() if name != unnamed}
    if variant.groupindex != expected or variant.groups != pattern.groups:
        return pattern, 0
    return variant, changed


def _possessify(seq: Any, follower: int | None) -> int:
    """Rewrite the repeats of one sequence in place; `follower` is the literal character that must
    come right after the sequence (None: unknown). Returns how many repeats became possessive."""
    items = seq.data
    changed = 0
    for i, (op, av) in enumerate(items):
        after = _first_literal(items[i + 1]) if i + 1 < len(items) else follower
        if op is _c.MAX_REPEAT:
            _lo, _hi, body = av
            if after is not None and len(body.data) == 1 and _cannot_match(body.data[0], after):
                items[i] = (_c.POSSESSIVE_REPEAT, av)
                changed += 1
            else:
                # what follows the body's end may be the body again: unknown
                changed += _possessify(body, None)
        elif op is _c.SUBPATTERN:
            _group, add_flags, del_flags, body = av
            if not add_flags and not del_flags:     # (?i:...) and friends change what literals match
                changed += _possessify(body, after)
        elif op is _c.BRANCH:
            for alternative in av[1]:
                changed += _possessify(alternative, None)
        elif op is _c.ATOMIC_GROUP:
            changed += _possessify(av, None)
    return changed


def _first_literal(item: tuple[Any, Any]) -> int | None:
    """The character `item` must start with when it is certain (a literal, a repeat of a literal taken
    at least once, or a plain group starting so); else None."""
    op, av = item
    if op is _c.LITERAL:
        return av  # type: ignore[no-any-return]
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
        lo, _hi, body = av
        if lo >= 1 and len(body.data) == 1 and body.data[0][0] is _c.LITERAL:
            return body.data[0][1]  # type: ignore[no-any-return]
        return None
    if op is _c.SUBPATTERN:
        _group, add_flags, del_flags, body = av
        if not add_flags and not del_flags and body.data:
            return _first_literal(body.data[0])
    return None


def _cannot_match(item: tuple[Any, Any], char: int) -> bool:
    """True when the single-character `item` certainly cannot match `char`."""
    op, av = item
    if op is _c.LITERAL:
        return av != char  # type: ignore[no-any-return]
    if op is _c.NOT_LITERAL:
        return av == char  # type: ignore[no-any-return]
    if op is _c.IN:
        members = list(av)
        negated = bool(members) and members[0][0] is _c.NEGATE
        if negated:
            members = members[1:]
        hits = []
        for member_op, member_av in members:
            if member_op is _c.LITERAL:
                hits.append(member_av == char)
            elif member_op is _c.RANGE:
                hits.append(member_av[0] <= char <= member_av[1])
            else:           # categories (\s, \d), nested negations: not worth being clever
                return False
        return any(hits) if negated else not any(hits)
    return False
