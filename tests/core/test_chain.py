"""The pieces of the checked pass that need no sandbox: chains, repair feedback, code starters, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, VerifySpec
from symergion.core.chain import base_digest, next_repair, prompt_chain, repair_feedback
from symergion.core.plan import code_starter
from symergion.core.spec import TaskSpec
from symergion.core.state import Commit
from symergion.core.verification import dump_result, load_result
from symergion.errors import ConfigError
from symergion.gitrepo import GitRepo
from symergion.trailers import Trailers
from symergion.verify.result import Observation, TestOutcome, VerifyResult
from tests.helpers.git import git
from tests.helpers.verify import commit_files

FAILING = VerifyResult(source="utils/calc.py", passed=1, failed=1, imports_source=True,
                       tests={"test_calc.T.test_sub": TestOutcome("failed", "AssertionError: 3 != 4")})
PASSING = VerifyResult(source="utils/calc.py", passed=2, imports_source=True, exit_code=0)


def commit(oid: str, result: VerifyResult | None, **trailers: str) -> Commit:
    message = "subject\n\n" + (result.message_lines() if result else "")
    return Commit(oid, (), message, Trailers.from_items((f"Symergion-{k}", v) for k, v in trailers.items()))


def test_a_prompts_chain_holds_its_candidate_prunes_and_repairs_and_stops_at_another_prompt():
    own = [commit("r", FAILING, Prompt="p1", Repair="p 1"), commit("q", PASSING, Prompt="p", Prune="1"),
           commit("c", FAILING, Prompt="p"), commit("old", PASSING, Prompt="x")]
    assert [base_digest(c) for c in own] == ["p", "p", "p", "x"]
    assert [c.oid for c in prompt_chain(own, "p")] == ["r", "q", "c"]
    assert prompt_chain(own, "x") == []  # the branch's newest commits answer another prompt


@pytest.mark.parametrize(("chain", "rounds", "due"), [
    ([commit("c", FAILING, Prompt="p")], 1, 1),
    # The prune left a passing file that runs the module: no model round rewrites it.
    ([commit("q", PASSING, Prompt="p", Prune="1"), commit("c", FAILING, Prompt="p")], 1, None),
    # The prune left nothing useful (every test failed, the file dropped): the round is due.
    ([commit("q", VerifyResult(source="utils/calc.py"), Prompt="p", Prune="dropped"),
      commit("c", FAILING, Prompt="p")], 1, 1),
    ([commit("q", FAILING, Prompt="p", Prune="1"), commit("c", FAILING, Prompt="p")], 1, 1),
    ([commit("c", FAILING, Prompt="p")], 0, None),
    ([commit("c", PASSING, Prompt="p")], 2, None),
    ([commit("r", FAILING, Prompt="p1", Repair="p 1")], 1, None),
    ([commit("r", FAILING, Prompt="p1", Repair="p 1")], 2, 2),
    ([commit("c", None, Prompt="p")], 1, None),  # made before the template verified
    ([commit("c", VerifyResult(source="utils/calc.py", exit_code=0), Prompt="p")], 1, 1),  # no tests
])
def test_a_repair_is_due_while_neither_the_candidate_nor_its_prune_is_useful_and_rounds_are_left(
        chain, rounds, due):
    assert next_repair(chain, VerifySpec(repair_rounds=rounds)) == due


def test_repair_feedback_is_rebuilt_from_the_recorded_message_alone():
    recorded = VerifyResult.from_message(FAILING.message_lines())
    assert recorded is not None
    text = repair_feedback(recorded, "test_calc.py")
    assert text == repair_feedback(FAILING, "test_calc.py")
    assert text.splitlines() == [
        "The tests in test_calc.py were run: 1 passed, 1 failed, 0 errors. Fix the tests so that they pass:",
        "- test_calc.T.test_sub fails: AssertionError: 3 != 4",
    ]
    nothing = repair_feedback(VerifyResult(source="utils/calc.py", exit_code=0), "test_calc.py")
    assert "it has no tests" in nothing and "- import utils.calc and call its functions" in nothing


def test_a_stored_result_loads_back_whole():
    result = VerifyResult(source="utils/calc.py", passed=1, failed=1, coverage=50.0, exercising=1,
                          statements=4, lines={"t.T.a": (1, 2), "": (1,)}, warnings=("w",),
                          tests={"t.T.a": TestOutcome("passed"),
                                 "t.T.b": TestOutcome("failed", "x", observed=(
                                     Observation(3, "assertEqual", "1", None),))})
    again = load_result(json.loads(json.dumps(dump_result(result))))
    assert again == result and again.lines == result.lines
    assert again.tests["t.T.b"].observed == result.tests["t.T.b"].observed


def test_the_code_starter_names_the_module_under_test():
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["templates"]["TestCase"]["code_starter"] = "import unittest\nfrom {module} import *\n"
    template = parse_config(raw, base_dir=Path("/")).templates["TestCase"]
    spec = TaskSpec("TestCase_x", {"source": "utils/calc.py", "destination": "tests/test_calc.py"},
                    (), "c", "b")
    assert code_starter(template, spec) == "import unittest\nfrom utils.calc import *\n"
    no_source = TaskSpec("TestCase_x", {"destination": "tests/test_calc.py"}, (), "c", "b")
    assert code_starter(template, no_source) == template.code_starter
    # A starter without placeholders (the original's) is used as written.
    raw["templates"]["TestCase"]["code_starter"] = "import unittest\n"
    plain = parse_config(raw, base_dir=Path("/")).templates["TestCase"]
    assert code_starter(plain, spec) == "import unittest\n"


def test_samples_need_a_temperature():
    def checkpoint(**fields):
        raw = {"checkpoints": [{"name_or_path": "a.gguf", "trait": "coding", **fields}]}
        return parse_config(raw, base_dir=Path("/")).checkpoints[0]

    assert checkpoint().samples == 1
    assert checkpoint(samples=4, sampling={"temperature": 0.7}).samples == 4
    with pytest.raises(ConfigError, match="need a temperature above 0"):
        checkpoint(samples=4)
    with pytest.raises(ConfigError, match="samples"):
        checkpoint(samples=0)


def test_a_tree_without_a_file_drops_directories_left_empty(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    head = commit_files(repo, {"a/b/c.py": "x\n", "a/d.py": "y\n", "e.py": "z\n"})
    gitrepo = GitRepo(repo)
    listing = git(repo, "ls-tree", "-r", "--name-only", gitrepo.tree_without_file(head, "a/b/c.py"))
    assert listing.split() == ["a/d.py", "e.py"]
    listing = git(repo, "ls-tree", "-r", "--name-only", gitrepo.tree_without_file(head, "e.py"))
    assert listing.split() == ["a/b/c.py", "a/d.py"]
