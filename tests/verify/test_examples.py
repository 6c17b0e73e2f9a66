"""The few-shot example and the TestCase code starter: well-formed and laid out like the task."""

from __future__ import annotations

import ast
from pathlib import Path

from symergion.config.schema import VerifySpec
from symergion.gitrepo import GitRepo
from symergion.verify import examples
from symergion.verify.candidate import verify_candidate
from symergion.verify.names import imports_module
from symergion.verify.sandbox import Sandbox
from tests.helpers.git import git
from tests.helpers.verify import commit_files, needs_bwrap


def test_starter_imports_the_module_and_opens_a_test_class() -> None:
    starter = examples.test_case_starter("utils/bit_ops.py", "tests/test_bit_ops.py")
    assert starter == ("import unittest\n\nfrom utils import bit_ops\n\n\n"
                       "class TestBitOps(unittest.TestCase):\n")
    assert imports_module(starter + "    pass\n", "utils.bit_ops")
    assert examples.test_case_starter("calc.py", "test_calc.py").splitlines()[2] == "import calc"
    assert examples.test_class_name("a/__init__.py") == "TestA"


def test_method_starter_calls_the_first_public_function() -> None:
    source_text = "import os\n\n\ndef _private():\n    pass\n\n\ndef scale(x):\n    return x\n"
    starter = examples.test_method_starter("lib/geo.py", "test_geo.py", source_text)
    assert starter.endswith("class TestGeo(unittest.TestCase):\n    def test_scale(self):\n"
                            "        self.assertEqual(geo.scale(")
    ast.parse(starter + "1), 1)\n")
    no_functions = examples.test_method_starter("lib/geo.py", "test_geo.py", "class A:\n    pass\n")
    assert no_functions == examples.test_case_starter("lib/geo.py", "test_geo.py")


def test_examples_follow_the_task_layout_and_avoid_its_names() -> None:
    (src_path, src), (test_path, test) = examples.few_shot_files("lib/x.py", "tests/test_x.py")
    assert (src_path, test_path) == ("lib/temperature.py", "tests/test_temperature.py")
    ast.parse(src)
    assert imports_module(test, "lib.temperature")
    other = examples.few_shot_files("lib/temperature.py", "test_temperature.py")
    assert other[0][0] == "lib/thermometer_units.py"


@needs_bwrap
def test_the_example_test_file_passes_and_covers_its_module(tmp_path: Path) -> None:
    (src_path, src), (test_path, test) = examples.few_shot_files("lib/x.py", "test_x.py")
    repo_path = tmp_path / "repo"
    repo_path.mkdir()
    git(repo_path, "init", "-q", "-b", "main")
    commit = commit_files(repo_path, {src_path: src, test_path: test})
    result = verify_candidate(GitRepo(repo_path), commit, VerifySpec(coverage=True), src_path, test_path,
                              sandbox=Sandbox(mode="bwrap"))
    assert result.ok and result.passed == 7 and result.imports_source
    # Every statement but clamp's two other branches: one call per test, as the guide writes them.
    assert result.tested_coverage() == 87.5
