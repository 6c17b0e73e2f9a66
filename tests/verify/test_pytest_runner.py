"""The pytest runner: runner.py's command line and events for a pytest module, run by real pytest."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from symergion.verify.pytest_runner import MISSING_PYTEST
from symergion.verify.sandbox import Limits, Run, Sandbox
from tests.helpers.verify import CALC

# The module under test: ``check`` rejects a value with a raise statement of its own.
SOURCE = CALC + '''

def check(value):
    if not isinstance(value, int):
        raise TypeError("value must be an int")
    return value * 2
'''

OUTCOMES = '''import pytest

from utils import calc


def test_pass():
    assert calc.add(1, 2) == 3


def test_fail():
    assert calc.add(2, 2) == 5


def test_error():
    calc.add(1, None)


@pytest.fixture
def broken():
    raise RuntimeError("no database")


def test_broken_fixture(broken):
    assert broken


@pytest.fixture
def leaky():
    yield 1
    raise RuntimeError("left a file behind")


def test_broken_teardown(leaky):
    assert leaky == 1


@pytest.mark.skip(reason="not yet")
def test_skip():
    assert False


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert calc.sub(1, 1) == 1


@pytest.mark.xfail(reason="was a bug")
def test_xpass():
    assert calc.sub(1, 1) == 0


@pytest.mark.xfail(strict=True)
def test_xpass_strict():
    assert calc.sub(1, 1) == 0


def test_did_not_raise():
    with pytest.raises(ValueError):
        calc.add(1, 2)


@pytest.mark.parametrize("a, b", [(1, 2), (2, 3)])
def test_add(a, b):
    assert calc.add(a, b) == a + b


class TestCalc:
    def test_sub(self, tmp_path):
        (tmp_path / "note").write_text("x")
        assert calc.sub(3, 1) == 2
'''


def make_checkout(root: Path, files: dict[str, str]) -> Path:
    """Write a checkout with utils/calc.py and the given files."""
    checkout = root / "checkout"
    for name, text in {"utils/__init__.py": "", "utils/calc.py": SOURCE, **files}.items():
        path = checkout / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return checkout


def run_runner(sandbox: Sandbox, checkout: Path, module: str, *options: str,
               python: tuple[str, ...] = (sys.executable,)) -> tuple[Run, list[dict[str, Any]]]:
    """Run the pytest runner on a test module and return the run and its events."""
    argv = [*python, sandbox.tool("pytest_runner.py"), "--module", module,
            "--out", sandbox.results_path(checkout), *options]
    run = sandbox.run(argv, checkout, Limits(timeout=60))
    return run, [json.loads(line) for line in run.results.splitlines()]


def results(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in events if e["event"] == "result"}


def by_name(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the result events keyed by the test's name, without the module."""
    return {test.removeprefix("test_x."): e for test, e in results(events).items()}


