"""Inside the sandbox: run one unittest module and record every test's outcome as JSON lines.

Run as a script (``python runner.py --module test_x --out results.jsonl [--coverage utils/x.py]``)
with the checkout as working directory; it imports only the standard library and, for
``--coverage``, coverage.py. Each event is written and flushed as it happens, so a suite that
hangs or kills its own process still leaves the outcomes of the tests before it.

Events: ``start`` and ``result`` per test (``passed``, ``failed``, ``error``, ``skipped``),
``fixture`` for a failing setUpClass/setUpModule, ``load`` when the module cannot be imported,
``coverage`` (statements, covered lines, the tests that ran any line of the source, and the lines
each context ran; a call to a compiled function that replaced one of the source's definitions at
import time counts as running that definition's line, see ``compiled_stand_ins``), ``observed``
(the values a failing equality assertion compared, see ``observe_assertions``), ``done``. A
``result`` also counts the test's checks (``count_checks``): the assertion methods it called, and
how many of them only caught an exception Python itself raised for a value of the wrong kind.
"""

from __future__ import annotations

import argparse
import ast
import dis
import importlib
import inspect
import json
import os
import sys
import traceback
import types
import unittest
from types import FrameType, TracebackType
from typing import IO, Any

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

# Exceptions Python raises for a value of the wrong kind (``len(1)``, ``None.strip()``).
WRONG_KIND = (TypeError, AttributeError)
# The equality assertions whose failures are recorded with the values they compared.
EQUALITY_ASSERTIONS = (
    "assertEqual", "assertAlmostEqual", "assertListEqual", "assertTupleEqual", "assertDictEqual",
    "assertSetEqual", "assertSequenceEqual", "assertCountEqual", "assertMultiLineEqual",
)
_LITERAL_CHARS = 2000


class Recorder(unittest.TestResult):
    """Write one event per test outcome, switching coverage contexts as tests start."""

    def __init__(self, out: IO[str], coverage: Any) -> None:
        super().__init__()
        self.out = out
        self.coverage = coverage
        self.outcome: dict[str, tuple[str, str]] = {}
        self.current = ""  # the running test's id, for the profile hook of ``watch_compiled``
        # Per test: the lines of the source's definitions it ran as compiled stand-ins.
        self.compiled: dict[str, set[int]] = {}
        # Per test: the assertion methods called, and those that only caught a wrong-kind error.
        self.checks: dict[str, list[int]] = {}

    def emit(self, **event: Any) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self.current = test.id()
        if self.coverage is not None:
            self.coverage.switch_context(test.id())
        self.emit(event="start", id=test.id())

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        self.current = ""
        if self.coverage is not None:
            self.coverage.switch_context("")
        outcome, detail = self.outcome.pop(test.id(), ("passed", ""))
        checks, wrong_kind = self.checks.pop(test.id(), [0, 0])
        if not checks and _has_assert_statement(test):
            checks = 1  # a plain ``assert`` checks too, though no method counted it
        self.emit(event="result", id=test.id(), outcome=outcome, detail=detail, checks=checks,
                  wrong_kind=wrong_kind)

    def _record(self, test: Any, outcome: str, err: _ExcInfo | None, reason: str = "") -> None:
        detail = reason if err is None else "".join(traceback.format_exception(*err, limit=-6))
        if type(test).__name__ == "_ErrorHolder":  # setUpClass, setUpModule: no startTest
            self.emit(event="fixture", id=test.id(), outcome=outcome, detail=detail)
            return
        # The first problem of a test wins (a subtest failure, then an error in tearDown).
        self.outcome.setdefault(test.id(), (outcome, detail))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", err)

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "failed", err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skipped", None, reason)

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "failed", None, "unexpected success of a test marked expectedFailure")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(test, "failed" if failed else "error", err)


