"""The repository's schema: the ``Symergion-*`` trailers of the commits symergion writes.

The repository is symergion's only state, and these trailers are its records: which model
answered which task and prompt, with which feedback, at what cost, and what verifying the
answer showed. Every trailer name is defined here and nowhere else; `Trailers` writes itself
as a commit message's trailer block and parses itself back from a message, so what one pass
writes is exactly what the next one (or another clone) reads.

A message's trailers are the ``Symergion-<Name>: value`` lines of its last paragraph, as git
writes a message: a body paragraph that happens to hold such a line is not read. Symergion
writes its block in one order (``ORDER``), so a message rebuilt from parsed trailers has the
bytes it had. A value this version cannot read (an unknown name, or a known name whose value
does not parse) is kept as written in ``Trailers.other`` and read as absent.

This module imports nothing of symergion's, so every layer can use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

PREFIX = "Symergion-"
MODEL = "Symergion-Model"
TASK = "Symergion-Task"
PROMPT = "Symergion-Prompt"  # sha256 of the rendered prompt
NOTES = "Symergion-Notes"  # the feedback applied, in order: "<annotated commit>:<note blob> ..." or "-"
TOKENS = "Symergion-Tokens"  # every token decoded for the commit's file
SECONDS = "Symergion-Seconds"  # the whole generation, prompts included
CACHE = "Symergion-Cache"  # hit | miss
STOP = "Symergion-Stop"  # why generation stopped
TRIMMED = "Symergion-Trimmed"  # "<chars> chars, <lines> lines" cut off the model's answer
DECODE = "Symergion-Decode"  # "<decoded> decoded, <kept> kept, <s> s decoding, <r> tok/s"
REASONING = "Symergion-Reasoning"  # "<sha256 of the base prompt> <rows>" ending the body
RESTART = "Symergion-Restart"  # archived attempts of a task started again
HAND = "Symergion-Hand"  # the hand commit whose file this commit brings back (a revoke)
REPAIR = "Symergion-Repair"  # "<digest of the notes' prompt> <round>"
FIX = "Symergion-Fix"  # what repairs without a model changed: "pinned 2 assertions, ..."
PRUNE = "Symergion-Prune"  # "<tests removed>", or "dropped"
VERIFY = "Symergion-Verify"  # a verification result (symergion.verify.result reads the value)
CUT = "Symergion-Cut"  # "max_seconds <s>: <what the time budget left out>"; may repeat

# The order symergion writes its trailers in: the prompt's, the figures, then what checking
# the answer added. A commit carries a subset, always in this order.
ORDER = (MODEL, TASK, PROMPT, NOTES, TOKENS, SECONDS, CACHE, STOP, TRIMMED, DECODE, REASONING,
         RESTART, HAND, REPAIR, FIX, PRUNE, VERIFY, CUT)


@dataclass(frozen=True)
class NoteRef:
    """One applied feedback: the commit its note annotates and the note's blob.

    Commits made before the trailer named the annotated commit list the blob alone
    (``target`` None).
    """

    target: str | None
    blob: str

    def __str__(self) -> str:
        return self.blob if self.target is None else f"{self.target}:{self.blob}"

    @classmethod
    def parse(cls, item: str) -> NoteRef:
        """Read one item of a ``Symergion-Notes`` value."""
        target, sep, blob = item.partition(":")
        return cls(target, blob) if sep else cls(None, item)


@dataclass(frozen=True)
class Trimmed:
    """What finishing cut off the end of a model's answer."""

    chars: int
    lines: int

    def __str__(self) -> str:
        return f"{self.chars} chars, {self.lines} lines"

    @classmethod
    def parse(cls, value: str) -> Trimmed:
        """Read a ``Symergion-Trimmed`` value (``<n> chars`` alone counts no lines).

        Raises:
            ValueError: the value is not of that form.
        """
        chars, _, lines = value.partition(", ")
        return cls(int(chars.split()[0]), int(lines.split()[0]) if lines else 0)


