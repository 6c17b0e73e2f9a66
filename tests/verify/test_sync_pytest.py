"""The sync pass on the built-in PyTest template: real git, real pytest in the real sandbox, fake models."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG
from symergion.gitrepo import GitRepo
from symergion.learn.harvest import harvest
from symergion.verify.result import VerifyResult
from tests.helpers.git import git
from tests.helpers.verify import needs_bwrap

pytestmark = needs_bwrap

TASK = "PyTest_calc"
BRANCH = f"alpha_{TASK}"
NOTE = f"task_branch: {TASK}, source: utils/calc.py, destination: tests/test_calc.py"

# What the model writes after the starter (``import pytest``, the module's import): one test
# that holds, one with a wrong expectation, one parametrized case that fails, one that checks
# nothing.
MIXED = '''def test_add():
    assert calc.add(1, 2) == 3


def test_sub():
    assert calc.sub(5, 2) == 4


@pytest.mark.parametrize("a, b", [(1, 1), (2, 3)])
def test_add_cases(a, b):
    assert calc.add(a, b) == 2


def test_runs():
    calc.add(1, 1)
'''
# Every test fails, and not on an equality a pin could set: the prune leaves nothing, so the
# model repair round is due.
FAILING = '''def test_add():
    assert calc.add(1, 2) > 3
'''
REPAIRED = '''def test_add():
    assert calc.add(1, 2) == 3


def test_sub():
    assert calc.sub(5, 2) == 3
'''


def continued(prompt: str, text: str) -> str:
    """Return ``text`` as a model writes it after the prompt: the built-in starter has already
    opened the first test (``def test_``), so the model goes on with its name."""
    opener = "def test_"
    return text[len(opener):] if prompt.endswith(opener) and text.startswith(opener) else text


def config() -> Any:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["checkpoints"] = [{"name_or_path": "/models/alpha.gguf", "trait": "coding"}]
    return parse_config(raw, base_dir=Path("/models"))


def start(repo: Path) -> None:
    git(repo, "branch", TASK)
    git(repo, "notes", "add", "-m", NOTE, TASK)


def messages(repo: Path) -> list[str]:
    out = git(repo, "log", "--reverse", "--format=%B%x1e", f"{TASK}..{BRANCH}")
    return [m.strip() for m in out.split("\x1e") if m.strip()]


def test_a_pytest_candidate_is_run_by_pytest_and_pruned_by_function(calc_repo, make_reconciler, fleet):
    fleet.reply = lambda _model, prompt: continued(prompt, MIXED)
    start(calc_repo)
    report = make_reconciler(calc_repo, config()).sync()
    assert [r.status for r in report.results] == ["created"], report.as_dict()
    candidate, pinned, pruned = messages(calc_repo)
    result = VerifyResult.from_message(candidate)
    assert result is not None
    # The message records the counts and each problem, under pytest's tests' dotted ids.
    assert (result.passed, result.failed, result.errors) == (3, 2, 0)
    assert {t: o.outcome for t, o in result.tests.items()} == {
        "tests.test_calc.test_sub": "failed", "tests.test_calc.test_add_cases[2-3]": "failed"}
    assert result.unchecked == 1  # test_runs calls the code and checks nothing
    # The failing plain assert is pinned to what the code returned (pytest observed 3 != 4); a
    # parametrized case is not, as its assert is every case's.
    assert pinned.startswith("Repair: pinned 1 assertion")
    assert re.search(r"- tests.test_calc.test_sub \(line \d+\): expected 4 -> 3", pinned)
    # The prune takes out whole functions: the parametrized one whose case failed, the one that
    # asserts nothing. What is left passes; no model repair round follows.
    assert pruned.splitlines()[0] == "Prune: removed 2 tests that failed or asserted nothing"
    kept = git(calc_repo, "show", f"{BRANCH}:tests/test_calc.py")
    starter = "import pytest\n\nfrom utils import calc\n\n\n"  # its "def test_" opens MIXED
    expected = MIXED.split("\n\n\n@pytest")[0].replace("calc.sub(5, 2) == 4", "calc.sub(5, 2) == 3")
    assert kept == starter + expected + "\n"
    final = VerifyResult.from_message(pruned)
    assert final is not None and (final.passed, final.failed, final.errors) == (2, 0, 0)
    assert len(fleet.engines["alpha"].calls) == 1
    assert [r.status for r in make_reconciler(calc_repo, config()).sync().results] == ["up-to-date"]


def test_a_pytest_task_is_verified_pruned_repaired_and_harvested(calc_repo, make_reconciler, fleet,
                                                                  tmp_path):
    fleet.reply = lambda _model, prompt: continued(prompt, REPAIRED if "were run:" in prompt else FAILING)
    start(calc_repo)
    report = make_reconciler(calc_repo, config()).sync()
    assert [r.status for r in report.results] == ["created"], report.as_dict()
    candidate, pruned, repair = messages(calc_repo)
    [prompt, repair_prompt] = fleet.engines["alpha"].calls
    # The prompt asks for pytest tests and ends with the pytest starter.
    assert prompt.endswith("import pytest\n\nfrom utils import calc\n\n\ndef test_")
    assert "Create pytest tests for the function add, the function sub" in prompt
    result = VerifyResult.from_message(candidate)
    assert result is not None and result.failed == 1 and "tests.test_calc.test_add" in result.tests
    assert "assert 3 > 3" in result.tests["tests.test_calc.test_add"].detail
    assert pruned.startswith("Prune: removed tests/test_calc.py (no passing tests left)")
    # The repair prompt names the failure and asks for pytest's kind of test.
    assert "tests.test_calc.test_add fails" in repair_prompt
    assert repair.startswith("Repair: FAIL tests.test_calc.test_add")
    final = VerifyResult.from_message(repair)
    assert final is not None and (final.passed, final.failed, final.errors) == (2, 0, 0)
    published = git(calc_repo, "show", f"{BRANCH}:tests/test_calc.py")
    assert published == "import pytest\n\nfrom utils import calc\n\n\n" + REPAIRED

    # The human merges it and ends the task; harvest rebuilds the repair round's exact prompt.
    git(calc_repo, "merge", "-q", "--no-ff", "-m", "Merge the repaired tests", BRANCH)
    git(calc_repo, "branch", "-D", TASK)
    assert [r.status for r in make_reconciler(calc_repo, config()).sync().results] == ["retired"]
    report = harvest(GitRepo(calc_repo), config(), tmp_path / "data")
    # Every prompt is rebuilt; only the prune that dropped the first file has no file to give.
    assert report.left_out == {"the file is missing or not UTF-8 text at the commit": 1}
    [row] = [json.loads(line) for line in (tmp_path / "data" / "sft.jsonl").read_text().splitlines()]
    assert row["prompt"] == repair_prompt
    assert row["completion"] == REPAIRED.removeprefix("def test_")  # the prompt ends with it



def test_a_test_asking_for_an_unknown_fixture_is_told_so_in_words_the_report_keeps(
        calc_repo, make_reconciler, fleet):
    # Small models write ``def test_add(number):``; pytest's own error is a table of every fixture
    # it knows, which the report would withhold word by word. The repair prompt says what to do.
    fleet.reply = lambda _model, prompt: continued(
        prompt, "def test_add(number):\n    assert calc.add(number, 1) == 2\n")
    start(calc_repo)
    make_reconciler(calc_repo, config()).sync()
    result = VerifyResult.from_message(messages(calc_repo)[0])
    assert result is not None
    detail = result.tests["tests.test_calc.test_add"].detail
    assert result.tests["tests.test_calc.test_add"].outcome == "error"
    assert detail.startswith("fixture 'number' not found: a test function's parameters are pytest "
                             "fixtures; give the value inside the test instead")
    repair_prompt = fleet.engines["alpha"].calls[-1]
    assert "tests.test_calc.test_add errs: fixture 'number' not found" in repair_prompt


def test_a_bare_name_of_the_module_is_qualified_without_the_model(calc_repo, make_reconciler, fleet):
    # The model calls ``add`` as if it were imported; the repairs without a model qualify it
    # (``calc.add``), re-run the file, and the test that failed with a NameError now passes.
    fleet.reply = lambda _model, prompt: continued(prompt, "def test_add():\n    assert add(1, 2) == 3\n")
    start(calc_repo)
    report = make_reconciler(calc_repo, config()).sync()
    assert [r.status for r in report.results] == ["created"], report.as_dict()
    candidate, fixed = messages(calc_repo)
    assert "NameError: name 'add' is not defined" in candidate
    assert fixed.startswith("Repair: qualified 1 name")
    result = VerifyResult.from_message(fixed)
    assert result is not None and (result.passed, result.failed, result.errors) == (1, 0, 0)
    published = git(calc_repo, "show", f"{BRANCH}:tests/test_calc.py")
    assert published.endswith("def test_add():\n    assert calc.add(1, 2) == 3\n")
    assert len(fleet.engines["alpha"].calls) == 1  # no model repair round
