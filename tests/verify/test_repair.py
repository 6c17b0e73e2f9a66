"""Repairs: qualify names of the module under test, pin failing assertions to observed values."""

from __future__ import annotations

import ast
from pathlib import Path

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify.candidate import verify_candidate
from symergion.verify.pin import complete_assertions, pin_assertions
from symergion.verify.prune import prune
from symergion.verify.repair import qualify_names, repair, repair_candidate
from symergion.verify.result import Observation, TestOutcome, VerifyResult
from symergion.verify.sandbox import Sandbox
from symergion.verify.syntax import top_level_names
from symergion.verify.truncate import truncate_tests
from tests.helpers.git import git
from tests.helpers.verify import CALC, commit_files, needs_bwrap

SPEC = VerifySpec(coverage=True, runs=1)

BROKEN = '''import unittest

from utils import calc


class TestCalc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(1, 2), 4, 1)
        self.assertEqual(calc.add(2, 2), 5)

    def test_sub(self):
        result = sub(3, 1)
        self.assertEqual(result, 0)

    def test_raises(self):
        self.assertEqual(calc.add(1, None), 1)

    def test_right(self):
        self.assertEqual(calc.sub(0, 0), 0)
'''


def failed(line: int, first: str | None, second: str | None) -> TestOutcome:
    seen = Observation(line, "assertEqual", first, second)
    return TestOutcome("failed", "AssertionError", observed=(seen,))


def test_qualify_uses_the_files_alias_of_the_module() -> None:
    text, names, inserted = qualify_names(BROKEN, CALC, "utils.calc", "test_calc.py")
    assert names == ("sub",)
    assert inserted is None
    assert "result = calc.sub(3, 1)" in text
    assert text.count("\n") == BROKEN.count("\n")


def test_qualify_imports_names_when_the_file_has_no_alias() -> None:
    source = "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_a(self):\n        add(1, 2)\n"
    text, names, inserted = qualify_names(source, CALC, "utils.calc", "test_calc.py")
    assert names == ("add",)
    assert inserted == 2
    assert text.splitlines()[1] == "from utils.calc import add"
    ast.parse(text)


def test_qualify_leaves_defined_builtin_and_foreign_names_alone() -> None:
    source = ("import unittest\nfrom utils import calc\n\n\ndef sub(a, b):\n    return 0\n\n\n"
              "class T(unittest.TestCase):\n    def test_a(self):\n        print(len(sub(1, 2)), missing)\n")
    assert qualify_names(source, CALC, "utils.calc", "test_calc.py") == (source, (), None)


def test_top_level_names_are_definitions_and_assignments() -> None:
    assert top_level_names("import os\nX = 1\ndef f():\n    y = 2\nclass C:\n    pass\n") == {"X", "f", "C"}


def test_pin_rewrites_the_expected_side_and_drops_a_numeric_third_argument() -> None:
    result = VerifyResult(source="utils/calc.py", tests={"test_calc.TestCalc.test_add": failed(8, "3", "4")})
    text, pins, dropped = pin_assertions(BROKEN, result, "utils.calc", "test_calc.py")
    assert "self.assertEqual(calc.add(1, 2), 3)\n" in text
    assert [(p.before, p.after, p.line) for p in pins] == [("4", "3", 8)]
    assert dropped == (8,)


def test_pin_follows_a_local_assigned_from_the_module() -> None:
    source = BROKEN.replace("sub(3, 1)", "calc.sub(3, 1)")
    result = VerifyResult(source="utils/calc.py", tests={"test_calc.TestCalc.test_sub": failed(13, "2", "0")})
    text, pins, _ = pin_assertions(source, result, "utils.calc", "test_calc.py")
    assert "self.assertEqual(result, 2)" in text
    assert len(pins) == 1


def test_pin_needs_a_literal_and_exactly_one_side_calling_the_module() -> None:
    not_literal = VerifyResult(source="utils/calc.py",
                               tests={"test_calc.TestCalc.test_add": failed(8, None, "4")})
    assert pin_assertions(BROKEN, not_literal, "utils.calc", "test_calc.py")[1] == ()
    both = BROKEN.replace("calc.add(2, 2), 5)", "calc.add(2, 2), calc.add(1, 1))")
    result = VerifyResult(source="utils/calc.py", tests={"test_calc.TestCalc.test_add": failed(9, "4", "2")})
    assert pin_assertions(both, result, "utils.calc", "test_calc.py")[1] == ()
    plain = ("import unittest\n\n\nclass T(unittest.TestCase):\n    def test_a(self):\n"
             "        self.assertEqual(1, 2)\n")
    result = VerifyResult(source="utils/calc.py", tests={"test_x.T.test_a": failed(6, "1", "2")})
    assert pin_assertions(plain, result, "utils.calc", "test_x.py")[1] == ()