def parse_args(argv: list[str], prog: str) -> argparse.Namespace:
    """Return a runner's command line: the same for every kind's runner (``pytest_runner.py``)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--module", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--coverage", default=None, help="the source file to measure")
    parser.add_argument("--source", default=None, help="the module under test (its own raise statements)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run the module's tests; exit 0 when every test that ran passed."""
    args = parse_args(argv, "runner")
    # The checkout, not this script's folder, is what the tests import from.
    sys.path[0] = os.getcwd()
    with open(args.out, "a", encoding="utf-8") as out:
        cov = _start_coverage(args.coverage, out)
        recorder = Recorder(out, cov)
        observe_assertions(recorder, args.module)
        source = args.source or args.coverage
        count_checks(recorder, os.path.abspath(source) if source else None)
        try:
            module = importlib.import_module(args.module)
            suite = unittest.defaultTestLoader.loadTestsFromModule(module)
        except BaseException:  # a broken test file: SyntaxError, NameError, even SystemExit
            recorder.emit(event="load", detail=traceback.format_exc(limit=-4))
            suite = None
        if suite is not None:
            if cov is not None:
                watch_compiled(recorder, os.path.abspath(args.coverage))
            suite.run(recorder)
            sys.setprofile(None)
        if cov is not None:
            cov.stop()
            _report_coverage(cov, os.path.abspath(args.coverage), recorder)
        recorder.emit(event="done", ran=recorder.testsRun)
    problems = len(recorder.failures) + len(recorder.errors) + len(recorder.unexpectedSuccesses)
    print(f"Ran {recorder.testsRun} tests; {'OK' if suite and not problems else 'FAILED'}", file=sys.stderr)
    return 0 if suite is not None and not problems else 1