@dataclass(frozen=True)
class Decode:
    """The decoding figures of a generated file: the tokens kept, and the rate of decoding alone."""

    decoded: int
    kept: int
    seconds: float
    rate: float

    def __str__(self) -> str:
        return (f"{self.decoded} decoded, {self.kept} kept, {self.seconds:.1f} s decoding, "
                f"{self.rate:.1f} tok/s")

    @classmethod
    def parse(cls, value: str) -> Decode:
        """Read a ``Symergion-Decode`` value.

        Raises:
            ValueError: the value is not of that form.
        """
        decoded, kept, seconds, rate = _fields(value, ("decoded", "kept", "s decoding", "tok/s"))
        return cls(int(decoded), int(kept), float(seconds), float(rate))


@dataclass(frozen=True)
class Reasoning:
    """The reasoners' rows a commit's body ends with, and the base prompt they answered."""

    digest: str
    rows: int

    def __str__(self) -> str:
        return f"{self.digest} {self.rows}"

    @classmethod
    def parse(cls, value: str) -> Reasoning:
        """Read a ``Symergion-Reasoning`` value.

        Raises:
            ValueError: the value is not ``<digest> <rows>``.
        """
        digest, rows = _pair(value)
        return cls(digest, rows)


@dataclass(frozen=True)
class Repair:
    """The prompt a repair round belongs to (the notes' prompt) and the round's number."""

    digest: str
    round: int

    def __str__(self) -> str:
        return f"{self.digest} {self.round}"

    @classmethod
    def parse(cls, value: str) -> Repair:
        """Read a ``Symergion-Repair`` value.

        Raises:
            ValueError: the value is not ``<digest> <round>``.
        """
        digest, round_ = _pair(value)
        return cls(digest, round_)


@dataclass(frozen=True)
class Trailers:
    """The trailers of one commit of symergion's; None (or empty) where a commit has none.

    ``other`` keeps, as written, the trailers this version does not read: unknown names and
    known ones whose value does not parse.
    """

    model: str | None = None
    task: str | None = None
    prompt: str | None = None
    notes: tuple[NoteRef, ...] | None = None
    tokens: int | None = None
    seconds: float | None = None
    cache: str | None = None
    stop: str | None = None
    trimmed: Trimmed | None = None
    decode: Decode | None = None
    reasoning: Reasoning | None = None
    restart: int | None = None
    hand: str | None = None
    repair: Repair | None = None
    fix: str | None = None
    prune: str | None = None
    verify: str | None = None
    cut: tuple[str, ...] = ()
    other: Mapping[str, str] = field(default_factory=dict)

    def items(self) -> list[tuple[str, str]]:
        """Return the (name, value) pairs of the trailer block, in the order they are written."""
        values: dict[str, object | None] = {
            MODEL: self.model, TASK: self.task, PROMPT: self.prompt,
            NOTES: None if self.notes is None else " ".join(map(str, self.notes)) or "-",
            TOKENS: self.tokens,
            SECONDS: None if self.seconds is None else f"{self.seconds:.1f}",
            CACHE: self.cache, STOP: self.stop, TRIMMED: self.trimmed, DECODE: self.decode,
            REASONING: self.reasoning, RESTART: self.restart, HAND: self.hand, REPAIR: self.repair,
            FIX: self.fix, PRUNE: self.prune, VERIFY: self.verify,
        }
        pairs = [(name, str(values[name])) for name in ORDER if name != CUT and values[name] is not None]
        pairs += [(CUT, value) for value in self.cut]
        return pairs + list(self.other.items())

    def block(self) -> str:
        """Return the trailer block: one ``Name: value`` line per trailer, without a newline at the end."""
        return "\n".join(f"{name}: {value}" for name, value in self.items())

    def write(self, body: str) -> str:
        """Return a commit message: ``body``, a blank line, then the trailer block."""
        return f"{body}\n\n{self.block()}\n"

    def merged(self, later: Trailers) -> Trailers:
        """Return these trailers with every trailer ``later`` has set (its cut lines added after)."""
        changes: dict[str, object] = {f.name: getattr(later, f.name) for f in dataclasses.fields(later)
                                      if f.name not in ("cut", "other")
                                      and getattr(later, f.name) is not None}
        return dataclasses.replace(self, **changes, cut=(*self.cut, *later.cut),  # type: ignore[arg-type]
                                   other={**self.other, **later.other})

    @classmethod
    def parse(cls, message: str) -> Trailers:
        """Return the trailers of a commit message's last paragraph; never raises."""
        return cls.from_items(trailer_lines(message))

    @classmethod
    def from_items(cls, items: Iterable[tuple[str, str]]) -> Trailers:
        """Return the trailers of (name, value) pairs; a repeated name keeps its last value."""
        fields: dict[str, object] = {}
        other: dict[str, str] = {}
        cut: list[str] = []
        for name, value in items:
            if name == CUT:
                cut.append(value)
                continue
            reader = _READERS.get(name)
            if reader is None:
                other[name] = value
                continue
            attribute, parse = reader
            try:
                fields[attribute] = parse(value)
            except (ValueError, IndexError):
                other[name] = value
                fields.pop(attribute, None)
                continue
            other.pop(name, None)
        return cls(**fields, cut=tuple(cut), other=other)  # type: ignore[arg-type]


