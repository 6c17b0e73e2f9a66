"""verify_candidate and prune_candidate on real repositories, in the real sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify import VerifyError, VerifyResult, prune_candidate, verify_candidate
from symergion.verify.checkout import export_commit
from symergion.verify.sandbox import Sandbox
from tests.helpers.git import git, repo_state
from tests.helpers.verify import commit_files, needs_bwrap

SUITE = '''import unittest

from utils.calc import add


class TestAdd(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(1, 2), 3)

    def test_wrong(self):
        self.assertEqual(add(1, 2), 4)

    def test_name(self):
        foo()


class TestOther(unittest.TestCase):
    def test_true(self):
        self.assertTrue(True)
'''

FLAKY = '''import sys
import unittest

import utils.calc


class TestFlaky(unittest.TestCase):
    def test_first_run_only(self):
        # Each run starts from the commit's files; only the first run measures coverage.
        self.assertNotIn("coverage", sys.modules)

    def test_sub(self):
        self.assertEqual(utils.calc.sub(3, 1), 2)
'''

HANG = '''import time
import unittest

from utils.calc import add


class TestHang(unittest.TestCase):
    def test_a_quick(self):
        self.assertEqual(add(2, 2), 4)

    def test_b_hangs(self):
        time.sleep(600)
'''


@needs_bwrap
def test_counts_coverage_and_excerpt(calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"test_calc.py": SUITE})
    before = repo_state(calc_repo)
    result = verify_candidate(GitRepo(calc_repo), commit, VerifySpec(coverage=True), "utils/calc.py",
                              "test_calc.py")
    assert (result.passed, result.failed, result.errors) == (2, 1, 1)
    assert result.coverage == pytest.approx(75.0)  # add runs, sub is only defined
    assert result.exercising == 1  # test_true passes without calling the module under test
    assert result.imports_source and result.sandboxed and not result.ok
    assert result.tests["test_calc.TestAdd.test_wrong"].outcome == "failed"
    assert "AssertionError: 3 != 4 (test_calc.py:11)" in result.excerpt()
    assert "NameError: name 'foo' is not defined (test_calc.py:14)" in result.excerpt()
    assert result.trailer().startswith("2 passed, 1 failed, 1 errors; coverage 75% of utils/calc.py; "
                                       "1 passing exercise utils/calc.py; imports utils.calc; ")
    assert repo_state(calc_repo) == before  # the user's work tree, index and HEAD are untouched


@needs_bwrap
def test_prune_then_rerun_confirms(calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"test_calc.py": SUITE})
    repo, spec = GitRepo(calc_repo), VerifySpec(coverage=True)
    result = verify_candidate(repo, commit, spec, "utils/calc.py", "test_calc.py")
    pruned = prune_candidate(repo, commit, spec, "utils/calc.py", "test_calc.py", result)
    assert [r.test for r in pruned.removed] == ["test_calc.TestAdd.test_name", "test_calc.TestAdd.test_wrong"]
    assert "def test_wrong" not in pruned.text and "def test_add" in pruned.text
    assert pruned.confirmed and pruned.rerun is not None
    assert (pruned.rerun.passed, pruned.rerun.failed, pruned.rerun.errors) == (2, 0, 0)
    message = pruned.commit_message()
    assert message.startswith("Prune: removed 2 failing tests\n\n")
    parsed = VerifyResult.from_message(message)
    assert parsed is not None and parsed.passed == 2 and parsed.ok


@needs_bwrap
def test_runs_mark_flaky_tests(calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"test_flaky.py": FLAKY})
    repo = GitRepo(calc_repo)
    result = verify_candidate(repo, commit, VerifySpec(runs=2, coverage=True), "utils/calc.py",
                              "test_flaky.py")
    assert result.flaky == ("test_flaky.TestFlaky.test_first_run_only",)
    assert result.passed == 1 and not result.ok
    assert "1 flaky" in result.trailer()
    single = verify_candidate(repo, commit, VerifySpec(runs=1), "utils/calc.py", "test_flaky.py")
    assert single.flaky == () and single.passed == 2


@needs_bwrap
def test_a_hanging_test_is_an_error_and_earlier_outcomes_are_kept(calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"test_hang.py": HANG})
    result = verify_candidate(GitRepo(calc_repo), commit, VerifySpec(timeout=3), "utils/calc.py",
                              "test_hang.py")
    assert result.timed_out and "timed out" in result.trailer()
    assert result.tests["test_hang.TestHang.test_a_quick"].outcome == "passed"
    hung = result.tests["test_hang.TestHang.test_b_hangs"]
    assert hung.outcome == "error" and hung.detail.startswith("timed out")


@needs_bwrap
def test_a_test_file_that_does_not_import_is_a_load_error(calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"test_bad.py": "import unittest\nfrom utils.calc import nothing\n"})
    result = verify_candidate(GitRepo(calc_repo), commit, VerifySpec(), "utils/calc.py", "test_bad.py")
    assert "ImportError: cannot import name 'nothing'" in result.load_error
    assert not result.ok and "LOAD ImportError" in result.excerpt()


@needs_bwrap
def test_a_custom_command_counts_by_exit_code_and_summary(calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"test_calc.py": SUITE})
    spec = VerifySpec(command="{python} -m unittest -q {destination_module}")
    result = verify_candidate(GitRepo(calc_repo), commit, spec, "utils/calc.py", "test_calc.py")
    assert (result.passed, result.failed, result.errors, result.exit_code) == (2, 1, 1, 1)
    assert result.tests == {} and "exit 1" in result.trailer()


@needs_bwrap
def test_content_overrides_the_commits_test_file(calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"test_calc.py": SUITE})
    text = ("import unittest\nimport utils.calc\n\n\nclass T(unittest.TestCase):\n"
            "    def test_a(self):\n        pass\n")
    result = verify_candidate(GitRepo(calc_repo), commit, VerifySpec(), "utils/calc.py", "test_calc.py",
                              content=text)
    assert list(result.tests) == ["test_calc.T.test_a"] and result.ok


def test_unsandboxed_mode_is_loud(calc_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMERGION_SANDBOX", "none")
    commit = commit_files(calc_repo, {"test_calc.py": SUITE})
    result = verify_candidate(GitRepo(calc_repo), commit, VerifySpec(), "utils/calc.py", "test_calc.py")
    assert result.passed == 2 and not result.sandboxed
    assert "unsandboxed" in result.trailer() and "WITHOUT a sandbox" in result.warnings[0]


def test_checkout_is_the_commits_tree(calc_repo: Path, tmp_path: Path) -> None:
    (calc_repo / "bin").mkdir()
    (calc_repo / "bin" / "run").write_text("#!/bin/sh\n")
    (calc_repo / "bin" / "run").chmod(0o755)
    os.symlink("utils/calc.py", calc_repo / "link.py")
    commit = commit_files(calc_repo, {"a/b/c/deep.txt": "deep\n", "bin/run": "#!/bin/sh\n"})
    git(calc_repo, "add", "link.py")
    git(calc_repo, "commit", "-q", "-m", "link")
    commit = git(calc_repo, "rev-parse", "HEAD").strip()
    (calc_repo / "uncommitted.txt").write_text("not in the commit\n")
    target = tmp_path / "out"
    export_commit(GitRepo(calc_repo), commit, target)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if not p.is_dir())
    assert files == ["a/b/c/deep.txt", "bin/run", "link.py", "utils/__init__.py", "utils/calc.py"]
    assert os.access(target / "bin" / "run", os.X_OK) and os.readlink(target / "link.py") == "utils/calc.py"
    assert (target / "a/b/c/deep.txt").read_text() == "deep\n"


def test_sandbox_none_needs_no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not Sandbox(mode="none").sandboxed


def test_paths_outside_the_repository_are_refused(calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"test_calc.py": SUITE})
    with pytest.raises(VerifyError, match="not a path inside the repository"):
        verify_candidate(GitRepo(calc_repo), commit, VerifySpec(), "utils/calc.py", "../escape.py",
                         content="x = 1\n", sandbox=Sandbox(mode="none"))
    with pytest.raises(VerifyError, match=r"has no file missing\.py"):
        verify_candidate(GitRepo(calc_repo), commit, VerifySpec(), "utils/calc.py", "missing.py",
                         sandbox=Sandbox(mode="none"))


# A module in the manner of the standard library's bisect: Python definitions, then the compiled
# ones imported over them.
ACCELERATED = '''def bisect_right(a, x):
    lo, hi = 0, len(a)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def halve(n):
    return n // 2


try:
    from _bisect import *
except ImportError:
    pass
'''

ACCELERATED_SUITE = '''import unittest

from utils import fast


class TestFast(unittest.TestCase):
    def test_bisect_right(self):
        self.assertEqual(fast.bisect_right([1, 2, 3], 2), 2)

    def test_bisect_right_2(self):
        self.assertEqual(fast.bisect_right([], 5), 0)

    def test_len(self):
        self.assertEqual(len([1, 2]), 2)

    def test_halve(self):
        self.assertEqual(fast.halve(4), 2)
'''


@needs_bwrap
def test_a_call_to_a_compiled_function_that_replaced_a_definition_exercises_the_source(
        calc_repo: Path) -> None:
    commit = commit_files(calc_repo, {"utils/fast.py": ACCELERATED, "test_fast.py": ACCELERATED_SUITE})
    repo, spec = GitRepo(calc_repo), VerifySpec(coverage=True)
    result = verify_candidate(repo, commit, spec, "utils/fast.py", "test_fast.py")
    assert result.ok and result.passed == 4
    # bisect_right's body never runs (the compiled one replaced it), yet both tests that call it
    # exercise the module; test_len calls nothing of it.
    assert result.exercising == 3
    assert tuple(result.lines["test_fast.TestFast.test_bisect_right"]) == (1,)
    assert tuple(result.lines["test_fast.TestFast.test_bisect_right_2"]) == (1,)
    assert not result.lines.get("test_fast.TestFast.test_len")
    pruned = prune_candidate(repo, commit, spec, "utils/fast.py", "test_fast.py", result,
                             idle=True, redundant=True)
    assert not pruned.drop_reason
    assert sorted(r.test for r in pruned.removed) == [
        "test_fast.TestFast.test_bisect_right_2",  # adds nothing to test_bisect_right
        "test_fast.TestFast.test_len",  # runs no line of the module, compiled or not
    ]
    assert "def test_bisect_right(self)" in pruned.text and "def test_halve" in pruned.text