def test_a_pin_keeps_its_line_in_the_text_after_an_inserted_import() -> None:
    source = BROKEN.replace("from utils import calc", "from utils.calc import add").replace("calc.add", "add")
    result = VerifyResult(source="utils/calc.py", tests={"test_calc.TestCalc.test_add": failed(9, "4", "5")})
    repaired = repair(source, result, CALC, "test_calc.py")
    assert repaired.qualified == ("sub",)
    assert repaired.pinned[0].line == 10
    assert repaired.text.splitlines()[9].strip() == "self.assertEqual(add(2, 2), 4)"


def test_commit_message_names_every_pin_for_review() -> None:
    result = VerifyResult(source="utils/calc.py", tests={"test_calc.TestCalc.test_add": failed(8, "3", "4")})
    message = repair(BROKEN, result, CALC, "test_calc.py").commit_message()
    assert message.startswith("Repair: pinned 1 assertion, qualified 1 name, dropped 1 misplaced argument\n")
    assert "- test_calc.TestCalc.test_add (line 8): expected 4 -> 3" in message
    assert "Qualified with the module under test: sub" in message


@needs_bwrap
def test_runner_records_observed_values_and_lines_per_test(calc_repo: Path, sandbox: Sandbox) -> None:
    commit = commit_files(calc_repo, {"test_calc.py": BROKEN})
    result = verify_candidate(GitRepo(calc_repo), commit, SPEC, "utils/calc.py", "test_calc.py",
                              sandbox=sandbox)
    add = result.tests["test_calc.TestCalc.test_add"]
    assert add.outcome == "failed"
    assert add.observed == (Observation(8, "assertEqual", "3", "4"),)
    assert result.tests["test_calc.TestCalc.test_raises"].observed == ()  # it raised: nothing observed
    assert result.statements == 4
    assert result.lines["test_calc.TestCalc.test_right"] == (6,)
    assert set(result.lines[""]) == {1, 5}  # the def lines, at import time
    # Only the passing test that calls code counts, with the import-time lines; strictly, without.
    assert result.tested_coverage() == 75.0
    assert result.tested_coverage(strict=True) == 25.0


@needs_bwrap
def test_repair_candidate_pins_qualifies_and_confirms_in_sandbox(calc_repo: Path, sandbox: Sandbox) -> None:
    repo = GitRepo(calc_repo)
    commit = commit_files(calc_repo, {"test_calc.py": BROKEN})
    first = verify_candidate(repo, commit, SPEC, "utils/calc.py", "test_calc.py", sandbox=sandbox)
    assert first.passed == 1
    repaired = repair_candidate(repo, commit, SPEC, "utils/calc.py", "test_calc.py", first, sandbox=sandbox)
    assert repaired.qualified == ("sub",)
    # add's two assertions fail one after the other: the second is pinned in the next round, with
    # sub's, which failed with a NameError until its name was qualified.
    pins = [(p.test.rsplit(".", 1)[1], p.before, p.after) for p in repaired.pinned]
    assert pins[0] == ("test_add", "4", "3")
    assert sorted(pins[1:]) == [("test_add", "5", "4"), ("test_sub", "0", "2")]
    assert repaired.rerun is not None
    # test_raises raised TypeError inside calc.add: once nothing else applies, it expects it.
    assert repaired.raising == ("test_calc.TestCalc.test_raises",)
    assert "        with self.assertRaises(TypeError):\n            calc.add(1, None)\n" in repaired.text
    outcomes = {t.rsplit(".", 1)[1]: o.outcome for t, o in repaired.rerun.tests.items()}
    assert outcomes == {"test_add": "passed", "test_sub": "passed", "test_raises": "passed",
                        "test_right": "passed"}
    assert repaired.rerun.ok and repaired.rerun.exercising == 4
    assert prune(repaired.text, repaired.rerun, "test_calc.py").removed == ()
    message = repaired.commit_message()
    assert "Repair: pinned 3 assertions, qualified 1 name" in message
    assert "Expect the exception the module raised (review: recorded, not specified): " \
           "test_calc.TestCalc.test_raises" in message