def trailer_lines(message: str) -> list[tuple[str, str]]:
    """Return the ``Symergion-*`` (name, value) lines of a message's last paragraph, in order."""
    paragraphs = message.strip().split("\n\n")
    found: list[tuple[str, str]] = []
    for line in paragraphs[-1].splitlines():
        name, sep, value = line.partition(": ")
        if sep and name.startswith(PREFIX):
            found.append((name, value.strip()))
    return found


def parse_trailers(message: str) -> dict[str, str]:
    """Return a message's ``Symergion-*`` trailers as written, by name (a repeated one: its last)."""
    return dict(trailer_lines(message))


def body_of(message: str) -> str:
    """Return what a message of symergion's holds before its trailer block (which starts with
    ``Symergion-Model``); the whole message when it has no such block."""
    return message.split(f"\n\n{MODEL}:")[0]


def _notes(value: str) -> tuple[NoteRef, ...]:
    return tuple(NoteRef.parse(item) for item in value.split() if item != "-")


def _count(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise ValueError(value)
    return int(value)


def _pair(value: str) -> tuple[str, int]:
    words = value.split()
    if len(words) != 2:
        raise ValueError(value)
    return words[0], _count(words[1])


def _fields(value: str, labels: tuple[str, ...]) -> list[str]:
    """Return the numbers of ``<n> <label>, <n> <label>, ...``, in the order of ``labels``."""
    parts = value.split(", ")
    if len(parts) != len(labels):
        raise ValueError(value)
    numbers = []
    for part, label in zip(parts, labels, strict=True):
        number, sep, rest = part.partition(" ")
        if not sep or rest != label:
            raise ValueError(value)
        numbers.append(number)
    return numbers


_READERS: dict[str, tuple[str, Callable[[str], object]]] = {
    MODEL: ("model", str), TASK: ("task", str), PROMPT: ("prompt", str), NOTES: ("notes", _notes),
    TOKENS: ("tokens", int), SECONDS: ("seconds", float), CACHE: ("cache", str),
    STOP: ("stop", str), TRIMMED: ("trimmed", Trimmed.parse), DECODE: ("decode", Decode.parse),
    REASONING: ("reasoning", Reasoning.parse), RESTART: ("restart", int), HAND: ("hand", str),
    REPAIR: ("repair", Repair.parse), FIX: ("fix", str), PRUNE: ("prune", str),
    VERIFY: ("verify", str),
}
