"""Inside the sandbox: run one pytest module and record every test's outcome as JSON lines.

The pytest counterpart of ``runner.py``, with its command line (``python pytest_runner.py --module
tests.test_x --out results.jsonl [--coverage utils/x.py] [--source utils/x.py]``, the checkout as
working directory) and its events, so what reads them needs to know no kind: ``start`` and
``result`` per test, ``load`` when the module cannot be collected (or pytest is missing),
``coverage`` with a context per test, ``observed`` for a failing ``assert left == right`` of the
test module, ``done``. Tests run under real pytest (``pytest.main`` with the ``Events`` plugin),
with no plugin loaded from the environment and no cache written.

A test's id is unittest's dotted form (``tests.test_x.test_f``, ``tests.test_x.TestX.test_m``,
``tests.test_x.test_f[1-2]``), so the rest of verification maps it to the test file's syntax tree
as it does a unittest id. A ``result`` counts the test's checks: the ``assert`` statements its call
ran (passed, and the one that failed), and the ``pytest.raises``/``pytest.warns`` blocks it
entered; ``wrong_kind`` counts the ``pytest.raises`` blocks that only caught an exception Python
itself raised for a value of the wrong kind, by ``runner.count_checks``'s rule. Coverage, literal
values and their facts are ``runner.py``'s own functions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
import unittest
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any


def _load_runner() -> ModuleType:
    """Load ``runner.py`` beside this script under a name no checkout's module can have.

    Both scripts are bound into one folder of the sandbox, and outside it they are the package's
    files; a plain ``import runner`` would also shadow a checkout's own ``runner.py``.
    """
    path = Path(__file__).resolve().with_name("runner.py")
    spec = importlib.util.spec_from_file_location("_symergion_runner", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import pytest

    from symergion.verify import runner
else:
    runner = _load_runner()

MISSING_FIXTURE = ("fixture {!r} not found: a test function's parameters are pytest fixtures; "
                   "give the value inside the test instead")
MISSING_PYTEST = "pytest is not installed in the environment symergion runs in: pip install pytest"
_EXIT_MEANING = {2: "interrupted", 3: "internal error", 4: "usage error"}


class Events:
    """The pytest plugin that writes ``runner.py``'s events for one test module's run."""

    def __init__(self, recorder: runner.Recorder, module: str, test_file: str, source: str | None) -> None:
        import _pytest

        self.recorder = recorder
        self.module = module  # the dotted name the ids start with
        self.test_file = test_file  # absolute
        self.source = source  # absolute, for the source's own raise statements
        self.ids: dict[str, str] = {}  # pytest node id -> dotted id
        self.items: dict[str, pytest.Item] = {}
        self.in_call = False  # checks count while the test's own function runs
        self.raised: dict[tuple[str, str], BaseException] = {}  # (node id, phase) -> exception
        self.outcome: dict[str, tuple[str, str]] = {}
        self.load_detail = ""
        self.pending: list[dict[str, Any]] = []  # observed events of the running test's call
        self.loaded = True
        # The folders of pytest's and pluggy's own frames, between an assert and its comparison.
        self.machinery = tuple(os.path.dirname(package.__file__ or ".") + os.sep
                               for package in (_pytest, sys.modules.get("pluggy", _pytest)))
        self.ran = 0
        self.problems = 0

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.ids[item.nodeid] = self.dotted_id(item)
            self.items[item.nodeid] = item

    def dotted_id(self, item: pytest.Item) -> str:
        """Return ``<module>.<Class>.<name>`` for an item: the nodes below its module, dotted."""
        import pytest

        chain = item.listchain()
        below = next((i for i, node in enumerate(chain) if isinstance(node, pytest.Module)), 0) + 1
        return ".".join([self.module, *(node.name for node in chain[below:])])

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.recorder.coverage is not None and self.source is not None:
            runner.watch_compiled(self.recorder, self.source)

    def pytest_exception_interact(self, node: pytest.Item | pytest.Collector, call: pytest.CallInfo[Any],
                                  report: pytest.CollectReport | pytest.TestReport) -> None:
        import pytest

        if isinstance(node, pytest.Collector) and call.excinfo is not None:
            # pytest wraps an import's own error (a SyntaxError, an ImportError): report that one.
            error = call.excinfo.value
            cause = error.__cause__ if isinstance(error, pytest.Collector.CollectError) else error
            if cause is not None:
                self.load_detail = self._detail(cause, limit=-4)

    def pytest_internalerror(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # A module that exits at import (SystemExit) ends pytest's session this way.
        self.load_detail = self._detail(excinfo.value, limit=-4)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.loaded = False
            self.recorder.emit(event="load", detail=self.load_detail or report.longreprtext)
            self.load_detail = ""

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        test = self.ids.get(nodeid, nodeid)
        self.recorder.current = test
        self.pending = []
        if self.recorder.coverage is not None:
            self.recorder.coverage.switch_context(test)
        self.recorder.emit(event="start", id=test)

    def pytest_runtest_call(self, item: pytest.Item) -> None:
        # Called before pytest's own implementation, which runs the test: plugins registered
        # later are called first.
        self.in_call = True

    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> None:
        if call.when == "call":
            self.in_call = False
            for event in self.pending:  # the equality asserts that failed
                self.recorder.emit(**event)
            self.pending = []
        if call.excinfo is None:
            return
        error = call.excinfo.value
        self.raised[item.nodeid, call.when] = error
        if call.when == "call" and isinstance(error, AssertionError) and self._own_frame(error) is not None:
            self._checks(item.nodeid)[0] += 1  # the assert statement that failed checked too

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        error = self.raised.pop((report.nodeid, report.when), None)
        if report.skipped:
            reason = getattr(report, "wasxfail", None)
            detail = f"expected failure: {reason}" if reason is not None else _skip_reason(report)
            self.outcome.setdefault(report.nodeid, ("skipped", detail))
        elif report.failed:
            detail = self._detail(error) if error is not None else report.longreprtext
            # An assert, pytest.fail or a strict xfail that passed fails the test, as unittest's
            # failureException does; any other exception, and a failing fixture, is an error.
            failure = report.when == "call" and (error is None or isinstance(error, AssertionError)
                                                 or _is_failure(error))
            outcome = "failed" if failure else "error"
            self.outcome.setdefault(report.nodeid, (outcome, detail))
        elif report.when == "call" and hasattr(report, "wasxfail"):
            # A test marked xfail that passed claims a failure that does not happen.
            self.outcome.setdefault(report.nodeid, ("failed", f"unexpected success of a test marked "
                                                              f"xfail: {report.wasxfail}"))

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        test = self.ids.get(nodeid, nodeid)
        self.recorder.current = ""
        if self.recorder.coverage is not None:
            self.recorder.coverage.switch_context("")
        outcome, detail = self.outcome.pop(nodeid, ("passed", ""))
        checks, wrong_kind = self.recorder.checks.pop(test, [0, 0])
        item = self.items.get(nodeid)
        case = getattr(item, "cls", None)
        if case is not None and issubclass(case, unittest.TestCase):
            # A unittest class run by pytest: its assertion methods count under unittest's id.
            name = getattr(item, "name", "")
            more, more_wrong = self.recorder.checks.pop(f"{case.__module__}.{case.__qualname__}.{name}",
                                                        [0, 0])
            checks, wrong_kind = checks + more, wrong_kind + more_wrong
        self.ran += 1
        self.problems += outcome in ("failed", "error")
        self.recorder.emit(event="result", id=test, outcome=outcome, detail=detail, checks=checks,
                           wrong_kind=wrong_kind)

    def pytest_assertion_pass(self, item: pytest.Item, lineno: int) -> None:
        if self.in_call:
            self._checks(item.nodeid)[0] += 1
        # The pass hook needs an explanation too, so pytest compared the values of an assert
        # that held: what it observed there is no failure.
        self.pending = [event for event in self.pending if event["line"] != lineno]

    def pytest_assertrepr_compare(self, op: str, left: object, right: object) -> None:
        if op != "==" or not self.in_call:
            return
        frame = sys._getframe(1)
        # Up through pytest's and pluggy's own frames to the code of the assert statement.
        while frame.f_back is not None and frame.f_code.co_filename.startswith(self.machinery):
            frame = frame.f_back
        if frame.f_code.co_filename != self.test_file:
            return  # an assert of a helper module, not of the test module
        self.pending.append(dict(event="observed", id=self.recorder.current, line=frame.f_lineno,
                                 method="assertEqual", first=runner.literal(left),
                                 second=runner.literal(right), first_type=runner.type_name(left),
                                 second_type=runner.type_name(right), first_facts=runner.facts(left),
                                 second_facts=runner.facts(right)))

    def count_blocks(self, pytest_module: ModuleType) -> None:
        """Count ``pytest.raises``/``pytest.warns`` blocks, and the raises that caught a wrong kind.

        Their classes are patched, not the functions: ``pytest.raises(E, f, *args)`` enters a block
        of its own too, and a test module may have imported the functions before.
        """
        events = self
        raises = type(pytest_module.raises(BaseException))
        warns = type(pytest_module.warns(Warning))
        for kind in (raises, warns):
            enter = kind.__enter__

            def entering(block: Any, _enter: Any = enter) -> Any:
                if events.in_call and events.recorder.current:
                    events.recorder.checks.setdefault(events.recorder.current, [0, 0])[0] += 1
                return _enter(block)

            kind.__enter__ = entering
        leave = raises.__exit__

        def leaving(block: Any, exc_type: Any, exc_value: Any, tb: TracebackType | None) -> Any:
            own = False
            if exc_type in runner.WRONG_KIND and tb is not None:
                last = traceback.extract_tb(tb)[-1]
                own = (events.source is not None and os.path.abspath(last.filename) == events.source
                       and (last.line or "").lstrip().startswith("raise"))
            caught = leave(block, exc_type, exc_value, tb)
            if caught and exc_type in runner.WRONG_KIND and not own and events.recorder.current:
                events.recorder.checks.setdefault(events.recorder.current, [0, 0])[1] += 1
            return caught

        raises.__exit__ = leaving

    def _checks(self, nodeid: str) -> list[int]:
        return self.recorder.checks.setdefault(self.ids.get(nodeid, nodeid), [0, 0])

    def _own_frame(self, error: BaseException) -> TracebackType | None:
        """Return the first traceback entry in the test module, or None when none is."""
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != self.test_file:
            tb = tb.tb_next
        return tb

    def _detail(self, error: BaseException, limit: int = -6) -> str:
        """Format an exception as Python does, from the test module's frame on (pytest's are noise).

        Without such a frame, the last ``limit`` frames; none for the test module's own syntax
        error, whose message names its file and line.
        """
        argname = getattr(error, "argname", None)
        if type(error).__name__ == "FixtureLookupError" and isinstance(argname, str):
            # pytest's own text is a table of every fixture it knows, none of which helps.
            return f"{MISSING_FIXTURE.format(argname)}\n"
        own = self._own_frame(error)
        if own is None and isinstance(error, SyntaxError) and error.filename == self.test_file:
            return "".join(traceback.format_exception_only(type(error), error))
        tb, last = (own, None) if own is not None else (error.__traceback__, limit)
        return "".join(traceback.format_exception(type(error), error, tb, limit=last))


def _is_failure(error: BaseException) -> bool:
    """Return whether pytest failed the test on purpose (``pytest.fail``, a raises that did not)."""
    import pytest

    return isinstance(error, pytest.fail.Exception)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext


def module_path(module: str) -> str:
    """Return the file of a dotted test module, relative to the checkout."""
    base = module.replace(".", "/")
    return f"{base}/__init__.py" if os.path.isdir(base) and not os.path.exists(f"{base}.py") else f"{base}.py"


def main(argv: list[str]) -> int:
    """Run the module's tests under pytest; exit 0 when every test that ran passed."""
    args = runner.parse_args(argv, "pytest_runner")
    # Only what the command line names: an installed plugin could reorder, rerun or skip tests.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:  # before the checkout is on the path: a pytest.py of its own would shadow pytest
        import pytest
    except ImportError:
        with open(args.out, "a", encoding="utf-8") as out:
            out.write(json.dumps({"event": "load", "detail": MISSING_PYTEST}) + "\n")
            out.write(json.dumps({"event": "done", "ran": 0}) + "\n")
        print(MISSING_PYTEST, file=sys.stderr)
        return 1
    # The checkout, not this script's folder, is what the tests import from.
    sys.path[0] = os.getcwd()
    with open(args.out, "a", encoding="utf-8") as out:
        path = module_path(args.module)
        source = args.source or args.coverage
        cov = runner._start_coverage(args.coverage, out)
        recorder = runner.Recorder(out, cov)
        events = Events(recorder, args.module, os.path.abspath(path),
                        os.path.abspath(source) if source else None)
        runner.count_checks(recorder, events.source)  # unittest classes, which pytest runs too
        events.count_blocks(pytest)
        if not os.path.isfile(path):
            events.loaded = False
            recorder.emit(event="load", detail=f"No module named {args.module!r}: there is no file {path}")
            code = 0
        else:
            # The project's addopts are cleared: they name plugins this run does not load.
            code = pytest.main(["-q", "--rootdir=.", "-p", "no:cacheprovider", "-p", "no:randomly",
                                "-o", "addopts=", "-o", "enable_assertion_pass_hook=true", path],
                               plugins=[events])
        sys.setprofile(None)
        if events.loaded and int(code) in _EXIT_MEANING and not events.ran:
            events.loaded = False
            recorder.emit(event="load", detail=events.load_detail or f"pytest stopped with exit code "
                          f"{int(code)} ({_EXIT_MEANING[int(code)]}) before running {path}")
        if cov is not None and args.coverage is not None:
            cov.stop()
            runner._report_coverage(cov, os.path.abspath(args.coverage), recorder)
        recorder.emit(event="done", ran=events.ran)
    ok = events.loaded and not events.problems
    print(f"Ran {events.ran} tests; {'OK' if ok else 'FAILED'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
