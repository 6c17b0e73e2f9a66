"""Give the arguments Python rejected a value of the kind the code uses.

A test whose call raised ``TypeError`` or ``AttributeError`` in Python itself (``len(1)``,
``'10' + 1``) records that Python rejects a value, not what the module does. Before the repairs
expect that error, each wrong-kind argument of the call gets a value of the kind the code uses.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from symergion.verify.constants import constant_values
from symergion.verify.names import module_of
from symergion.verify.objects import IMPORTED, INSTANCE, buildable_classes, module_values
from symergion.verify.openers import required_parameters
from symergion.verify.params import class_values, definition, numeric_parameter, value_kind
from symergion.verify.result import VerifyResult
from symergion.verify.syntax import (
    Edits,
    Methods,
    ModuleRefs,
    assigned_value,
    derived_names,
    exception_name,
    failing_statement,
    methods_by_name,
    module_call,
    module_refs,
    same_file,
)

# Exceptions Python raises for a value of the wrong kind: a test that only expects one records
# that Python rejects the value, not what the module's author wrote.
WRONG_KIND = ("TypeError", "AttributeError")
# A value of each kind the code uses (``params.value_kind``), when the code compares the parameter
# with no constant of that kind. The fixture's names exist only in a file that has its setUp.
_KIND_VALUES = {"str": "'abc'", "bytes": "b'abc'", "list": "[1, 2, 3]", "strlist": "['a', 'b']",
                "dict": "{'a': 1}", "tuple": "(1, 2)", "number": "1",
                "callable": "lambda *args, **kwargs: None", "class": "object",
                "path": "self.path", "folder": "self.folder"}
_KIND_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "bytes": (bytes,), "list": (list,),
                                            "strlist": (list,), "dict": (dict,), "tuple": (tuple,),
                                            "number": (int, float), "path": (str,), "folder": (str,)}
MODULE = "module value"  # the kind of a value the module passes the parameter itself


@dataclass(frozen=True)
class Rekinded:
    """A test whose wrong-kind argument was given a value of the kind the code uses."""

    test: str
    name: str
    before: str
    after: str


def _raised_by_source(detail: str, source: str) -> bool:
    """Return whether a traceback's innermost frame is a ``raise`` statement of the source."""
    lines = detail.splitlines()
    frames = [i for i, line in enumerate(lines) if re.match(r'\s*File "[^"]*", line \d+', line)]
    if not frames:
        return False
    last = frames[-1]
    path = re.match(r'\s*File "([^"]*)"', lines[last])
    code = lines[last + 1].strip() if last + 1 < len(lines) else ""
    return path is not None and same_file(path.group(1), source) and code.startswith("raise")


def _called_definition(call: ast.Call, function: ast.AST, alias: str | None, source_tree: ast.Module
                       ) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, bool] | None:
    """Return the module's function a test's call runs and whether its first parameter is skipped."""

    func = call.func
    if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
        return None
    if func.value.id == alias:
        found = definition(source_tree, func.attr)
        if found is not None:
            return found, False
        init = definition(source_tree, "__init__", func.attr)
        return (init, True) if init is not None else None
    built = assigned_value(function, func.value.id, call.lineno)
    if (isinstance(built, ast.Call) and isinstance(built.func, ast.Attribute)
            and isinstance(built.func.value, ast.Name) and built.func.value.id == alias):
        method = definition(source_tree, func.attr, built.func.attr)
        return (method, True) if method is not None else None
    return None


