"""What of a test run may leave the machine: the test's own report, in the checkout's words.

Everything a sandboxed command hands back is written by code symergion did not write: in team
mode, a teammate's source module runs at import. So the text that goes into commit messages
(``Repair:``, ``Prune:``, ``Verify failures:``) and the values repairs pin into a test file are
filtered on the host, before anything else reads them:

- a traceback keeps its header, the frames in files of the checkout (relative paths, as the
  candidate's checkout was exported) with their code lines, and the exception line; frames of
  the interpreter's own library are dropped;
- every word (a run of letters, digits and underscores) must be one the report could only
  contain by being about this checkout: a word of the checkout's files or their names, a name
  of Python's builtins, a word of the interpreter's, the system's error texts and unittest's
  own messages, or a number of at most ``_DIGITS`` digits. Any other word becomes
  ``[withheld]``: a file's content read at import time and raised as an exception message does
  not come through;
- each detail is capped at ``DETAIL_CHARS`` and redacted with the secret detection ``harvest``
  uses (``symergion.redact``).

A value read from outside the checkout can therefore only leave as digits or as words the
checkout already has; the sandbox is what keeps files outside the checkout out of reach.

The values a repair pins are the exception where the run was sandboxed: there the code saw the
checkout, the interpreter's files and an empty environment, nothing of the host that is not
already public, and a value it computed (``'ab' * 2``) is the test's subject, not a leak. Such
values pass the cap and the secret detection only. Without the sandboxes' walls
(``SYMERGION_SANDBOX=none``) values obey the word rule like everything else.
"""

from __future__ import annotations

import ast
import builtins
import errno
import functools
import os
import re
import unittest.case
from collections.abc import Iterable
from pathlib import Path

from symergion.redact import redact

DETAIL_CHARS = 4000
WITHHELD = "[withheld]"
_DIGITS = 20
_FILE_BYTES = 1024 * 1024
_TOTAL_BYTES = 16 * 1024 * 1024
_WORD = re.compile(r"\w+")
_FRAME = re.compile(r'\s*File "([^"]*)", line \d+')
# Words of the interpreter's own messages about names, imports, attributes, calls, values and
# operations (those unittest writes are read from its source, see ``_message_words``).
_INTERPRETER = (
    "name", "is", "not", "defined", "No", "module", "named", "cannot", "import", "from", "partially",
    "initialized", "most", "likely", "due", "to", "a", "circular", "object", "has", "no", "attribute",
    "type", "takes", "positional", "keyword", "argument", "arguments", "but", "were", "was", "given",
    "got", "an", "unexpected", "multiple", "values", "for", "missing", "required", "only", "accepts",
    "unsupported", "operand", "types", "and", "must", "be", "real", "number", "str", "int", "float",
    "list", "dict", "tuple", "set", "NoneType", "bool", "bytes", "division", "by", "zero", "modulo",
    "integer", "index", "out", "of", "range", "invalid", "literal", "with", "base", "could", "convert",
    "string", "too", "many", "unpack", "expected", "enough", "can", "concatenate", "callable",
    "subscriptable", "iterable", "does", "support", "item", "assignment", "deletion", "the", "in", "or",
    "are", "unhashable", "instance", "instances", "comparison", "between", "math", "domain", "error",
    "key", "found", "empty", "sequence", "pop", "maximum", "recursion", "depth", "exceeded", "while",
    "calling", "Python", "format", "character", "at", "position", "decode", "encode", "codec", "byte",
    "end", "data", "start", "syntax", "indentation", "unindent", "match", "any", "outer", "level",
    "EOL", "scanning", "unterminated", "never", "closed", "parenthesis", "bracket", "brace", "perhaps",
    "you", "forgot", "comma", "meant", "Did", "mean", "local", "variable", "referenced", "before",
    "free", "associated", "value", "abstract", "class", "methods", "method", "instantiate", "self",
    "cls", "return", "returned", "non", "iterator", "generator", "already", "executing", "coroutine",
    "awaited", "been", "exception", "raised", "during", "handling", "above", "another", "occurred",
    "direct", "cause", "following", "Traceback", "last", "call", "recent", "line", "File",
)


class Report:
    """Filters the text of one candidate's runs, knowing the words of its checkout."""

    def __init__(self, checkout: Path, *, sandboxed: bool = False) -> None:
        self.sandboxed = sandboxed
        self.paths: set[str] = set()
        self.words: set[str] = set(_builtin_words())
        total = 0
        for path in sorted(checkout.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(checkout).as_posix()
            self.paths.add(relative)
            self.words.update(_WORD.findall(relative))
            if total >= _TOTAL_BYTES:
                continue
            try:
                with path.open("rb") as handle:
                    data = handle.read(_FILE_BYTES)
            except OSError:
                continue
            total += len(data)
            self.words.update(_WORD.findall(data.decode("utf-8", "replace")))

    def detail(self, text: str) -> str:
        """Return the part of a test's problem text that may be recorded, filtered and redacted."""
        lines: list[str] = []
        skip_code = False
        for line in text.splitlines():
            frame = _FRAME.match(line)
            if frame is not None:
                skip_code = frame.group(1) not in self.paths
                if skip_code:
                    continue
            elif skip_code and line.startswith("    "):
                continue  # the code line (and carets) of a dropped frame
            else:
                skip_code = False
            lines.append(self.words_only(line))
        kept = "\n".join(lines).strip("\n")
        if len(kept) > DETAIL_CHARS:
            kept = kept[:DETAIL_CHARS] + " ..."
        return redact(kept)

    def words_only(self, text: str) -> str:
        """Return ``text`` with every word this checkout's report could not contain withheld."""
        return _WORD.sub(lambda m: m.group(0) if self.known(m.group(0)) else WITHHELD, text)

    def known(self, word: str) -> bool:
        """Return whether a word may appear in a report about this checkout."""
        return word in self.words or (word.isdigit() and len(word) <= _DIGITS)

    def literal(self, text: str | None) -> str | None:
        """Return a compared value's repr when it may be pinned (see the module), else None."""
        if text is None or len(text) > DETAIL_CHARS:
            return None
        if not self.sandboxed and self.words_only(text) != text:
            return None
        return text if redact(text) == text else None

    def test_id(self, test: str) -> str:
        """Return a test id (``module.Class.method``) as it may be recorded."""
        return self.words_only(test[:200])


@functools.cache
def _builtin_words() -> frozenset[str]:
    # The system's error texts ("No space left on device") name no file and no value.
    errors = {word for code in errno.errorcode for word in _WORD.findall(os.strerror(code))}
    return frozenset(["builtins", "Errno", *dir(builtins), *_INTERPRETER, *errors,
                      *_message_words(unittest.case.__file__),
                      *_message_words(str(Path(__file__).with_name("pytest_runner.py")), "MISSING_FIXTURE")])


def _message_words(path: str, name: str | None = None) -> Iterable[str]:
    """Return the words of a module's string constants (unittest's failure messages), or of the
    one constant assigned to ``name`` (a message of the pytest runner's own)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return ()
    if name is not None:
        values = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)]
        tree = ast.Module(body=[ast.Expr(v) for v in values], type_ignores=[])
    return {word for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            for word in _WORD.findall(node.value)}
