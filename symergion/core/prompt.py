"""Prompt rendering: the stable part first (files, task, reasoning), feedback last, code starter.

Keeping feedback at the end means a feedback round shares every token before it with the
previous round, so an engine evaluates only the new lines (KV prefix reuse).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import regex

from symergion.core.compact import LEVELS, compact
from symergion.engine.base import max_new_tokens
from symergion.verify.names import render_code_starter

CLASS_NAME = r"(?:^|[\n]+)class\s+([\p{L}\p{N}_]+)\s*[\(:]"
FUNCTION_NAME = r"(?:^|[\n]+)(?:async\s+)?def\s+([\p{L}\p{N}_]+)\("
LACONIC = "Being laconic and return code only is at high importance"


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and the parts it was made of."""

    text: str
    initial: tuple[str, ...]
    feedback: tuple[str, ...]
    code_starter: str
    files: tuple[tuple[str, str], ...] = ()  # (path, content) as rendered: the source last

    @property
    def stable_prefix(self) -> int:
        """Return how many leading characters the next feedback round will share."""
        return len(self.text) - len(self.code_starter)

    @property
    def earlier_marks(self) -> tuple[int, ...]:
        """Return where the prompts of the earlier feedback rounds end their stable prefix.

        A round's prompt is the one before with one more feedback row: it begins with that
        prompt's stable prefix, whose KV an engine can keep (``Engine.generate``'s ``marks``).
        """
        marks = []
        for count in range(len(self.feedback)):
            head = render(list(self.files), list(self.initial), list(self.feedback[:count]),
                          self.code_starter)
            if head.stable_prefix > 0 and self.text.startswith(head.text[:head.stable_prefix]):
                marks.append(head.stable_prefix)
        return tuple(marks)

    @property
    def digest(self) -> str:
        """Return the sha256 of the prompt text."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def initial_message(self) -> str:
        """Return the initial prompt as a commit message."""
        return "\n".join(self.initial)


def call_to_action(action: str, source_code: str | None) -> str:
    """Return the call to action, naming the source's top-level classes and functions."""
    if source_code is None:
        return action
    names = [f"the class {n}" for n in regex.findall(CLASS_NAME, source_code)]
    names += [f"the function {n}" for n in regex.findall(FUNCTION_NAME, source_code)]
    return f"{action} for {', '.join(names)}" if names else f"{action} for the above code"


def code_starter(template_starter: str, params: Mapping[str, str]) -> str:
    """Return a template's code starter for a task: placeholders filled from its source and destination.

    ``{import_module}``, ``{module_name}``, ``{test_class}``, ``{module}`` and the path
    placeholders (``symergion.verify.names.render_code_starter``) need both paths; a starter
    without placeholders, or a task without a source, keeps the starter as written.
    """
    if "source" not in params or "destination" not in params:
        return template_starter
    return render_code_starter(template_starter, params["source"], params["destination"])


def reasoning_rows(reasoning: str) -> list[str]:
    """Format a reasoner's output as extra rows of the initial prompt (code blocks removed)."""
    text = regex.sub(r"(?s)\s*```[\p{L}\p{N}_+-]*\n.*?```\n?", "\n", reasoning)
    rows = [row.rstrip() for row in text.splitlines() if row.strip()]
    if not rows:
        return []
    return [*rows, LACONIC]


def render(
    files: list[tuple[str, str]],
    initial: list[str],
    feedback: list[str],
    code_starter: str,
) -> Prompt:
    """Render a prompt.

    Args:
        files: (path, content) pairs: the existing destination first, then the source.
        initial: the initial prompt rows: call to action, extra note rows, reasoning.
        feedback: the active feedback notes, in the order they were added.
        code_starter: the text the completion continues from.
    """
    parts: list[str] = []
    for path, content in files:
        parts.append(f"# {path}\n{content.rstrip()}\n\n")
    parts.extend(_comment(row) for row in initial)
    if feedback:
        parts.append("\n")
        parts.extend(_comment(note) for note in feedback)
    parts.append(code_starter)
    return Prompt(
        text="".join(parts),
        initial=tuple(initial),
        feedback=tuple(feedback),
        code_starter=code_starter,
        files=tuple(files),
    )


def compacted(prompt: Prompt, level: int) -> Prompt:
    """Return the prompt with its source (the last file) at a compaction ``level`` (``core.compact``).

    Level 0, or a prompt without files, is the prompt itself. Only what the model reads
    changes: a commit records the digest of the plan's prompt, so the same plan gives the same
    ``Symergion-Prompt`` whether or not its source had to be compacted to fit.
    """
    if level <= 0 or not prompt.files:
        return prompt
    *rest, (path, content) = prompt.files
    return render([*rest, (path, compact(content, level))], list(prompt.initial), list(prompt.feedback),
                  prompt.code_starter)


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines() or [""])


@dataclass(frozen=True)
class Fitted:
    """The prompt a model reads: the plan's, or with its source compacted to fit the context."""

    prompt: Prompt
    tokens: int  # the tokens of ``prompt``
    budget: int  # the tokens it may generate (``max_new_tokens``)
    level: int  # the compaction level (0: the source as it is)
    full_tokens: int  # the tokens of the plan's prompt


def fit(prompt: Prompt, count_tokens: Callable[[str], int], n_ctx: int, ntokens: int) -> Fitted | None:
    """Return the least compacted view of a prompt whose budget reaches ``ntokens``.

    Levels are tried in order (``core.compact``: long literals, then private bodies, then every
    body elided); a level that elides nothing more is skipped. When no level reaches
    ``ntokens``, the last one that leaves any budget is taken; None when none does.
    """
    chosen: Fitted | None = None
    full_tokens = 0
    seen: set[str] = set()
    for level in range(LEVELS):
        view = compacted(prompt, level)
        if view.text in seen:
            continue
        seen.add(view.text)
        tokens = count_tokens(view.text)
        full_tokens = full_tokens or tokens
        budget = max_new_tokens(n_ctx, tokens, ntokens)
        if budget > 0:
            chosen = Fitted(view, tokens, budget, level, full_tokens)
        if budget >= ntokens:
            break
    return chosen
