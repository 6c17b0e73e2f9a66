"""The note grammar, both ways: parse task specs and feedback out of notes, and write them.

One note may hold several sections, each starting with ``task_branch: NAME`` (the original's
"sub notes"): a note on a commit shared by several task branches addresses each of them. What
symergion writes (``ergon start``, ``revoke``) is checked by parsing it back, so a note it
writes always means what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from symergion.config.schema import Config, Template
from symergion.errors import NoteError

PATH_PARAMS = ("source", "destination")


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


@dataclass(frozen=True)
class NoteSection:
    """A section of a note as a pass reads it: the task it starts, else feedback.

    ``template`` is the config's template for the task branch the section names (None for an
    unnamed section, or a name no template matches); ``spec`` is the task it starts, when that
    template finds a destination in it.
    """

    section: Section
    template: Template | None
    spec: TaskSpec | None

    @property
    def feedback(self) -> str:
        """Return the section's text as feedback."""
        return feedback_text(self.section)


def read_note(text: str, target: str, blob: str, config: Config) -> list[NoteSection]:
    """Return a note's sections, each with the task it starts (the one reader of task specs).

    Args:
        text: the note text.
        target: the commit the note annotates.
        blob: the note's blob.
        config: the config whose ``task_branch_spec`` and templates the note is read with.
    """
    read: list[NoteSection] = []
    for section in split_sections(text, config.task_branch_spec):
        name = section.task_branch
        template = config.template_for(name) if name is not None else None
        spec = None
        if name is not None and template is not None:
            params, rows = parse_params(section.text, template)
            if "destination" in params:
                spec = TaskSpec(name, params, rows, target, blob)
        read.append(NoteSection(section, template, spec))
    return read


def normalise_path(path: str) -> str:
    """Drop ``.`` segments (``./utils/x.py`` -> ``utils/x.py``); git trees have no ``.`` entries."""
    parts = [part for part in path.split("/") if part != "."]
    return "/".join(parts) if parts else path


def parse_params(text: str, template: Template) -> tuple[dict[str, str], tuple[str, ...]]:
    """Extract a template's params from a section; return them and the remaining text rows.

    The first match of each param's pattern wins; the rest of the text (with every match
    removed) becomes extra prompt rows, in order. Paths lose their ``.`` segments.
    """
    params: dict[str, str] = {}
    rest = text
    for name, pattern in template.params.items():
        found = regex.search(pattern, rest)
        if found:
            value = found.group(1)
            params[name] = normalise_path(value) if name in PATH_PARAMS else value
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


# -- writing ---------------------------------------------------------------------------------

_SPACE = regex.compile(r"\[\\s\]|\\s")
_QUANTIFIER = regex.compile(r"^[*+?]|^\{\d*,?\d*\}")


def literal_label(pattern: str) -> str:
    """Return the literal text a pattern expects before its first group (``task_branch: ``).

    Raises:
        NoteError: the pattern's start is not plain text symergion can write.
    """
    head, paren, tail = pattern.partition("(")
    label = ""
    if not paren or (tail.startswith("?") and not tail.startswith("?P<")):
        head = "["  # no capturing group comes first: refused below
    rest = head
    while rest:
        space = _SPACE.match(rest)
        if space:
            rest = _QUANTIFIER.sub("", rest[space.end():])
            continue
        char = rest[0]
        if char == "\\" and len(rest) > 1 and not rest[1].isalnum():
            label += rest[1]
            rest = rest[2:]
        elif char in "[]^$.|?*+{}\\":
            raise NoteError(f"cannot write a note for the pattern {pattern!r}",
                            hint="start the pattern with plain text before its group, "
                                 "e.g. 'task_branch:[\\s]*(...)'")
        else:
            label += char
            rest = rest[1:]
    if not label.strip():
        raise NoteError(f"cannot write a note for the pattern {pattern!r}",
                        hint="start the pattern with plain text before its group")
    return label.rstrip() + " "


def write_spec(
    task_branch_spec: str,
    template: Template,
    branch: str,
    params: dict[str, str],
    extra: str = "",
) -> str:
    """Return the note section that starts task ``branch``, checked by parsing it back.

    Raises:
        NoteError: the grammar cannot carry the branch name, a path, or the extra text.
    """
    parts = [literal_label(task_branch_spec) + branch]
    parts += [literal_label(template.params[name]) + value for name, value in params.items()]
    text = ", ".join(parts) + (f"\n{extra.strip()}" if extra.strip() else "")
    sections = split_sections(text, task_branch_spec)
    if [s.task_branch for s in sections] != [branch]:
        raise NoteError(f"the note grammar cannot carry the task branch name {branch!r}",
                        hint="use letters, digits, '_', '-', '.' and '/' only, and no "
                             "'task_branch:' in the extra text")
    parsed, _rows = parse_params(sections[0].text, template)
    for name, value in params.items():
        if parsed.get(name) != value:
            raise NoteError(
                f"the note grammar cannot carry the {name} {value!r} "
                f"(it would read back as {parsed.get(name)!r})",
                hint="rename the file with letters, digits, '_', '-', '.' and '/' only, or "
                     "widen the template's pattern in the config")
    return text


def write_sections(task_branch_spec: str, sections: list[Section]) -> str:
    """Return note text holding ``sections`` (unnamed first), checked by parsing it back.

    Raises:
        NoteError: the sections would not read back as given.
    """
    label = literal_label(task_branch_spec)
    lines = [s.text for s in sections if s.task_branch is None]
    lines += [f"{label}{s.task_branch}, {s.text}" for s in sections if s.task_branch is not None]
    text = "\n".join(lines)
    back = split_sections(text, task_branch_spec)
    expected = [s for s in sections if s.task_branch is None]
    expected += [s for s in sections if s.task_branch is not None]
    if [(s.task_branch, feedback_text(s)) for s in back] != [
            (s.task_branch, feedback_text(s)) for s in expected]:
        raise NoteError("the remaining sections of the note would not read back as they are",
                        hint="edit the note by hand with `git notes edit`")
    return text
