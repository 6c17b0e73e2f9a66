"""What a function's docstring says a parameter holds, for a parameter the code says nothing of.

Third-party code documents its parameters' types more often than it annotates them
(``source : str file path, or file-like object``); ``params.value_kind`` asks here after the
code's own evidence and before the parameter's name.
"""

from __future__ import annotations

import ast
import re

# The types a docstring names, in the words authors use for them, first match wins: a path is a
# string too, so it is looked for first.
_DOCUMENTED = (
    ("path", re.compile(r"\b(path|file ?name|file ?path|path-like|pathlike)\b")),
    ("bytes", re.compile(r"\b(bytes|bytearray)\b")),
    ("str", re.compile(r"\b(str|string|text)\b")),
    ("dict", re.compile(r"\b(dict|mapping)\b")),
    ("list", re.compile(r"\b(list|sequence|iterable)\b")),
    ("tuple", re.compile(r"\btuple\b")),
    ("callable", re.compile(r"\b(callable|function)\b")),
    ("number", re.compile(r"\b(int|float|integer|number)\b")),
)


def documented_type(function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> str:
    """Return the type a function's docstring gives a parameter, as written, or "".

    The three common styles: numpydoc (``name : str file path``), Google (``name (str): ...``)
    and Sphinx (``:type name: str``, ``:param str name: ...``).
    """
    doc = ast.get_docstring(function) or ""
    escaped = re.escape(name)
    for pattern in (rf"^\s*{escaped}\s*:\s*(.+)$", rf"^\s*{escaped}\s*\(([^)]*)\)\s*:",
                    rf"^\s*:type\s+{escaped}\s*:\s*(.+)$", rf"^\s*:param\s+(\S+)\s+{escaped}\s*:"):
        found = re.search(pattern, doc, re.MULTILINE)
        if found:
            return found.group(1).strip()
    return ""


def documented_kind(function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> str:
    """Return the kind (``value_kind``'s) of the type a docstring gives a parameter, or "".

    Only where that type is one kind: ``str or bytes`` names two, and says nothing a test could
    rely on; ``str file path, or file-like object`` is a path (an existing file works as both).
    """
    # ``List[str]`` is a list: what it holds is not its kind.
    written = re.sub(r"\[.*\]", "", documented_type(function, name).lower())
    if not written:
        return ""
    kinds = [kind for kind, pattern in _DOCUMENTED if pattern.search(written)]
    if "path" in kinds:
        kinds = [k for k in kinds if k not in ("str", "path")] + ["path"]
    return kinds[0] if len(kinds) == 1 else ""
