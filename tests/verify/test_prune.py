"""Prune: cut failing, erring and flaky tests by line ranges; everything else stays byte-identical."""

from __future__ import annotations

from pathlib import Path

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify.candidate import verify_candidate
from symergion.verify.prune import Removed, prune, prune_candidate, redundant_tests
from symergion.verify.result import TestOutcome, VerifyResult
from symergion.verify.sandbox import Sandbox
from tests.helpers.git import git
from tests.helpers.verify import commit_files, needs_bwrap

FILE = '''import unittest

from utils.x import f


# Helpers stay.
def helper():
    return 1


class TestF(unittest.TestCase):
    """Tests of f."""

    def setUp(self):
        self.v = 1

    def test_ok(self):
        self.assertEqual(f(1), 1)

    # checks two
    @unittest.skipIf(False, "never")
    def test_bad(self):
        self.assertEqual(f(1), 2)

    def test_flaky(self):
        self.assertTrue(True)


class TestG(unittest.TestCase):
    def test_only(self):
        raise NameError("g")


if __name__ == "__main__":
    unittest.main()
'''


def result(**tests: TestOutcome) -> VerifyResult:
    ids = {f"test_x.{k.replace('__', '.')}": v for k, v in tests.items()}
    return VerifyResult(source="utils/x.py", tests=ids)


def test_removes_failing_erring_and_flaky_tests_and_empty_classes() -> None:
    pruned = prune(FILE, result(
        TestF__test_ok=TestOutcome("passed"),
        TestF__test_bad=TestOutcome("failed", "AssertionError: 1 != 2"),
        TestF__test_flaky=TestOutcome("passed", "failed in one run", flaky=True),
        TestG__test_only=TestOutcome("error", "NameError: g"),
    ), "test_x.py")
    assert pruned.text == '''import unittest

from utils.x import f


# Helpers stay.
def helper():
    return 1


class TestF(unittest.TestCase):
    """Tests of f."""

    def setUp(self):
        self.v = 1

    def test_ok(self):
        self.assertEqual(f(1), 1)


if __name__ == "__main__":
    unittest.main()
'''
    assert [r.test for r in pruned.removed] == ["test_x.TestF.test_bad", "test_x.TestF.test_flaky",
                                                "test_x.TestG.test_only"]
    assert pruned.removed[0].reason == "failed: AssertionError: 1 != 2"
    assert pruned.removed[1].reason.startswith("flaky: ")
    assert pruned.drop_reason == ""
    message = pruned.commit_message()
    assert message.startswith("Prune: removed 3 failing tests\n\n- test_x.TestF.test_bad: failed: ")
    assert "- test_x.TestG.test_only: error: NameError: g" in message


def test_nothing_failed_leaves_the_file_untouched() -> None:
    pruned = prune(FILE, result(TestF__test_ok=TestOutcome("passed")), "test_x.py")
    assert pruned.text == FILE and not pruned.changed


def test_failing_set_up_class_removes_the_class() -> None:
    pruned = prune(FILE, VerifyResult(source="utils/x.py", tests={
        "setUpClass (test_x.TestG)": TestOutcome("error", "RuntimeError: db")}), "test_x.py")
    assert "class TestG" not in pruned.text and "class TestF" in pruned.text
    assert [r.test for r in pruned.removed] == ["setUpClass (test_x.TestG)"]


def test_file_without_import_of_the_module_is_droppable() -> None:
    text = "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_a(self):\n        pass\n"
    pruned = prune(text, VerifyResult(source="utils/x.py", tests={"test_x.T.test_a": TestOutcome("passed")}),
                   "test_x.py")
    assert pruned.drop_reason == "it does not import utils.x"
    assert pruned.commit_message().startswith("Prune: removed test_x.py (it does not import utils.x)")


def test_all_tests_failing_or_unimportable_file_is_droppable() -> None:
    text = ("from utils.x import f\nimport unittest\n\n\nclass T(unittest.TestCase):\n"
            "    def test_a(self):\n        f()\n")
    failing = {"t.T.test_a": TestOutcome("error", "E")}
    pruned = prune(text, VerifyResult(source="utils/x.py", tests=failing), "t.py")
    assert pruned.drop_reason == "no passing tests left" and "class T" not in pruned.text
    broken = prune(text, VerifyResult(source="utils/x.py", load_error="ImportError: no f"), "t.py")
    assert broken.drop_reason == "it cannot be imported: ImportError: no f"


def test_inherited_test_is_removed_where_it_is_defined() -> None:
    text = ("import unittest\nimport utils.x\n\n\nclass Base(unittest.TestCase):\n    def test_a(self):\n"
            "        pass\n\n    def test_b(self):\n        pass\n\n\nclass Child(Base):\n    pass\n")
    pruned = prune(text, VerifyResult(source="utils/x.py", tests={
        "t.Child.test_a": TestOutcome("failed", "boom")}), "t.py")
    assert "def test_a" not in pruned.text and "def test_b" in pruned.text
    assert "class Child(Base)" in pruned.text


SIGN = "def sign(n):\n    if n < 0:\n        return -1\n    return 1\n"
SIGN_TESTS = '''import unittest

from utils import sign


class TestSign(unittest.TestCase):
    def test_sign(self):
        n = 5
        self.assertEqual(sign.sign(n), 1)

    def test_sign_2(self):
        n = 7
        self.assertEqual(sign.sign(n), 1)

    def test_sign_3(self):
        n = -2
        self.assertEqual(sign.sign(n), -1)

    def test_idle(self):
        self.assertEqual(1, 1)
'''


@needs_bwrap
def test_passing_tests_that_add_no_coverage_are_pruned_and_the_first_written_stays(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit = commit_files(path, {"utils/__init__.py": "", "utils/sign.py": SIGN, "test_sign.py": SIGN_TESTS})
    repo, spec, sandbox = GitRepo(path), VerifySpec(coverage=True, runs=1), Sandbox(mode="bwrap")
    result = verify_candidate(repo, commit, spec, "utils/sign.py", "test_sign.py", sandbox=sandbox)
    assert result.ok and result.passed == 4
    # test_sign_2 runs the lines test_sign runs; test_sign_3 runs the other branch.
    assert redundant_tests(result) == ["test_sign.TestSign.test_sign_2"]
    assert prune(SIGN_TESTS, result, "test_sign.py").removed == ()  # only on request
    pruned = prune_candidate(repo, commit, spec, "utils/sign.py", "test_sign.py", result,
                             sandbox=sandbox, redundant=True)
    assert pruned.removed == (Removed("test_sign.TestSign.test_sign_2", "adds no coverage"),)
    assert "def test_sign_2" not in pruned.text and "def test_sign_3" in pruned.text
    assert "def test_idle" in pruned.text  # ran no module code: the idle rule's, not this one's
    assert pruned.commit_message().startswith("Prune: removed 1 test\n")
    assert pruned.rerun is not None and pruned.rerun.ok and pruned.rerun.passed == 3
    assert pruned.rerun.tested_coverage() == result.tested_coverage()
