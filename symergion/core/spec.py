"""Parse note text: task specs (``task_branch:``, ``source:``, ``destination:``) and feedback.

One note may hold several sections, each starting with ``task_branch: NAME`` (the original's
"sub notes"): a note on a commit shared by several task branches addresses each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from symergion.config import Template


@dataclass(frozen=True)
class Section:
    """A part of a note: the task it names (None for text before any ``task_branch:``)."""

    task_branch: str | None
    text: str


@dataclass(frozen=True)
class TaskSpec:
    """A task as its initial note states it."""

    task_branch: str
    params: dict[str, str]
    rows: tuple[str, ...]
    target: str
    blob: str


def split_sections(text: str, task_branch_spec: str) -> list[Section]:
    """Split a note into sections at each ``task_branch:`` match.

    Args:
        text: the note text.
        task_branch_spec: the config's pattern, whose first group is the branch name.
    """
    matches = list(regex.finditer(task_branch_spec, text))
    if not matches:
        return [Section(None, text.strip())] if text.strip() else []
    sections: list[Section] = []
    head = text[: matches[0].start()].strip(" \t\n,;")
    if head:
        sections.append(Section(None, head))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip(" \t\n,;")
        sections.append(Section(match.group(1), body))
    return sections


def parse_params(text: str, template: Template) -> tuple[dict[str, str], tuple[str, ...]]:
    """Extract a template's params from a section; return them and the remaining text rows.

    The first match of each param's pattern wins; the rest of the text (with every match
    removed) becomes extra prompt rows, in order.
    """
    params: dict[str, str] = {}
    rest = text
    for name, pattern in template.params.items():
        found = regex.search(pattern, rest)
        if found:
            params[name] = found.group(1)
            rest = rest[: found.start()] + " " + rest[found.end() :]
    rows = tuple(
        row.strip(" \t,;") for row in rest.splitlines() if row.strip(" \t,;")
    )
    return params, rows


def looks_like_task_spec(text: str, templates: dict[str, Template]) -> bool:
    """Return whether text carries a destination param of any template."""
    return any(
        regex.search(t.params["destination"], text) is not None for t in templates.values()
    )


def feedback_text(section: Section) -> str:
    """Return a feedback section's text, stripped of separators."""
    return section.text.strip(" \t\n,;")