def observe_assertions(recorder: Recorder, test_module: str) -> None:
    """Record the compared values of equality assertions that fail in the test module's own code.

    Each event names the test, the line of the assertion and the repr of both values when it
    reads back as the same value with ``ast.literal_eval`` (else null), so a repair can pin an
    expected value to what the code under test returned.
    """
    for name in EQUALITY_ASSERTIONS:
        original = getattr(unittest.TestCase, name)

        def observing(self: unittest.TestCase, first: Any, second: Any, *args: Any,
                      _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            try:
                return _original(self, first, second, *args, **kwargs)
            except self.failureException:
                # The test's own line: a deprecated alias (assertEquals) calls in from case.py.
                module = sys.modules.get(test_module)
                caller = sys._getframe(1)
                for _ in range(6):  # through unittest's own calls and ``count_checks``'s wrapper
                    if caller.f_back is None or caller.f_code.co_filename not in (unittest.case.__file__,
                                                                                  __file__):
                        break
                    caller = caller.f_back
                if module is not None and caller.f_code.co_filename == getattr(module, "__file__", None):
                    recorder.emit(event="observed", id=self.id(), line=caller.f_lineno, method=_name,
                                  first=literal(first), second=literal(second),
                                  first_type=type_name(first), second_type=type_name(second),
                                  first_facts=facts(first), second_facts=facts(second))
                raise

        setattr(unittest.TestCase, name, observing)


def _has_assert_statement(test: unittest.TestCase) -> bool:
    """Return whether a test method's code has an ``assert`` statement."""
    method = getattr(test, getattr(test, "_testMethodName", ""), None)
    code = getattr(method, "__code__", None)
    if code is None:
        return False
    try:
        return any(i.opname == "LOAD_ASSERTION_ERROR" or i.argval == "AssertionError"
                   for i in dis.get_instructions(code))
    except Exception:  # code the disassembler cannot read counts as no assert statement
        return False


def count_checks(recorder: Recorder, source: str | None) -> None:
    """Count, per test, the assertion methods it calls and the wrong-kind errors they caught.

    Only the outermost call counts (``assertEqual`` calls ``assertMultiLineEqual`` itself). An
    ``assertRaises`` that caught a ``TypeError`` or ``AttributeError`` counts as wrong-kind unless
    the module under test (``source``, an absolute path) raised it with a ``raise`` statement of
    its own: such a test records that Python rejects a value, not what the module's author wrote.
    """
    depth = [0]
    for name, original in list(vars(unittest.TestCase).items()):
        if not name.startswith(("assert", "fail")) or not inspect.isfunction(original):
            continue

        def counting(self: unittest.TestCase, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if depth[0] == 0:
                recorder.checks.setdefault(self.id(), [0, 0])[0] += 1
            depth[0] += 1
            try:
                return _original(self, *args, **kwargs)
            finally:
                depth[0] -= 1

        setattr(unittest.TestCase, name, counting)
    context = unittest.case._AssertRaisesContext
    exit_original = context.__exit__

    def exiting(self: Any, exc_type: Any, exc_value: Any, tb: Any) -> Any:
        own = False
        if exc_type in WRONG_KIND and tb is not None:
            last = traceback.extract_tb(tb)[-1]
            own = (source is not None and os.path.abspath(last.filename) == source
                   and (last.line or "").lstrip().startswith("raise"))
        caught = exit_original(self, exc_type, exc_value, tb)
        if caught and exc_type in WRONG_KIND and not own:
            recorder.checks.setdefault(self.test_case.id(), [0, 0])[1] += 1
        return caught

    context.__exit__ = exiting  # type: ignore[method-assign]


def literal(value: Any) -> str | None:
    """Return ``repr(value)`` when ``ast.literal_eval`` reads it back as an equal value of its type."""
    try:
        text = repr(value)
        if len(text) > _LITERAL_CHARS or ast.literal_eval(text) != value:
            return None
        return text if type(ast.literal_eval(text)) is type(value) else None
    except Exception:  # a repr that raises, is no literal, or a value that cannot compare
        return None


def facts(value: Any) -> dict[str, Any]:
    """Return what a value shows besides itself, for a check that holds when the value varies.

    Its type (``module.qualname``), its length, whether it names a path that exists (a string,
    bytes or path), whether its items are sorted (a list or tuple).
    """
    kind = type(value)
    found: dict[str, Any] = {"type": f"{kind.__module__}.{kind.__qualname__}"}
    try:
        if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
            found["len"] = len(value)
        if isinstance(value, (str, bytes, os.PathLike)) and value:
            found["exists"] = os.path.exists(value)
        if isinstance(value, (list, tuple)) and len(value) > 1:
            found["sorted"] = list(value) == sorted(value)
    except Exception:  # a path with a NUL, items that do not compare
        pass
    return found


def type_name(value: Any) -> str | None:
    """Return ``module.qualname`` of a value's type when the value is no literal, else None."""
    if literal(value) is not None:
        return None
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _start_coverage(source: str | None, out: IO[str]) -> Any:
    if source is None:
        return None
    try:
        import coverage
    except ImportError as exc:
        out.write(json.dumps({"event": "coverage", "error": f"coverage.py is not installed: {exc}"}) + "\n")
        return None
    cov = coverage.Coverage(data_file=None, include=[os.path.abspath(source)])
    cov.start()
    return cov


def compiled_stand_ins(path: str) -> dict[int, tuple[int, ...]]:
    """Map each compiled function that replaced a definition of the source to that def's lines.

    Modules such as ``bisect`` and ``heapq`` define their functions in Python and then replace
    them with compiled ones (``from _bisect import *``). A test that calls them runs no line of
    the source that coverage can see, yet it calls the module's own public function. The map is
    keyed by the compiled object's ``id`` (the profile hook sees the object) and gives the lines
    coverage may report for the replaced ``def`` (its decorators' and its own).
    """
    module = next((m for m in list(sys.modules.values())
                   if os.path.abspath(str(getattr(m, "__file__", None) or "")) == path), None)
    if module is None:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    found: dict[int, tuple[int, ...]] = {}
    pending: list[ast.stmt] = list(tree.body)
    while pending:  # top level, and inside its if/try blocks
        node = pending.pop()
        if isinstance(node, (ast.If, ast.Try)):
            pending.extend([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
            pending.extend(s for h in getattr(node, "handlers", []) for s in h.body)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            value = getattr(module, node.name, None)
            if isinstance(value, types.BuiltinFunctionType):
                found[id(value)] = (*(d.lineno for d in node.decorator_list), node.lineno)
    return found


def watch_compiled(recorder: Recorder, path: str) -> None:
    """Record, per test, the source's definitions it called as compiled stand-ins."""
    stand_ins = compiled_stand_ins(path)
    if not stand_ins:
        return

    def hook(_frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call" and recorder.current and (lines := stand_ins.get(id(arg))):
            recorder.compiled.setdefault(recorder.current, set()).update(lines)

    sys.setprofile(hook)


def _report_coverage(cov: Any, path: str, recorder: Recorder) -> None:
    try:
        _, statements, _, missing, _ = cov.analysis2(path)
        by_line = cov.get_data().contexts_by_lineno(path)
    except Exception as exc:  # the source is not Python coverage.py can parse
        recorder.emit(event="coverage", error=str(exc))
        return
    lines: dict[str, list[int]] = {}
    counted = set(statements)  # a function's entry can be reported on its decorator or def line
    for line, contexts in sorted(by_line.items()):
        for context in contexts if line in counted else ():
            lines.setdefault(context, []).append(line)
    for context, called in recorder.compiled.items():  # the definitions run as compiled code
        if ran := called & counted:
            lines[context] = sorted(ran | set(lines.get(context, ())))
    exercised = sorted({c for contexts in by_line.values() for c in contexts if c}
                       | {c for c, own in lines.items() if c and own})
    recorder.emit(event="coverage", statements=len(statements), covered=len(statements) - len(missing),
                  exercised_by=exercised, lines=lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
