"""Shorter views of a Python source, for a prompt whose whole source does not fit the context.

A model reads the source to know what the code does; a test needs its names, signatures and
branches far more than a table of 4,000 code points. Each level keeps more of the file's shape
and less of its bulk, and every level is valid Python that keeps every top-level name:

- 0: the source as it is;
- 1: long literals elided: a collection of more than ``KEEP_ITEMS`` items keeps its first ones
  and ``...``; a string of more than ``KEEP_CHARS`` characters (docstrings aside) is cut;
- 2: also the bodies of private functions and methods (``_name``) become ``...`` after their
  docstring;
- 3: also every other body: what is left is the module's interface, like a stub file.

The spans replaced are found with ``ast``; the rest of the text, comments included, is kept as
written. A source that does not parse is returned as it is at every level.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

Span = Callable[[ast.AST], tuple[int, int]]  # a node's (start, end) offsets in the source text

LEVELS = 4
KEEP_ITEMS = 4  # items a long collection keeps before its "..."
KEEP_CHARS = 80  # characters a long string keeps
_LONG = 200  # a literal whose source is longer than this many characters is elided


def compact(source: str, level: int) -> str:
    """Return the source at a compaction ``level`` (0 to ``LEVELS - 1``; see the module doc)."""
    if level <= 0:
        return source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(lineno: int, col: int) -> int:
        # ast columns count UTF-8 bytes.
        line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
        return starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    def span(node: ast.AST) -> tuple[int, int]:
        end_lineno, end_col = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
        assert end_lineno is not None and end_col is not None
        start: tuple[int, int] = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        return offset(*start), offset(end_lineno, end_col)

    edits: list[tuple[int, int, str]] = []
    bodies: list[tuple[int, int]] = []
    if level >= 2:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    level >= 3 or (node.name.startswith("_") and not node.name.startswith("__"))):
                body = node.body[1:] if _docstring(node) else node.body
                if not body or (len(body) == 1 and isinstance(body[0], ast.Expr)
                                and isinstance(body[0].value, ast.Constant) and body[0].value.value is ...):
                    continue
                start, _ = span(body[0])
                _, end = span(body[-1])
                if any(s <= start and end <= e for s, e in bodies):
                    continue  # inside a body already elided (ast.walk visits outer functions first)
                bodies.append((start, end))
        edits += [(s, e, "...") for s, e in bodies]
    # Docstrings stay (they say what the code is for); so do the parts of an f-string.
    untouched = {id(node.body[0].value) for node in ast.walk(tree)  # type: ignore[attr-defined]
                 if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                 and _docstring(node)}
    untouched |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                  for part in ast.walk(node) if part is not node}
    for node in ast.walk(tree):
        short = _shortened(node, source, span) if id(node) not in untouched else None
        if short is None:
            continue
        start, end = span(node)
        if any(s <= start and end <= e for s, e in bodies):
            continue
        edits.append((start, end, short))
    # Outermost first: an edit inside another one already made is dropped.
    edits.sort(key=lambda edit: (edit[0], -edit[1]))
    kept: list[tuple[int, int, str]] = []
    for edit in edits:
        if kept and edit[0] < kept[-1][1]:
            continue
        kept.append(edit)
    out = source
    for start, end, text in reversed(kept):
        out = out[:start] + text + out[end:]
    return out


def _docstring(node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    first = node.body[0] if node.body else None
    return (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str))


def _shortened(node: ast.AST, source: str, span: Span) -> str | None:
    """Return the elided text of a long literal, or None when the node stays as it is."""
    if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
        start, end = span(node)
        if end - start <= _LONG:
            return None
        items: list[str]
        if isinstance(node, ast.Dict):
            if len(node.keys) <= KEEP_ITEMS:
                return None
            items = []
            for key, value in list(zip(node.keys, node.values, strict=True))[:KEEP_ITEMS]:
                if key is None:
                    return None  # ``**other``: keep the display as written
                items.append(f"{_segment(source, span, key)}: {_segment(source, span, value)}")
            return "{" + ", ".join(items) + ", ...: ...}"
        if len(node.elts) <= KEEP_ITEMS:
            return None
        items = [_segment(source, span, e) for e in node.elts[:KEEP_ITEMS]]
        if any("\n" in item for item in items):
            return None
        opening, closing = {ast.List: ("[", "]"), ast.Tuple: ("(", ")"), ast.Set: ("{", "}")}[type(node)]
        return opening + ", ".join([*items, "..."]) + closing
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        start, end = span(node)
        if end - start <= _LONG or len(node.value) <= KEEP_CHARS:
            return None
        return repr(node.value[:KEEP_CHARS]) + " '...'" if isinstance(node.value, str) else (
            repr(node.value[:KEEP_CHARS]) + " b'...'")
    return None


def _segment(source: str, span: Span, node: ast.AST) -> str:
    start, end = span(node)
    return source[start:end]
