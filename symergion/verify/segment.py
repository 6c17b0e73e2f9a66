"""The part of a model's segment that belongs to the guided test it continues.

A segment ends when the model leaves the method (a line indented less than its body), after a
number of lines, or before a line that adds nothing or would only make the test err; of what
is left, the longest prefix that keeps the file valid Python is the test.
"""

from __future__ import annotations

import ast
import re

from symergion.verify.openers import BODY


def class_construction(kept: str) -> str | None:
    """Return the first body line of a class's test when it is a whole statement on its own."""
    lines = kept.split("\n")
    if len(lines) < 2 or not parses(lines[1].strip()):
        return None
    return lines[1]


def parses(text: str) -> bool:
    """Return whether a text is valid Python."""
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


def segment_lines(generated: str, max_lines: int, alias: str = "", known: frozenset[str] = frozenset(),
                   opener: str = "") -> tuple[list[str], bool]:
    """Split a segment into the lines that belong to the test; True when the test has ended.

    Besides leaving the method, a test ends before a line that repeats an earlier one (it adds
    nothing) or names an attribute of the module that the module does not define (``known``,
    when given): such a line would only turn a test that passes into one that errs.
    """
    lines = generated.split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        complete = index < len(lines) - 1
        if index > 0 and line.strip() and not line.startswith(BODY):
            return kept, True  # the model left the method: a new def, a class, the main guard
        if index > 0 and complete and line.strip() and (
                line in [opener.rsplit("\n", 1)[-1] + kept[0], *kept[1:]]
                or _unknown_attribute(line, alias, known)):
            return kept, True
        if index > 0 and not complete and not line.strip():
            break
        kept.append(line)
        body = [k for k in kept[1:] if k.strip()]
        if complete and len(body) + 1 >= max_lines:
            return kept, True
    return kept, False


def _unknown_attribute(line: str, alias: str, known: frozenset[str]) -> bool:
    """Return whether a line uses ``alias.name`` for a name the module does not define."""
    if not alias or not known:
        return False
    return any(name not in known for name in re.findall(rf"\b{re.escape(alias)}\.(\w+)", line))


def keep_valid(head: str, opener: str, lines: list[str]) -> str | None:
    """Return the opener and the longest prefix of ``lines`` that keeps ``head`` valid Python.

    Returns None when no prefix does (the test is left out).
    """
    for count in range(len(lines), 0, -1):
        body = "\n".join(lines[:count]).rstrip()
        if not body.strip() and count == 1:
            continue
        candidate = opener + body + "\n"
        if parses(head + candidate):
            return candidate
    return None
