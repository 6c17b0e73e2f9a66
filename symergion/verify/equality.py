"""Where a test file checks two values for equality: assertion calls, and plain asserts.

``pin`` finds the failing one a runner observed at a line (``assertion_at``). A unittest file
spells it as a call (``self.assertEqual(a, b)`` and its aliases); a pytest file as
``assert a == b``, which comes back as a stand-in call of its two sides (``is_plain``).
"""

from __future__ import annotations

import ast

from symergion.verify.runner import EQUALITY_ASSERTIONS

# Equality assertions as a test file may spell them, deprecated aliases included.
EQUALITY = frozenset({*EQUALITY_ASSERTIONS, "assertEquals", "failUnlessEqual", "assertAlmostEquals",
                       "failUnlessAlmostEqual", "assertItemsEqual"})
# Their third positional parameter is a number of places, not a message.
ALMOST = frozenset({"assertAlmostEqual", "assertAlmostEquals", "failUnlessAlmostEqual"})


def assertion_at(functions: list[ast.FunctionDef | ast.AsyncFunctionDef], line: int
                 ) -> tuple[ast.Call | None, ast.AST | None]:
    """Return the innermost equality-assertion call spanning a line, and its function.

    A plain ``assert actual == expected`` (pytest's) comes back as an ``assertEqual`` call of
    its two sides (``_plain``), so a pin replaces its expected side as it does an argument's.
    """
    best: tuple[int, ast.Call, ast.AST] | None = None
    for function in functions:
        for node in ast.walk(function):
            call = _plain(node) if isinstance(node, ast.Assert) else node
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in EQUALITY):
                continue
            end = call.end_lineno or call.lineno
            if call.lineno <= line <= end and (best is None or end - call.lineno < best[0]):
                best = (end - call.lineno, call, function)
    return (best[1], best[2]) if best else (None, None)


class _PlainAssert(ast.Call):
    """The stand-in call of a plain ``assert a == b``: a file holds no such call."""


def _plain(node: ast.Assert) -> ast.Call | None:
    """Return ``assert a == b`` as the call ``assertEqual(a, b)`` at its place, else None.

    The call is a stand-in the file does not hold: only the pin, which replaces the expected
    side's text, applies to it (``is_plain``); the checks written as assertion calls do not.
    """
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    call = _PlainAssert(func=ast.Attribute(value=ast.Name("self", ast.Load()), attr="assertEqual",
                                           ctx=ast.Load()),
                        args=[test.left, test.comparators[0]], keywords=[])
    ast.copy_location(call, node)
    call.end_lineno, call.end_col_offset = node.end_lineno, node.end_col_offset
    return call


def is_plain(call: ast.Call) -> bool:
    """Return whether a call is the stand-in of a plain ``assert a == b`` (``_plain``)."""
    return isinstance(call, _PlainAssert)