def test_only_values_that_read_back_equal_and_of_their_type_are_literals() -> None:
    from symergion.verify.runner import literal

    assert literal((0.5, 1, "a", None, [b"x"], {1: {2}})) == "(0.5, 1, 'a', None, [b'x'], {1: {2}})"
    assert literal(float("nan")) is None  # never equal to itself
    assert literal(object()) is None
    assert literal(range(3)) is None
    assert literal("x" * 5000) is None  # too long to be a useful expected value


COMPLETE = """import unittest

from utils import calc


class TestCalc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(1, 2))
        self.assertEqual(3)
        total = calc.add(2, 2)
        self.assertEqual(total)
"""


def test_one_argument_assertions_that_call_the_module_get_an_expected_value() -> None:
    text, lines = complete_assertions(COMPLETE, "utils.calc", "test_calc.py")
    assert lines == (8, 11)
    assert "self.assertEqual(calc.add(1, 2), None)" in text
    assert "self.assertEqual(3)\n" in text  # calls nothing of the module: left alone
    assert "self.assertEqual(total, None)" in text
    result = VerifyResult(source="utils/calc.py", tests={})
    assert repair(COMPLETE, result, CALC, "test_calc.py").completed == (8, 11)


def error(detail: str) -> TestOutcome:
    return TestOutcome("error", detail)


TRACE_IN_TEST = ('Traceback (most recent call last):\n  File "test_calc.py", line {line}, in test_a\n'
                 "    calc.nothing()\nAttributeError: module 'utils.calc' has no attribute 'nothing'\n")
TRACE_IN_SOURCE = ('Traceback (most recent call last):\n  File "test_calc.py", line 8, in test_a\n'
                   "    self.assertEqual(calc.add(1, None), 1)\n"
                   '  File "utils/calc.py", line 2, in add\n    return a + b\n'
                   "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'\n")
TWO_STATEMENTS = ("import unittest\n\nfrom utils import calc\n\n\nclass T(unittest.TestCase):\n"
                  "    def test_a(self):\n        self.assertEqual(calc.add(1, 2), 3)\n"
                  "        calc.nothing()\n        self.assertEqual(calc.sub(1, 1), 0)\n\n"
                  "    def test_b(self):\n        pass\n")


def test_a_test_is_cut_before_its_failing_statement_when_statements_precede_it() -> None:
    result = VerifyResult(source="utils/calc.py",
                          tests={"test_calc.T.test_a": error(TRACE_IN_TEST.format(line=9))})
    repaired = repair(TWO_STATEMENTS, result, CALC, "test_calc.py")
    assert repaired.truncated == ("test_calc.T.test_a",) and repaired.raising == ()
    assert "calc.nothing" not in repaired.text and "calc.sub" not in repaired.text
    assert "self.assertEqual(calc.add(1, 2), 3)\n\n    def test_b(self):" in repaired.text
    ast.parse(repaired.text)
    # A failing first statement leaves nothing to keep, and an error the test file raised
    # itself (no frame in the module) is no behaviour of the module to expect.
    first = VerifyResult(source="utils/calc.py",
                         tests={"test_calc.T.test_a": error(TRACE_IN_TEST.format(line=8))})
    assert not repair(TWO_STATEMENTS, first, CALC, "test_calc.py").changed
    # What would be left repeats another test: it stays whole, for the prune to remove.
    twin = TWO_STATEMENTS.replace("        pass\n", "        self.assertEqual(calc.add(1, 2), 3)\n")
    assert not repair(twin, result, CALC, "test_calc.py").changed