def sandbox_of(mode: str, request: pytest.FixtureRequest) -> Sandbox:
    if mode == "bwrap":
        request.getfixturevalue("bwrap_available")
    return Sandbox(mode=mode)


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_every_test_gets_its_outcome_under_a_unittest_style_id(
        mode: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    sandbox = sandbox_of(mode, request)
    checkout = make_checkout(tmp_path, {"tests/test_x.py": OUTCOMES})
    run, events = run_runner(sandbox, checkout, "tests.test_x")
    outcomes = {test: e["outcome"] for test, e in results(events).items()}
    assert outcomes == {
        "tests.test_x.test_pass": "passed",
        "tests.test_x.test_fail": "failed",
        "tests.test_x.test_error": "error",
        "tests.test_x.test_broken_fixture": "error",
        "tests.test_x.test_broken_teardown": "error",
        "tests.test_x.test_skip": "skipped",
        "tests.test_x.test_xfail": "skipped",
        "tests.test_x.test_xpass": "failed",  # claims a failure that does not happen
        "tests.test_x.test_xpass_strict": "failed",
        "tests.test_x.test_did_not_raise": "failed",
        "tests.test_x.test_add[1-2]": "passed",
        "tests.test_x.test_add[2-3]": "passed",
        "tests.test_x.TestCalc.test_sub": "passed",
    }
    # Each test starts before its result, in the file's order.
    starts = [e["id"] for e in events if e["event"] == "start"]
    assert starts == list(outcomes)
    assert events[-1] == {"event": "done", "ran": 13}
    assert run.exit_code == 1
    assert "Ran 13 tests; FAILED" in run.output
    by_id = results(events)
    # Details are Python's tracebacks from the test's own frame on, as unittest's runner gives.
    assert by_id["tests.test_x.test_fail"]["detail"].startswith("Traceback (most recent call last):\n")
    assert 'test_x.py", line 11, in test_fail' in by_id["tests.test_x.test_fail"]["detail"]
    error = by_id["tests.test_x.test_error"]["detail"]
    assert error.rstrip().endswith("TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'")
    assert 'utils/calc.py", line 2, in add' in error
    assert "RuntimeError: no database" in by_id["tests.test_x.test_broken_fixture"]["detail"]
    assert "RuntimeError: left a file behind" in by_id["tests.test_x.test_broken_teardown"]["detail"]
    assert by_id["tests.test_x.test_skip"]["detail"] == "not yet"
    assert by_id["tests.test_x.test_xfail"]["detail"] == "expected failure: known bug"
    assert by_id["tests.test_x.test_xpass"]["detail"] == \
        "unexpected success of a test marked xfail: was a bug"
    assert "DID NOT RAISE" in by_id["tests.test_x.test_did_not_raise"]["detail"]


def test_a_passing_module_exits_zero_and_leaves_no_cache(tmp_path: Path) -> None:
    test = "def test_one():\n    assert 1 + 1 == 2\n\n\ndef test_two():\n    assert 'a' * 2 == 'aa'\n"
    checkout = make_checkout(tmp_path, {"test_x.py": test})
    run, events = run_runner(Sandbox(mode="none"), checkout, "test_x")
    assert [e["outcome"] for e in results(events).values()] == ["passed", "passed"]
    assert run.exit_code == 0
    assert "Ran 2 tests; OK" in run.output
    assert not (checkout / ".pytest_cache").exists()


CHECKS = '''import warnings

import pytest

from utils import calc


@pytest.fixture
def number():
    assert calc.add(1, 1) == 2  # a fixture's assert is setup, not the test's check
    return 2


def test_nothing():
    calc.add(1, 2)


def test_two_asserts():
    assert calc.add(1, 2) == 3
    assert calc.sub(3, 2) == 1


def test_loop(number):
    for value in range(3):
        assert calc.add(value, number) > value


def test_raises():
    with pytest.raises(ZeroDivisionError):
        1 / 0


def test_warns():
    with pytest.warns(UserWarning):
        warnings.warn("careful", UserWarning)


def test_fails_on_the_second():
    assert calc.add(1, 1) == 2
    assert calc.add(2, 2) == 5
    assert calc.add(3, 3) == 6


def test_wrong_kind():
    with pytest.raises(TypeError):
        len(1)


def test_wrong_kind_in_a_tuple():
    with pytest.raises((ValueError, AttributeError)):
        None.strip()


def test_wrong_kind_called():
    pytest.raises(TypeError, len, 1)


def test_raised_by_the_source():
    with pytest.raises(TypeError):
        calc.check("a")


def test_raised_by_python_in_the_source():
    with pytest.raises(TypeError):
        calc.add(1, None)
'''


def test_checks_count_asserts_run_and_raises_blocks_and_wrong_kinds(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path, {"test_x.py": CHECKS})
    _, events = run_runner(Sandbox(mode="none"), checkout, "test_x", "--source", "utils/calc.py")
    counted = {test: (e["checks"], e["wrong_kind"]) for test, e in by_name(events).items()}
    assert counted == {
        "test_nothing": (0, 0),
        "test_two_asserts": (2, 0),
        "test_loop": (3, 0),  # each assert run counts, the fixture's not
        "test_raises": (1, 0),
        "test_warns": (1, 0),
        "test_fails_on_the_second": (2, 0),  # the one that passed and the one that failed
        "test_wrong_kind": (1, 1),
        "test_wrong_kind_in_a_tuple": (1, 1),
        "test_wrong_kind_called": (1, 1),
        "test_raised_by_the_source": (1, 0),  # calc.check's own raise statement
        "test_raised_by_python_in_the_source": (1, 1),  # in calc.add, yet no raise of its own
    }
    # Without the source named, the same TypeError is Python's for all the runner can tell.
    _, events = run_runner(Sandbox(mode="none"), checkout, "test_x")
    assert by_name(events)["test_raised_by_the_source"]["wrong_kind"] == 1


OBSERVED = '''from utils import calc


def f(x):
    return x * 2


def test_pinned_wrong():
    assert calc.add(1, 1) == 2
    assert f(2) == 5


def test_ordered():
    assert f(2) < 3


def test_values():
    assert [f(1), None] == (
        [2, 3])


def test_objects():
    assert object() == 1


def test_helper(same):
    same(calc.add(1, 1), 3)
'''

# An equality assert of another module (pytest rewrites conftest's too) is not the test's.
HELPER = '''import pytest


@pytest.fixture
def same():
    def check(first, second):
        assert first == second
    return check
'''


def test_a_failing_equality_assert_records_both_values_and_its_line(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path, {"test_x.py": OBSERVED, "conftest.py": HELPER})
    _, events = run_runner(Sandbox(mode="none"), checkout, "test_x")
    observed = [e for e in events if e["event"] == "observed"]
    assert observed[0] == {
        "event": "observed", "id": "test_x.test_pinned_wrong", "line": 10, "method": "assertEqual",
        "first": "4", "second": "5", "first_type": None, "second_type": None,
        "first_facts": {"type": "builtins.int"}, "second_facts": {"type": "builtins.int"}}
    # The passing assert before it records nothing, nor does an order comparison or a helper's.
    assert [(e["id"], e["line"]) for e in observed] == [
        ("test_x.test_pinned_wrong", 10), ("test_x.test_values", 18), ("test_x.test_objects", 23)]
    values = observed[1]
    assert (values["first"], values["second"]) == ("[2, None]", "[2, 3]")
    assert values["first_facts"] == {"type": "builtins.list", "len": 2}
    objects = observed[2]
    assert objects["first"] is None and objects["first_type"] == "builtins.object"
    assert objects["second"] == "1"


COVERED = '''from utils import calc


def test_add():
    assert calc.add(1, 2) == 3


def test_check():
    assert calc.check(2) == 4


def test_nothing():
    assert True
'''


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_coverage_has_the_lines_each_test_ran(mode: str, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    sandbox = sandbox_of(mode, request)
    checkout = make_checkout(tmp_path, {"test_x.py": COVERED})
    run, events = run_runner(sandbox, checkout, "test_x", "--coverage", "utils/calc.py",
                             "--source", "utils/calc.py")
    assert run.exit_code == 0, run.output
    coverage = next(e for e in events if e["event"] == "coverage")
    assert coverage["statements"] == 8
    assert coverage["covered"] == 6  # not sub's body, nor check's raise
    assert coverage["exercised_by"] == ["test_x.test_add", "test_x.test_check"]
    assert coverage["lines"] == {"": [1, 5, 9], "test_x.test_add": [2], "test_x.test_check": [10, 12]}
    assert [e["event"] for e in events][-2:] == ["coverage", "done"]


@pytest.mark.parametrize(("text", "last"), [
    ("def test_broken(:\n    pass\n", "SyntaxError: invalid syntax"),
    ("import utils.missing\n\n\ndef test_a():\n    assert True\n",
     "ModuleNotFoundError: No module named 'utils.missing'"),
    ("raise SystemExit(3)\n", "SystemExit: 3"),
])
def test_a_module_that_cannot_load_says_why(text: str, last: str, tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path, {"test_x.py": text})
    run, events = run_runner(Sandbox(mode="none"), checkout, "test_x")
    assert [e["event"] for e in events] == ["load", "done"]
    detail = events[0]["detail"]
    assert detail.rstrip().endswith(last)
    assert 'test_x.py", line 1' in detail
    assert events[1] == {"event": "done", "ran": 0}
    assert run.exit_code == 1


def test_a_missing_test_file_is_a_load_error(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path, {})
    run, events = run_runner(Sandbox(mode="none"), checkout, "tests.test_gone")
    assert events[0] == {"event": "load", "detail": "No module named 'tests.test_gone': there is no "
                                                    "file tests/test_gone.py"}
    assert run.exit_code == 1


def test_without_pytest_installed_the_load_error_says_how_to_install_it(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path, {"test_x.py": "def test_a():\n    assert True\n"})
    # -S: the interpreter without its site-packages, where pytest is installed.
    run, events = run_runner(Sandbox(mode="none"), checkout, "test_x", python=(sys.executable, "-S"))
    assert events == [{"event": "load", "detail": MISSING_PYTEST}, {"event": "done", "ran": 0}]
    assert run.exit_code == 1
    assert MISSING_PYTEST in run.output


def test_the_checkouts_own_runner_module_and_addopts_do_not_interfere(tmp_path: Path) -> None:
    test = ("import runner\n\n\ndef test_own():\n    assert runner.NAME == 'mine'\n\n\n"
            "def test_second():\n    assert runner.NAME == 'theirs'\n\n\n"
            "def test_third():\n    assert runner.NAME == 'mine'\n")
    # -x would stop at the first failure: the project's addopts are not this run's.
    checkout = make_checkout(tmp_path, {"test_x.py": test, "runner.py": "NAME = 'mine'\n",
                                        "pytest.ini": "[pytest]\naddopts = -x\n"})
    _, events = run_runner(Sandbox(mode="none"), checkout, "test_x")
    assert {t: e["outcome"] for t, e in by_name(events).items()} == {
        "test_own": "passed", "test_second": "failed", "test_third": "passed"}


def test_a_unittest_class_in_a_pytest_module_counts_its_assertion_methods(tmp_path: Path) -> None:
    test = ('import unittest\n\nfrom utils import calc\n\n\nclass TestCalc(unittest.TestCase):\n'
            '    def test_add(self):\n        self.assertEqual(calc.add(1, 2), 3)\n'
            '        self.assertTrue(calc.add(0, 0) == 0)\n\n'
            '    def test_len(self):\n        with self.assertRaises(TypeError):\n            len(1)\n')
    checkout = make_checkout(tmp_path, {"test_x.py": test})
    _, events = run_runner(Sandbox(mode="none"), checkout, "test_x")
    assert {t: (e["outcome"], e["checks"], e["wrong_kind"]) for t, e in by_name(events).items()} == {
        "TestCalc.test_add": ("passed", 2, 0), "TestCalc.test_len": ("passed", 1, 1)}
