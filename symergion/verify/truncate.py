"""Cut a failing test before the statement that failed, or expect the exception the module raised.

When no other repair applies, a failing test is cut before its failing statement if statements
precede it (they pass), instead of the prune removing the whole test; a test whose first call
raised inside the module expects that exception (``assertRaises``), named in the commit message
for review like a pin.
"""

from __future__ import annotations

import ast
import re
from pathlib import PurePosixPath

from symergion.verify.names import module_of
from symergion.verify.result import VerifyResult
from symergion.verify.syntax import (
    Edits,
    asserts,
    derived_names,
    exception_name,
    failing_statement,
    methods_by_name,
    module_call,
    module_refs,
    same_file,
)


def truncate_tests(test_source: str, result: VerifyResult, source: str, destination: str,
                   *, module_names: frozenset[str] = frozenset(), raises: str = "self.assertRaises"
                   ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Cut each failing or erring test at the statement that failed.

    A test stops at its first problem, so what runs before it passes: when statements precede
    the failing one, the test is cut before it (the prune would otherwise remove the whole
    method). When the first statement itself (or the first after statements that only bind
    values, without calling the module) raised while the module under test ran (its
    traceback passes through the source), it becomes ``with self.assertRaises(E):`` around the call,
    the regression oracle for exceptions, if ``E`` is a builtin or a name of the module.

    ``raises`` is the context manager that expects it (``pytest.raises`` in a pytest file).

    Returns the new text, the ids of the tests cut, and those that now expect an exception.
    """
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return test_source, (), ()
    name = re.escape(PurePosixPath(destination).name)
    frame = re.compile(rf'File "[^"]*{name}", line (\d+)')
    any_frame = re.compile(r'File "([^"]*)", line \d+')
    refs = module_refs(tree, module_of(source), destination)
    alias = refs.aliases[0] if refs.aliases else None
    edits = Edits(test_source)
    cut: list[str] = []
    raising: list[str] = []
    methods = methods_by_name(tree)
    # A cut test that would repeat another test's statements adds nothing: the prune removes it.
    bodies = {_statements(test_source, f.body) for f in methods.values()}
    for test, outcome in result.tests.items():
        if outcome.outcome not in ("failed", "error") or outcome.flaky:
            continue
        found = failing_statement(test, outcome.detail, methods, frame)
        if found is None:
            continue
        function, index = found
        end = edits.starts[min(function.end_lineno or function.lineno, len(edits.lines))]
        derived = derived_names(function, refs)
        files = any_frame.findall(outcome.detail)
        exception = exception_name(outcome.detail, module_names, alias)
        statement = function.body[index]
        call = module_call(statement, refs, derived)
        # Raised while the module ran: its traceback passes through the source (the module may
        # have passed the bad value on to the standard library, which raised).
        raised_inside = (outcome.outcome == "error" and any(same_file(f, source) for f in files)
                         and exception is not None and call is not None)
        # Statements before it that only bind values (no call of the module) set up the call:
        # cutting there would leave a test that runs no module code.
        setup_only = all(module_call(s, refs, derived) is None for s in function.body[:index])
        if index > 0 and not (raised_inside and setup_only):
            kept = _statements(test_source, function.body[:index])
            if kept in bodies or setup_only or not any(asserts(s) for s in function.body[:index]):
                # A repeat, bindings alone that run no module code, or calls that check nothing
                # (the assertion cut was the test's only check): the prune's.
                continue
            bodies.add(kept)
            edits.replace(edits.starts[function.body[index].lineno - 1], end, "")
            cut.append(test)
            continue
        if not raised_inside or call is None:
            continue
        start, stop = edits.span(call)
        indent = " " * statement.col_offset
        body = test_source[start:stop]
        edits.replace(edits.starts[statement.lineno - 1], end,
                      f"{indent}with {raises}({exception}):\n{indent}    {body}\n")
        raising.append(test)
    return edits.apply(), tuple(cut), tuple(raising)


def _statements(text: str, body: list[ast.stmt]) -> str:
    """Return the source of statements, one per line, for comparing test bodies."""
    return "\n".join(ast.get_source_segment(text, statement) or "" for statement in body)