def test_a_first_call_that_raised_inside_the_module_expects_the_exception() -> None:
    text = ("import unittest\n\nfrom utils import calc\n\n\nclass T(unittest.TestCase):\n"
            "    def test_a(self):\n        self.assertEqual(calc.add(1, None), 1)\n"
            "        self.assertEqual(calc.add(2, None), 2)\n")
    result = VerifyResult(source="utils/calc.py", tests={"test_calc.T.test_a": error(TRACE_IN_SOURCE)})
    repaired = repair(text, result, CALC, "test_calc.py")
    assert repaired.raising == ("test_calc.T.test_a",)
    assert repaired.text.endswith("    def test_a(self):\n        with self.assertRaises(TypeError):\n"
                                  "            calc.add(1, None)\n")
    # A failure (not an error), or an exception the file cannot name, is left to the prune.
    failed_result = VerifyResult(source="utils/calc.py",
                                 tests={"test_calc.T.test_a": TestOutcome("failed", TRACE_IN_SOURCE)})
    assert not repair(text, failed_result, CALC, "test_calc.py").changed
    unnamed = TRACE_IN_SOURCE.replace("TypeError:", "somelib.CustomError:")
    result = VerifyResult(source="utils/calc.py", tests={"test_calc.T.test_a": error(unnamed)})
    assert not repair(text, result, CALC, "test_calc.py").changed


PATHS = "import os\n\n\ndef joined(head, tail):\n    return os.path.join(head, tail)\n"
BOUND = '''import unittest

from utils import paths


class TestPaths(unittest.TestCase):
    def test_joined(self):
        head = 1
        tail = 2
        result = paths.joined(head, tail)
        self.assertEqual(result, None)

    def test_setup_only(self):
        head = 1
        self.assertEqual(head, 2)
'''


@needs_bwrap
def test_a_call_after_bindings_that_raised_through_the_module_becomes_the_expected_exception(
        tmp_path: Path, sandbox: Sandbox) -> None:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit = commit_files(path, {"utils/__init__.py": "", "utils/paths.py": PATHS, "test_paths.py": BOUND})
    result = verify_candidate(GitRepo(path), commit, SPEC, "utils/paths.py", "test_paths.py", sandbox=sandbox)
    # os.path.join raised, called by the module: the traceback passes through the source.
    assert result.tests["test_paths.TestPaths.test_joined"].outcome == "error"
    text, cut, raising = truncate_tests(BOUND, result, "utils/paths.py", "test_paths.py")
    assert raising == ("test_paths.TestPaths.test_joined",)
    assert ("        head = 1\n        tail = 2\n        with self.assertRaises(TypeError):\n"
            "            paths.joined(head, tail)\n") in text
    # A failing test whose earlier statements only bind values is not cut down to them: they
    # would run no module code. The prune removes it instead.
    assert cut == () and "        self.assertEqual(head, 2)\n" in text


SHAPES = '''class Box:
    def __init__(self, size):
        self.size = size


def make(size):
    return Box(size)


def sizes(count):
    return [Box(n) for n in range(count)]


def pair(size):
    return (make(size), object())
'''

SHAPE_TESTS = '''import unittest

from utils import shapes


class TestShapes(unittest.TestCase):
    def test_make(self):
        result = shapes.make(2)
        self.assertEqual(result, None)

    def test_sizes(self):
        self.assertEqual(shapes.sizes(2), [])

    def test_pair(self):
        self.assertEqual(None, shapes.pair(1))
'''


@needs_bwrap
def test_a_value_that_is_no_literal_is_pinned_to_its_type(calc_repo: Path, sandbox: Sandbox) -> None:
    repo = GitRepo(calc_repo)
    commit = commit_files(calc_repo, {"utils/shapes.py": SHAPES, "test_shapes.py": SHAPE_TESTS})
    first = verify_candidate(repo, commit, SPEC, "utils/shapes.py", "test_shapes.py", sandbox=sandbox)
    make = first.tests["test_shapes.TestShapes.test_make"]
    assert make.observed == (Observation(9, "assertEqual", None, "None", "utils.shapes.Box", None),)
    repaired = repair_candidate(repo, commit, SPEC, "utils/shapes.py", "test_shapes.py", first,
                                sandbox=sandbox)
    # A class of the module through the file's alias, a builtin by its name, either side.
    assert "        self.assertIsInstance(result, shapes.Box)\n" in repaired.text
    assert "        self.assertIsInstance(shapes.sizes(2), list)\n" in repaired.text
    assert "        self.assertIsInstance(shapes.pair(1), tuple)\n" in repaired.text
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.exercising == 3
    assert "- test_shapes.TestShapes.test_make (line 9): expected None -> an instance of shapes.Box" in (
        repaired.commit_message())
