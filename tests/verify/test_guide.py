"""Guided generation: one short test per public name, kept only as far as it parses."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from symergion.config import VerifySpec
from symergion.engine.fake import FakeEngine
from symergion.gitrepo import GitRepo
from symergion.verify import examples, guide
from symergion.verify.candidate import verify_candidate
from symergion.verify.repair import repair_candidate
from symergion.verify.sandbox import Sandbox
from tests.verify.conftest import CALC, commit_files, needs_bwrap

SOURCE = '''"""Shapes."""
import os

__all__ = ["area", "Square", "scale"]


def area(w, h):
    return w * h


def _helper():
    pass


def unexported():
    pass


class Square:
    def __init__(self, side):
        self.side = side


def scale(x, factor=2):
    return x * factor
'''

STARTER = examples.test_case_starter("lib/shapes.py", "test_shapes.py")


def test_public_names_follow_all_and_functions_come_before_classes() -> None:
    assert guide.public_names(SOURCE) == [("area", "function"), ("Square", "class"), ("scale", "function")]
    assert guide.public_names("def a():\n    pass\n\n\ndef _b():\n    pass\n\n\nclass C:\n    pass\n") == [
        ("a", "function"), ("C", "class")]
    assert guide.public_names("def broken(:\n") == []
    openers = [t.opener for t in guide.targets(SOURCE, "shapes")]
    assert openers == [
        "    def test_area(self):\n        self.assertEqual(shapes.area(",
        "    def test_scale(self):\n        self.assertEqual(shapes.scale(",
        "    def test_square(self):\n        square = shapes.Square(",
    ]
    # A class named like the module gets a variable that does not shadow the module.
    assert guide.targets("class shapes:\n    pass\n", "shapes")[0].opener.endswith(
        "shapes_object = shapes.shapes(")
    assert len(guide.targets(SOURCE, "shapes", limit=1)) == 1


def test_the_worked_example_opens_its_tests_like_the_guide() -> None:
    (_, _), (_, tests) = examples.few_shot_files("lib/x.py", "test_x.py")
    for target in guide.targets(examples.EXAMPLE_SOURCE, "temperature"):
        if target.kind == "method":
            continue
        first, second = target.opener.split("\n")
        assert first in tests.split("\n") and second in tests


def test_a_literal_all_that_names_no_function_or_class_falls_back_to_public_names() -> None:
    source = ('__all__ = ["TABLE", "helper"]\nfrom os.path import join as helper\nTABLE = {}\n\n\n'
              'def define(name, op):\n    TABLE[name] = op\n\n\ndef _private():\n    pass\n\n\n'
              'class Table:\n    pass\n')
    assert guide.public_names(source) == [("define", "function"), ("Table", "class")]
    # An __all__ that names one function defined here still decides alone.
    assert guide.public_names(source.replace('"helper"', '"define"')) == [("define", "function")]


def replies(prompt: str) -> str:
    """Complete each opener the way a small model does: well, too long, or broken."""
    if prompt.endswith("shapes.area("):
        return ("2, 3), 6)\n        self.assertEqual(shapes.area(2, 3), 6)\n"
                "        self.assertEqual(shapes.perimeter(2), 8)\n\n    def test_more(self):\n")
    if prompt.endswith("shapes.scale("):
        return ("2), 4)\n        self.assertEqual(shapes.scale(3), 6)\n"
                "        self.assertEqual(shapes.scale(4), 8)\n"
                "        self.assertEqual(shapes.scale(5), 10)\n")
    return "[[[\n"  # never closes: the test is left out


def run(engine: FakeEngine) -> guide.Generate:
    def generate(prompt: str, max_tokens: int, stable_prefix: int) -> Iterable[str]:
        assert prompt[:stable_prefix] == "# lib/shapes.py\nSOURCE\n\n"  # the prompt before the starter
        return engine.generate(prompt, max_tokens=max_tokens, stable_prefix=stable_prefix)
    return generate


def test_each_test_ends_where_the_model_leaves_it_repeats_or_invents_a_name() -> None:
    engine = FakeEngine("fake", replies)
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    done = guide.guided_file(run(engine), prompt, STARTER, SOURCE, "shapes", "test_shapes.py", budget=400)
    assert done.tested == ["area", "scale"] and done.skipped == ["Square"]
    assert done.text == STARTER + (
        "    def test_area(self):\n        self.assertEqual(shapes.area(2, 3), 6)\n\n"
        "    def test_scale(self):\n        self.assertEqual(shapes.scale(2), 4)\n"
        "        self.assertEqual(shapes.scale(3), 6)\n        self.assertEqual(shapes.scale(4), 8)\n"
        "\n\nif __name__ == \"__main__\":\n    unittest.main()\n")
    ast.parse(done.text)
    # Each segment continues the previous prompt, so a KV-cache prefix carries over.
    assert engine.calls[1].startswith(engine.calls[0])
    assert done.tokens > 0


def test_the_budget_bounds_every_segment_and_the_whole_file() -> None:
    engine = FakeEngine("fake", lambda p: "1" * 400)
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    done = guide.guided_file(run(engine), prompt, STARTER, SOURCE, "shapes", "test_shapes.py", budget=30,
                             segment_tokens=20)
    assert done.tokens == 30 and len(engine.calls) == 2
    assert done.tested == [] and done.text == STARTER + "    pass\n" + guide.MAIN_GUARD
    ast.parse(done.text)


def calc_replies(prompt: str) -> str:
    if prompt.endswith("calc.add("):
        return "1, 2), 4)\n        self.assertEqual(calc.add(2, 2))\n"
    return "5, 2), 7)\n        self.assertEqual(calc.sub(1, None), 0)\n"


@needs_bwrap
def test_a_guided_file_repaired_in_the_sandbox_passes_and_runs_the_module(calc_repo: Path) -> None:
    engine = FakeEngine("fake", calc_replies)
    starter = examples.test_case_starter("utils/calc.py", "test_calc.py")
    prompt = "# utils/calc.py\n" + CALC + "\n" + starter
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s), prompt,
                             starter, CALC, "calc", "test_calc.py", budget=200)
    assert done.tested == ["add", "sub"]
    commit = commit_files(calc_repo, {"test_calc.py": done.text})
    repo, spec, sandbox = GitRepo(calc_repo), VerifySpec(coverage=True, runs=1), Sandbox(mode="bwrap")
    first = verify_candidate(repo, commit, spec, "utils/calc.py", "test_calc.py", sandbox=sandbox)
    assert first.failed == 2 and first.passed == 0
    repaired = repair_candidate(repo, commit, spec, "utils/calc.py", "test_calc.py", first, sandbox=sandbox)
    assert repaired.rerun is not None and repaired.rerun.ok
    assert repaired.rerun.exercising == 2 and repaired.rerun.tested_coverage() == 100.0
    # Pinned (add 4 -> 3, then the completed one-argument assertion), and sub cut before
    # the statement that raised.
    assert "self.assertEqual(calc.add(1, 2), 3)" in repaired.text
    assert "self.assertEqual(calc.add(2, 2), 4)" in repaired.text
    assert repaired.completed and repaired.truncated == ("test_calc.TestCalc.test_sub",)
    assert "calc.sub(1, None)" not in repaired.text