def _kind_value(source_tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str,
                fixture: bool, alias: str | None = None, depth: int = 2,
                bare: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    """Return the kind of value a parameter holds and a value of that kind, or None.

    A value the module passes the parameter itself comes first (``objects.module_values``). A
    class is the first one the code checks the parameter against (``class_values``: a branch of
    its own), else ``object``. An object of one of the module's classes is built by calling the
    class with a value of its kind for each required parameter (``depth`` levels deep), or not
    at all; one of a class the module imports, by calling it with no argument where a passing
    test of the file does so (``bare``: that class builds with its defaults).
    """
    own = module_values(source_tree, function, name)
    if own and alias:
        return MODULE, f"{alias}.{own[0]}"
    kind = value_kind(source_tree, function, name) or (
        "number" if numeric_parameter(function, name) else "")
    if kind.startswith(INSTANCE):
        built = _built(source_tree, kind[len(INSTANCE):], fixture, alias, depth)
        return (kind, built) if built is not None else None
    if kind.startswith(IMPORTED):  # a class the module imports: built with its defaults
        known = alias and kind[len(IMPORTED):] in bare
        return (kind, f"{alias}.{kind[len(IMPORTED):]}()") if known else None
    if kind not in _KIND_VALUES or (kind in ("path", "folder") and not fixture):
        return None
    if kind == "class":
        return kind, next(iter(class_values(source_tree, function, name, alias or "")), _KIND_VALUES[kind])
    # A number the code orders against is a boundary (the variants' to try): a plain one instead.
    types = _KIND_TYPES.get(kind, ()) if kind != "number" else ()
    for constant in constant_values(source_tree, function, name):
        if isinstance(ast.literal_eval(constant), types) and not isinstance(ast.literal_eval(constant), bool):
            return kind, constant
    return kind, _KIND_VALUES[kind]


def _built(source_tree: ast.Module, cls: str, fixture: bool, alias: str | None, depth: int) -> str | None:
    """Return a call that builds an object of one of the module's classes, or None."""
    init = definition(source_tree, "__init__", cls)
    if not alias or depth <= 0 or cls not in buildable_classes(source_tree):
        return None
    if init is None:
        return f"{alias}.{cls}()"  # a plain class: nothing to pass
    values: list[str] = []
    for parameter, keyword in required_parameters(init, method=True):
        found = _kind_value(source_tree, init, parameter, fixture, alias, depth - 1)
        if found is None or found[0] in ("path", "folder"):
            return None  # a value of no known kind, or a file the object would hold open
        values.append(f"{parameter}={found[1]}" if keyword else found[1])
    return f"{alias}.{cls}({', '.join(values)})"


def _built_bare(tree: ast.Module, result: VerifyResult, alias: str | None) -> frozenset[str]:
    """Return what passing tests of the file call through the module with no argument:
    ``argparse.Namespace`` for ``mod.argparse.Namespace()``."""
    if not alias:
        return frozenset()
    methods = methods_by_name(tree)
    found: set[str] = set()
    for test, outcome in result.tests.items():
        parts = test.split(".")
        passed = outcome.outcome == "passed" and len(parts) >= 2
        function = methods.get((parts[-2], parts[-1])) if passed else None
        for node in ast.walk(function) if function is not None else ():
            if isinstance(node, ast.Call) and not node.args and not node.keywords:
                called = ast.unparse(node.func)
                if called.startswith(f"{alias}."):
                    found.add(called[len(alias) + 1:])
    return frozenset(found)


def _of_kind(value: ast.expr, kind: str) -> bool:
    """Return whether a written value already is of a kind (a name or call: assume so)."""
    if kind in ("callable", "class", MODULE) or kind.startswith((INSTANCE, IMPORTED)):
        return not isinstance(value, ast.Constant)
    try:
        current = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return True
    if kind in ("path", "folder"):
        return False  # a literal is no file the test made
    return isinstance(current, _KIND_TYPES[kind]) and not isinstance(current, bool)


def rekind_arguments(test_source: str, result: VerifyResult, source_text: str, destination: str,
                     *, retried: frozenset[str] = frozenset()) -> tuple[str, tuple[Rekinded, ...]]:
    """Give the arguments of a call that Python rejected a value of the kind the code uses.

    A test whose call raised ``TypeError`` or ``AttributeError`` that no ``raise`` of the module
    wrote (``len(1)``, ``'10' + 1``) would otherwise expect that error: a test that records that
    Python rejects a value. Before that last resort, each argument of the call whose value is
    not of the kind the code uses (``params.value_kind``, else arithmetic with numbers) is given
    one that is: a constant the code compares it with, else a plain value of the kind. Once per
    test (``retried``): if it raises again, the error is expected.

    Returns the new text and the values changed.
    """
    try:
        tree = ast.parse(test_source)
        source_tree = ast.parse(source_text)
    except SyntaxError:
        return test_source, ()
    name = re.escape(PurePosixPath(destination).name)
    frame = re.compile(rf'File "[^"]*{name}", line (\d+)')
    refs = module_refs(tree, module_of(result.source), destination)
    alias = refs.aliases[0] if refs.aliases else None
    rekinder = _Rekinder(test_source, source_tree, refs, methods_by_name(tree), Edits(test_source),
                         fixture="self.path =" in test_source, bare=_built_bare(tree, result, alias))
    changed = [*rekinder.erring(result, frame, retried), *rekinder.expecting(result, retried)]
    return rekinder.edits.apply(), tuple(changed)


@dataclass(frozen=True)
class _Rekinder:
    """A test file and the module under test, read once, and the edits ``rekind_arguments`` makes."""

    test_source: str
    source_tree: ast.Module
    refs: ModuleRefs
    methods: Methods
    edits: Edits
    fixture: bool  # the file has the fixture's setUp: ``self.path`` and ``self.folder`` exist
    bare: frozenset[str]  # classes reached through the module that a passing test calls bare

    def erring(self, result: VerifyResult, frame: re.Pattern[str], retried: frozenset[str]
               ) -> list[Rekinded]:
        """Give values of the right kind to each erring test's call that Python rejected."""
        changed: list[Rekinded] = []
        for test, outcome in result.tests.items():
            if outcome.outcome != "error" or outcome.flaky or test in retried:
                continue
            if exception_name(outcome.detail, frozenset(), None) not in WRONG_KIND:
                continue
            if _raised_by_source(outcome.detail, result.source):
                continue
            failing = failing_statement(test, outcome.detail, self.methods, frame)
            if failing is None:
                continue
            function, index = failing
            statement = function.body[index]
            call = module_call(statement, self.refs, derived_names(function, self.refs))
            if not isinstance(call, ast.Call):
                continue
            for value_start, value_end, value, change in self.arguments(call, function, statement.lineno,
                                                                        test):
                self.edits.replace(value_start, value_end, value)
                changed.append(change)
        return changed

    def expecting(self, result: VerifyResult, retried: frozenset[str]) -> list[Rekinded]:
        """Call again, with values of the right kind, what a passing test expects Python's error of.

        A passing test that only expects Python's error for a wrong-kind value gets the call
        with values of the kind the code uses, and its result to pin.
        """
        changed: list[Rekinded] = []
        for test, outcome in result.tests.items():
            if outcome.outcome != "passed" or outcome.flaky or not outcome.records_error or test in retried:
                continue
            parts = test.split(".")
            function = self.methods.get((parts[-2], parts[-1])) if len(parts) >= 2 else None
            if function is None:
                continue
            for block in function.body:
                if not _expects_wrong_kind(block):
                    continue
                assert isinstance(block, ast.With)
                found = self.unexpect(block, function, test)
                if found is None:
                    continue
                changed += found
                break
        return changed

    def unexpect(self, block: ast.With, function: ast.FunctionDef | ast.AsyncFunctionDef, test: str
                 ) -> list[Rekinded] | None:
        """Replace ``with self.assertRaises(...)`` around a call by the call with right-kind values.

        Returns the values changed, or None when the call has no wrong-kind value to change.
        """
        call = module_call(block.body[0], self.refs, derived_names(function, self.refs))
        if not isinstance(call, ast.Call):
            return None
        found = self.arguments(call, function, block.lineno, test)
        if not found:
            return None
        changed: list[Rekinded] = []
        block_start, block_end = self.edits.starts[block.lineno - 1], self.edits.starts[
            min(block.end_lineno or block.lineno, len(self.edits.lines))]
        call_start, call_end = self.edits.span(call)
        text = self.test_source[call_start:call_end]
        for value_start, value_end, value, change in sorted(found, key=lambda f: f[0], reverse=True):
            if call_start <= value_start and value_end <= call_end:
                offset = value_start - call_start
                text = text[:offset] + value + text[offset + value_end - value_start:]
            else:
                self.edits.replace(value_start, value_end, value)
            changed.append(change)
        indent = " " * block.col_offset
        self.edits.replace(block_start, block_end, f"{indent}result = {text}\n"
                                                   f"{indent}self.assertEqual(result, None)\n")
        return changed

    def arguments(self, call: ast.Call, function: ast.FunctionDef | ast.AsyncFunctionDef, line: int,
                  test: str) -> list[tuple[int, int, str, Rekinded]]:
        """Return the replacements that give a call's wrong-kind arguments a value of their kind."""
        alias = self.refs.aliases[0] if self.refs.aliases else None
        called = _called_definition(call, function, alias, self.source_tree)
        if called is None:
            return []
        definition, skip_first = called
        parameters = [a.arg for a in [*definition.args.posonlyargs, *definition.args.args]][int(skip_first):]
        passed = [*((parameters[i], a) for i, a in enumerate(call.args) if i < len(parameters)),
                  *((k.arg, k.value) for k in call.keywords if k.arg)]
        found: list[tuple[int, int, str, Rekinded]] = []
        for parameter, argument in passed:
            value: ast.expr | None = argument
            label = parameter
            if isinstance(argument, ast.Name):
                value = assigned_value(function, argument.id, line)
                label = argument.id
            kind = (_kind_value(self.source_tree, definition, parameter, self.fixture, alias,
                                bare=self.bare)
                    if value is not None else None)
            if value is None or kind is None or _of_kind(value, kind[0]):
                continue
            start, end = self.edits.span(value)
            found.append((start, end, kind[1], Rekinded(test, label, self.test_source[start:end], kind[1])))
        return found


def _expects_wrong_kind(statement: ast.stmt) -> bool:
    """Return whether a statement is ``with self.assertRaises(TypeError or AttributeError):`` and
    one statement."""
    if not isinstance(statement, ast.With) or len(statement.items) != 1 or len(statement.body) != 1:
        return False
    context = statement.items[0].context_expr
    return (isinstance(context, ast.Call) and isinstance(context.func, ast.Attribute)
            and context.func.attr == "assertRaises" and len(context.args) == 1
            and isinstance(context.args[0], ast.Name) and context.args[0].id in WRONG_KIND)
