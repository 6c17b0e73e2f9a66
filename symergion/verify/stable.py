"""Checks that hold when a value differs between runs: what every run of the code agrees on.

A pinned value is the regression oracle of the repairs (``verify.repair``). Some values are new
in every run (a temporary path, a salted hash, a time): pinned, they fail the next run, and a
test cut before its failing assertion keeps a call that checks nothing. What the runs agree on
still says something about the code, in this order:

1. determinism: two calls with the same input give the same value (within one run);
2. the type of the value;
3. a property the value shows in every run: its length, a prefix or a suffix, that it names a
   path that exists, that it is one of the test's own inputs, that its items are sorted;
4. a round trip, where the module has a function whose name says it undoes the call.

Each holds in every observed run, so it is no guess; the next verification run confirms it,
and a determinism check that fails there is taken out again. When nothing holds, the test goes.
"""

from __future__ import annotations

import ast
import contextlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One observed value of an assertion's actual side: its repr when a literal, and its facts."""

    literal: str | None
    facts: dict[str, object] = field(default_factory=dict, compare=False)


def literal_facts(text: str) -> dict[str, object]:
    """Return the facts of a literal written in a test (a pinned value), as the runner gives them.

    Whether a path exists cannot be told outside the run, so it is left out.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return {}
    kind = type(value)
    found: dict[str, object] = {"type": f"{kind.__module__}.{kind.__qualname__}"}
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        found["len"] = len(value)
    if isinstance(value, (list, tuple)) and len(value) > 1:
        with contextlib.suppress(TypeError):
            found["sorted"] = list(value) == sorted(value)
    return found


def differ(samples: list[Sample]) -> bool:
    """Return whether the samples show the value changing between runs.

    Values that are no literal cannot be compared here: they differ when their types do.
    """
    if len(samples) < 2:
        return False
    literals = {s.literal for s in samples if s.literal is not None}
    if len(literals) > 1:
        return True
    # A value withheld from the record (words not from the checkout) still has its digest.
    digests = {s.facts.get("digest") for s in samples if s.literal is None and s.facts.get("digest")}
    if len(digests) > 1:
        return True
    types = {s.facts.get("type") for s in samples if s.facts.get("type")}
    return len(types) > 1 or (bool(literals) and any(s.literal is None for s in samples))


@dataclass(frozen=True)
class Stable:
    """The checks written for a value that differs between runs, and what they say."""

    lines: tuple[str, ...]  # assertion statements, without indentation
    said: tuple[str, ...]  # for the commit message: "deterministic", "type str", "length 13", ...
    needs_os: bool = False


def _value(literal: str | None) -> object:
    if literal is None:
        return None
    try:
        return ast.literal_eval(literal)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _common_prefix(values: list[str] | list[bytes]) -> str | bytes:
    first = values[0]
    size = len(first)
    for other in values[1:]:
        size = min(size, len(other))
        for index in range(size):
            if other[index] != first[index]:
                size = index
                break
    return first[:size]


_AFFIX_CHARS = 40
# Where a prefix or suffix may end: two random names may share a character or two by chance
# (``/tmp/tmpa1`` and ``/tmp/tmpa2``), and a third run would not, so an affix stops at a separator.
_SEPARATORS = frozenset("/\\.:;,_-$#@=+ |")


def _to_separator(affix: str | bytes, *, prefix: bool) -> str | bytes:
    """Return an affix cut back to its last separator (a prefix) or from its first (a suffix)."""
    chars = [chr(c) if isinstance(c, int) else c for c in affix]
    places = [i for i, c in enumerate(chars) if c in _SEPARATORS]
    if not places:
        return affix[:0]
    return affix[: places[-1] + 1] if prefix else affix[places[0]:]


def _affixes(owner: str, actual: str, starts: list[str] | list[bytes], ends: list[str] | list[bytes],
             lines: list[str], said: list[str]) -> None:
    """Add the prefix every start shares and the suffix every end shares, cut to separators."""
    prefix = _to_separator(_common_prefix(starts)[:_AFFIX_CHARS], prefix=True)
    if prefix:
        lines.append(f"{owner}.assertTrue({actual}.startswith({prefix!r}))")
        said.append(f"prefix {prefix!r}")
    reversed_ = [t[::-1] for t in ends]
    suffix = _to_separator(_common_prefix(reversed_)[:_AFFIX_CHARS][::-1],  # type: ignore[arg-type]
                           prefix=False)
    if suffix:
        lines.append(f"{owner}.assertTrue({actual}.endswith({suffix!r}))")
        said.append(f"suffix {suffix!r}")


def stable_checks(owner: str, actual: str, samples: list[Sample], *, type_expression: str | None,
                  type_name: str | None = None, again: str | None = None,
                  inputs: dict[str, object] | None = None, inverse: tuple[str, str] | None = None) -> Stable:
    """Return the checks of a value that every sample agrees on (none: nothing holds).

    Args:
        owner: what the assertions are called on (``self``).
        actual: the expression of the value (``result``).
        samples: the value as each run observed it.
        type_expression: how the test file names the samples' common type (None: it cannot, or
            the samples' types differ).
        type_name: the common type's class name, checked by name when the file cannot name it.
        again: an expression that computes the value once more (the call), for determinism.
        inputs: the test's bound literal values by name, for membership.
        inverse: (call of the function that undoes the one observed, with ``{}`` for the value;
            the input it should give back), for a round trip.
    """
    lines: list[str] = []
    said: list[str] = []
    needs_os = False
    if again is not None:
        lines.append(f"{owner}.assertEqual({actual}, {again})")
        said.append("deterministic")
    if type_expression is not None:
        lines.append(f"{owner}.assertIsInstance({actual}, {type_expression})")
        said.append(f"type {type_expression}")
    elif type_name is not None:
        lines.append(f"{owner}.assertEqual(type({actual}).__name__, {type_name!r})")
        said.append(f"type {type_name}")
    lengths = {s.facts.get("len") for s in samples}
    if len(lengths) == 1 and isinstance(next(iter(lengths)), int):
        length = next(iter(lengths))
        lines.append(f"{owner}.assertEqual(len({actual}), {length})")
        said.append(f"length {length}")
    values = [_value(s.literal) for s in samples]
    heads, tails = [s.facts.get("head") for s in samples], [s.facts.get("tail") for s in samples]
    for kind in (str, bytes):
        if all(isinstance(v, kind) for v in values) and len(set(values)) > 1:
            texts: list[str] | list[bytes] = values  # type: ignore[assignment]
            _affixes(owner, actual, texts, texts, lines, said)
            break
    else:
        # Withheld strings: their recordable head and tail stand for them.
        if samples and differ(samples) and all(isinstance(h, str) or isinstance(t, str)
                                                for h, t in zip(heads, tails, strict=True)):
            _affixes(owner, actual, [h if isinstance(h, str) else "" for h in heads],
                     [t if isinstance(t, str) else "" for t in tails], lines, said)
    if samples and all(s.facts.get("exists") is True for s in samples):
        lines.append(f"{owner}.assertTrue(os.path.exists({actual}))")
        said.append("a path that exists")
        needs_os = True
    for name, collection in (inputs or {}).items():
        if not isinstance(collection, (list, tuple, set, frozenset, dict, str, bytes)) or not collection:
            continue
        try:
            inside = all(s.literal is not None and v in collection
                         for s, v in zip(samples, values, strict=True))
        except TypeError:
            continue
        if inside and samples:
            lines.append(f"{owner}.assertIn({actual}, {name})")
            said.append(f"one of {name}")
            break
    if samples and all(s.facts.get("sorted") is True for s in samples):
        lines.append(f"{owner}.assertEqual(list({actual}), sorted({actual}))")
        said.append("sorted")
    properties = len(said) - (again is not None) - (type_expression is not None or type_name is not None)
    if inverse is not None and not properties:
        call, given = inverse
        lines.append(f"{owner}.assertEqual({call.format(actual)}, {given})")
        said.append("round trip")
    return Stable(tuple(lines), tuple(said), needs_os)

