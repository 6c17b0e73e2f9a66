"""The sync pass with a verifying template: real git, the real bubblewrap sandbox, fake models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from symergion.cache import ResponseStore
from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG
from symergion.core.execute import Event, Reconciler
from symergion.core.ops import current_views
from symergion.engine.fake import FakeEngine
from symergion.gitrepo import GitRepo
from symergion.verify.result import VerifyResult
from tests.helpers.fleet import FakeFleet
from tests.helpers.git import git, repo_state
from tests.helpers.verify import commit_files, needs_bwrap

pytestmark = needs_bwrap

TASK = "TestCase_calc"
NOTE = f"task_branch: {TASK}, source: utils/calc.py, destination: test_calc.py"

# A first attempt that is of no use: one wrong expectation, and two tests that pass without
# calling the code. The prune leaves nothing, so a model repair round is due.
FIRST = '''from utils import calc


class TestCalc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(1 + 2, 3)

    def test_sub(self):
        self.assertEqual(calc.sub(5, 2), 4)

    def test_truth(self):
        self.assertTrue(True)
'''
# A first attempt of use: the prune keeps its good test, and no model repair round follows.
HELPFUL = FIRST.replace("self.assertEqual(1 + 2, 3)", "self.assertEqual(calc.add(1, 2), 3)")
# What the model writes once told what failed.
REPAIRED = '''from utils import calc


class TestCalc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(1, 2), 3)

    def test_sub(self):
        self.assertEqual(calc.sub(5, 2), 3)
'''
# Only imports: nothing to keep.
EMPTY = '''

class TestNothing(unittest.TestCase):
    def test_truth(self):
        self.assertTrue(True)
'''


def continued(prompt: str, text: str) -> str:
    """Return ``text`` as a model writes it after the prompt: the built-in code starter has
    already imported the module and opened the test class, so the model goes on from there."""
    opener = "(unittest.TestCase):\n"
    if prompt.endswith(opener) and opener in text:
        return text.split(opener, 1)[1]
    return text


def reply(_model: str, prompt: str) -> str:
    return continued(prompt, REPAIRED if "were run:" in prompt else FIRST)


def config(code_starter: str | None = None, **verify: Any) -> Any:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    # These tests check free completions (tests/verify/test_sync_guided.py the guided ones).
    raw["templates"]["TestCase"]["guided"] = False
    if code_starter is not None:
        raw["templates"]["TestCase"]["code_starter"] = code_starter
    raw["checkpoints"] = [{"name_or_path": "/models/alpha.gguf", "trait": "coding"}]
    raw["templates"]["TestCase"]["verify"].update(verify)
    return parse_config(raw, base_dir=Path("/models"))


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet(reply)


def start(repo: Path) -> None:
    git(repo, "branch", TASK)
    git(repo, "notes", "add", "-m", NOTE, TASK)


def subjects(repo: Path, branch: str = f"alpha_{TASK}") -> list[str]:
    return git(repo, "log", "--reverse", "--format=%s", f"{TASK}..{branch}").splitlines()


def messages(repo: Path, branch: str = f"alpha_{TASK}") -> list[str]:
    out = git(repo, "log", "--reverse", "--format=%B%x1e", f"{TASK}..{branch}")
    return [m.strip() for m in out.split("\x1e") if m.strip()]


def test_a_sync_verifies_prunes_and_repairs_then_a_second_sync_changes_nothing(
        calc_repo, make_reconciler, fleet):
    start(calc_repo)
    before = repo_state(calc_repo)
    events: list[Event] = []
    report = make_reconciler(calc_repo, config(), events).sync()
    assert not report.failed, report.as_dict()
    [result] = report.results
    assert result.status == "created"

    assert subjects(calc_repo) == [
        "Create unittest TestCase for the function add, the function sub",
        "Prune: removed test_calc.py (no passing tests left)",
        "Repair: FAIL test_calc.TestCalc.test_sub: AssertionError: 3 != 4 (test_calc.py:11)",
    ]
    candidate, pruned, repaired = messages(calc_repo)
    first = VerifyResult.from_message(candidate)
    assert first is not None
    assert (first.passed, first.failed, first.errors, first.exercising, first.imports_source) == (
        2, 1, 0, 0, True)
    assert "Verify failures:\n  FAIL test_calc.TestCalc.test_sub: AssertionError: 3 != 4" in candidate
    assert "Symergion-Verify: 2 passed, 1 failed, 0 errors; coverage" in candidate
    # The prune names each test and why; nothing was left, so the file went.
    assert "- test_calc.TestCalc.test_sub: failed: AssertionError: 3 != 4" in pruned
    assert "- test_calc.TestCalc.test_add: passed without running a line of utils/calc.py" in pruned
    assert "- test_calc.TestCalc.test_truth: passed without running a line of utils/calc.py" in pruned
    assert "Symergion-Verify: 0 passed, 0 failed, 0 errors" in pruned
    assert "test_calc.py" not in git(calc_repo, "ls-tree", "--name-only", f"alpha_{TASK}~1")
    # A prune that leaves nothing useful: the repair round was prompted with the recorded
    # failure, and its attempt passes.
    [repair_prompt] = [p for p in fleet.engines["alpha"].calls if "were run:" in p]
    assert "test_calc.TestCalc.test_sub fails: AssertionError: 3 != 4" in repair_prompt
    assert "Symergion-Verify: 2 passed, 0 failed, 0 errors" in repaired
    digest = next(line.split(": ")[1] for line in candidate.splitlines()
                  if line.startswith("Symergion-Prompt: "))
    assert f"Symergion-Repair: {digest} 1" in repaired.splitlines()
    assert git(calc_repo, "show", f"alpha_{TASK}:test_calc.py") == "import unittest\n\n" + REPAIRED
    assert result.verify is not None and result.verify.startswith("2 passed, 0 failed")
    assert any(e.kind == "check" and e.detail.startswith("verifying") for e in events)

    # The repository is the state: a second pass is a no-op, with no model and no sandbox run.
    calls = fleet.calls
    tip = git(calc_repo, "rev-parse", f"alpha_{TASK}")
    events.clear()
    again = make_reconciler(calc_repo, config(), events).sync()
    assert [r.status for r in again.results] == ["up-to-date"] and not again.changed()
    assert fleet.calls == calls and not [e for e in events if e.kind == "check"]
    assert git(calc_repo, "rev-parse", f"alpha_{TASK}") == tip
    assert repo_state(calc_repo) == before


def test_a_prune_that_leaves_a_useful_file_gets_no_model_repair_round(calc_repo, make_reconciler, fleet):
    fleet.reply = lambda _model, prompt: continued(prompt, HELPFUL)
    start(calc_repo)
    report = make_reconciler(calc_repo, config()).sync()
    assert [r.status for r in report.results] == ["created"], report.as_dict()
    assert subjects(calc_repo) == [
        "Create unittest TestCase for the function add, the function sub",
        "Prune: removed 2 failing tests",
    ]
    assert "Symergion-Verify: 1 passed, 0 failed, 0 errors" in messages(calc_repo)[-1]
    assert not [p for p in fleet.engines["alpha"].calls if "were run:" in p]
    # The plan agrees from the repository alone: nothing is due, though a round is allowed.
    assert current_views(GitRepo(calc_repo), config()).rows[0]["state"] == "up-to-date"
    assert [r.status for r in make_reconciler(calc_repo, config()).sync().results] == ["up-to-date"]


def test_feedback_comes_before_the_repair_and_a_revoke_brings_the_checked_stack_back(
        calc_repo, make_reconciler, fleet):
    start(calc_repo)
    cfg = config()
    make_reconciler(calc_repo, cfg).sync()
    tip = git(calc_repo, "rev-parse", f"alpha_{TASK}").strip()
    first_stack = messages(calc_repo)
    # Feedback on the pruned-and-repaired tip: symergion's own commits are the model's attempt.
    fleet.reply = lambda _m, p: continued(p, FIRST)  # the model does not learn: the repair fails again
    git(calc_repo, "notes", "add", "-m", "Use setUp method", tip)
    report = make_reconciler(calc_repo, cfg).sync()
    assert [r.status for r in report.results] == ["updated"], report.as_dict()
    assert subjects(calc_repo)[3:] == [
        "Use setUp method", "Prune: removed test_calc.py (no passing tests left)",
        "Repair: FAIL test_calc.TestCalc.test_sub: AssertionError: 3 != 4 (test_calc.py:11)",
        "Prune: removed test_calc.py (no passing tests left)"]
    [repair_prompt] = [p for p in fleet.engines["alpha"].calls[-1:]]
    assert repair_prompt.index("# Use setUp method") < repair_prompt.index("were run:")
    # One repair round per prompt: the failing repair is final, and the next pass agrees.
    again = make_reconciler(calc_repo, cfg).sync()
    assert [r.status for r in again.results] == ["up-to-date"]

    # Revoking the note publishes the earlier prompt's last file again, with its results.
    calls = fleet.calls
    git(calc_repo, "notes", "remove", tip)
    report = make_reconciler(calc_repo, cfg).sync()
    assert [r.status for r in report.results] == ["updated"] and fleet.calls == calls
    revert = messages(calc_repo)[-1]
    assert revert.startswith("Revert: Use setUp method")
    assert VerifyResult.from_message(revert) == VerifyResult.from_message(first_stack[-1])
    assert git(calc_repo, "show", f"alpha_{TASK}:test_calc.py") == "import unittest\n\n" + REPAIRED
    assert [r.status for r in make_reconciler(calc_repo, cfg).sync().results] == ["up-to-date"]


def test_a_cached_response_gets_the_same_trailer(tmp_path, make_reconciler, fleet):
    repos = []
    for name in ("one", "two"):
        path = tmp_path / name
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        commit_files(path, {"utils/__init__.py": "", "utils/calc.py": "def add(a, b):\n    return a + b\n\n\n"
                            "def sub(a, b):\n    return a - b\n"}, "initial")
        start(path)
        repos.append(path)
    events: list[Event] = []
    make_reconciler(repos[0], config(), events).sync()
    runs = len([e for e in events if e.kind == "check"])
    calls = fleet.calls
    make_reconciler(repos[1], config(), events).sync()
    # Same responses from the store, same trees: the verification is reused, to the second.
    assert fleet.calls == calls and len([e for e in events if e.kind == "check"]) == runs
    assert [m.split("Symergion-Model")[0] for m in messages(repos[0])] == \
        [m.split("Symergion-Model")[0] for m in messages(repos[1])]


def test_a_file_that_tests_nothing_is_dropped_without_repairs(calc_repo, make_reconciler, fleet):
    start(calc_repo)
    fleet.reply = lambda _m, p: continued(p, EMPTY)
    # The original starter imports nothing, so the file does not import the module under test.
    cfg = config("import unittest\n", repair_rounds=0)
    report = make_reconciler(calc_repo, cfg).sync()
    assert not report.failed
    assert subjects(calc_repo)[1] == ("Prune: removed test_calc.py (no passing tests left; "
                                      "it does not import utils.calc)")
    assert "test_calc.py" not in git(calc_repo, "ls-tree", "--name-only", f"alpha_{TASK}")
    assert "Symergion-Prune: dropped" in messages(calc_repo)[1]
    assert [r.status for r in make_reconciler(calc_repo, cfg).sync().results] == ["up-to-date"]


def test_without_prune_and_repair_only_the_trailer_is_added(calc_repo, make_reconciler):
    start(calc_repo)
    make_reconciler(calc_repo, config(prune=False, repair_rounds=0)).sync()
    [message] = messages(calc_repo)
    assert "Symergion-Verify: 2 passed, 1 failed, 0 errors" in message


def test_the_original_format_runs_nothing(calc_repo, make_reconciler):
    start(calc_repo)
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["checkpoints"] = [{"name_or_path": "/models/alpha.gguf", "trait": "coding"}]
    del raw["templates"]["TestCase"]["verify"]
    del raw["templates"]["TestCase"]["guided"]
    events: list[Event] = []
    make_reconciler(calc_repo, parse_config(raw, base_dir=Path("/models")), events).sync()
    [message] = messages(calc_repo)
    assert "Symergion-Verify" not in message and not [e for e in events if e.kind == "check"]


def test_best_of_n_publishes_the_best_sample_and_scores_the_others(calc_repo, tmp_path):
    start(calc_repo)
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["checkpoints"] = [{"name_or_path": "/models/alpha.gguf", "trait": "coding", "samples": 3,
                           "sampling": {"temperature": 0.8, "seed": 10}}]
    raw["templates"]["TestCase"]["guided"] = False
    cfg = parse_config(raw, base_dir=Path("/models"))
    seeds: list[int] = []

    def seeded(prompt: str, seed: int) -> str:
        seeds.append(seed)
        return continued(prompt, REPAIRED if seed == 12 else EMPTY)

    batches: list[int] = []

    class CountingEngine(FakeEngine):
        def generate_many(self, requests, **kwargs):  # type: ignore[no-untyped-def]
            batches.append(len(requests))
            return super().generate_many(requests, **kwargs)

    engine = CountingEngine("alpha", lambda p: continued(p, FIRST), seeded=seeded)
    store = ResponseStore(tmp_path / "responses", 100)
    reconciler = Reconciler(GitRepo(calc_repo), cfg, engines=lambda _c: engine,
                            fingerprint=lambda _c: "fp", store=store)
    report = reconciler.sync()
    assert not report.failed, report.as_dict()
    assert sorted(seeds) == [11, 12]  # sample 0 keeps the checkpoint's seed, the others their own
    assert batches == [3]  # the three samples decode in one batch
    [message] = messages(calc_repo)
    assert "Samples: 3; published the best by verification" in message
    assert "  3: 2 passed, 0 failed, 0 errors" in message and "(published)" in message.split("  3:")[1]
    assert "  1: 2 passed, 1 failed, 1 errors" not in message and "  1: 2 passed, 1 failed" in message
    assert git(calc_repo, "show", f"alpha_{TASK}:test_calc.py") == "import unittest\n\n" + REPAIRED
    # The samples are in the store: the next pass on a fresh branch generates nothing.
    git(calc_repo, "branch", "-D", f"alpha_{TASK}")
    git(calc_repo, "update-ref", "-d", f"refs/symergion/shadow/{TASK}/alpha")
    reconciler.sync()
    assert len(engine.calls) == 3
    store.close()


def test_status_and_ergon_list_rank_the_candidates(calc_repo, make_reconciler):
    start(calc_repo)
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["checkpoints"] = [{"name_or_path": f"/models/{m}.gguf", "trait": "coding"} for m in ("alpha", "beta")]
    raw["templates"]["TestCase"]["verify"].update(prune=False, repair_rounds=0)
    raw["templates"]["TestCase"]["guided"] = False
    cfg = parse_config(raw, base_dir=Path("/models"))
    fleet_reply = {"alpha": FIRST, "beta": REPAIRED}
    reconciler = make_reconciler(calc_repo, cfg)
    reconciler.engines.reply = lambda m, p: continued(p, fleet_reply[m])  # type: ignore[attr-defined]
    reconciler.sync()
    views = current_views(GitRepo(calc_repo), cfg)
    rows = {r["model"]: r for r in views.rows}
    assert rows["beta"]["verify"].startswith("2 passed, 0 failed") and rows["beta"]["rank"] == 1
    assert rows["alpha"]["verify"].startswith("2 passed, 1 failed") and rows["alpha"]["rank"] == 2
    [task] = views.tasks
    assert [c["branch"] for c in task.ranking] == [f"beta_{TASK}", f"alpha_{TASK}"]


def test_without_bubblewrap_the_branch_reports_it_and_nothing_is_lost(
        calc_repo, make_reconciler, fleet, monkeypatch):
    start(calc_repo)
    with monkeypatch.context() as patch:
        patch.setattr("symergion.verify.sandbox.shutil.which", lambda _name: None)
        report = make_reconciler(calc_repo, config()).sync()
    [result] = report.results
    assert result.status == "failed" and "bubblewrap (bwrap) is not installed" in result.reason
    assert "sudo apt-get install bubblewrap" in result.reason
    assert git(calc_repo, "branch", "--list", f"alpha_{TASK}").strip() == ""
    calls = fleet.calls
    report = make_reconciler(calc_repo, config()).sync()
    assert [r.status for r in report.results] == ["created"]
    # The first attempt's response came from the store.
    assert fleet.calls == calls + 1  # only the repair round asked the model


def test_the_cli_shows_each_candidates_result_and_rank(calc_repo, tmp_path, fleet, monkeypatch, capsys):
    from symergion.cli.main import main

    monkeypatch.setattr("symergion.app.runtime.load_engine", lambda config, c: fleet(c))
    monkeypatch.setattr("symergion.app.runtime.fingerprint", lambda config, c: f"fp-{c.model_name}")
    cfg = tmp_path / "symergion.json"
    templates = json.loads(json.dumps(DEFAULT_CONFIG["templates"]))
    templates["TestCase"]["guided"] = False
    cfg.write_text(json.dumps({"checkpoints": [{"name_or_path": "alpha.gguf", "trait": "coding"}],
                               "templates": templates}))
    start(calc_repo)
    common = ["--repo", str(calc_repo), "--config", str(cfg)]
    assert main(["sync", *common]) == 0
    err = capsys.readouterr().err
    assert "verifying the candidate (2 runs)" in err and "verified: 2 passed, 0 failed" in err
    assert main(["status", *common, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["branches"]
    assert row["rank"] == 1 and row["verify"].startswith("2 passed, 0 failed, 0 errors; coverage 100%")
    assert main(["status", *common]) == 0
    assert "#1 2 passed, 0 failed" in capsys.readouterr().out
    assert main(["ergon", "list", *common, "--json"]) == 0
    [task] = json.loads(capsys.readouterr().out)["tasks"]
    assert task["ranking"][0]["branch"] == f"alpha_{TASK}" and task["ranking"][0]["rank"] == 1
    assert main(["sync", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["status"] == "up-to-date"


def test_a_commit_made_while_verifying_is_built_upon(calc_repo, make_reconciler, fleet):
    start(calc_repo)
    cfg = config(repair_rounds=0)
    make_reconciler(calc_repo, cfg).sync()
    branch = f"alpha_{TASK}"
    tip = git(calc_repo, "rev-parse", branch).strip()
    git(calc_repo, "notes", "add", "-m", "Use setUp method", tip)
    fleet.reply = lambda _m, p: continued(p, FIRST) + "# another attempt\n"  # a new file: verified afresh
    raced: list[str] = []

    def on_event(event: Event) -> None:
        if event.kind == "check" and not raced:
            # A person commits on the model branch while the sandbox runs.
            head = git(calc_repo, "rev-parse", branch).strip()
            tree = git(calc_repo, "rev-parse", f"{head}^{{tree}}").strip()
            mine = git(calc_repo, "commit-tree", tree, "-p", head, "-m", "my fix").strip()
            git(calc_repo, "update-ref", f"refs/heads/{branch}", mine, head)
            raced.append(mine)

    reconciler = make_reconciler(calc_repo, cfg)
    reconciler.on_event = on_event
    report = reconciler.sync()
    assert [r.status for r in report.results] == ["updated"], report.as_dict()
    assert raced and git(calc_repo, "merge-base", "--is-ancestor", raced[0], branch) == ""
    assert subjects(calc_repo)[-3:] == [
        "my fix", "Use setUp method", "Prune: removed test_calc.py (no passing tests left)"]
    assert [r.status for r in make_reconciler(calc_repo, cfg).sync().results] == ["up-to-date"]


def test_a_repair_round_left_undone_is_made_by_the_next_pass(calc_repo, make_reconciler, fleet):
    start(calc_repo)
    make_reconciler(calc_repo, config(repair_rounds=0)).sync()
    assert len(subjects(calc_repo)) == 2  # candidate and prune, no repair
    # Now the config allows a round: the plan sees the recorded failure and repairs it.
    views = current_views(GitRepo(calc_repo), config())
    assert views.rows[0]["state"] == "pending" and "repair round 1" in views.rows[0]["reason"]
    calls = fleet.calls
    report = make_reconciler(calc_repo, config()).sync()
    assert [r.status for r in report.results] == ["updated"]
    assert fleet.calls == calls + 1 and subjects(calc_repo)[2].startswith("Repair: FAIL")
    assert [r.status for r in make_reconciler(calc_repo, config()).sync().results] == ["up-to-date"]


# A repair attempt worse than the first one: its only test calls what the module does not have,
# so it runs no line of the code (the first one's failing test ran calc.sub).
WORSE = '''from utils import calc


class TestCalc(unittest.TestCase):
    def test_mul(self):
        self.assertEqual(calc.mul(5, 2), 10)
'''


@pytest.mark.parametrize("later", [False, True], ids=["same pass", "next pass"])
def test_a_repair_round_that_ranks_lower_is_kept_in_history_and_the_better_file_restored(
        calc_repo, make_reconciler, fleet, later):
    fleet.reply = lambda _model, prompt: continued(prompt, WORSE if "were run:" in prompt else FIRST)
    start(calc_repo)
    # Without the prune, which would leave neither file anything to rank by.
    if later:  # the candidate first; the round in a pass of its own
        make_reconciler(calc_repo, config(repair_rounds=0, prune=False)).sync()
    report = make_reconciler(calc_repo, config(prune=False)).sync()
    assert not report.failed, report.as_dict()
    assert subjects(calc_repo) == [
        "Create unittest TestCase for the function add, the function sub",
        "Repair: FAIL test_calc.TestCalc.test_sub: AssertionError: 3 != 4 (test_calc.py:11)",
        "Repair: kept the file from before round 1, which ranks higher",
    ]
    kept = messages(calc_repo)[-1]
    assert "Round 1: 0 passed, 0 failed, 1 errors" in kept
    assert "Symergion-Verify: 2 passed, 1 failed, 0 errors" in kept
    # The branch ends on the first file, and the repository says the round is done.
    assert git(calc_repo, "show", f"alpha_{TASK}:test_calc.py") == git(
        calc_repo, "show", f"alpha_{TASK}~2:test_calc.py")
    calls = fleet.calls
    assert [r.status for r in make_reconciler(calc_repo, config()).sync().results] == [
        "up-to-date"]
    assert fleet.calls == calls


def test_a_spent_time_budget_leaves_the_repair_round_to_the_next_sync(
        calc_repo, make_reconciler, fleet):
    start(calc_repo)
    raw = config()
    spent = make_reconciler(calc_repo, type(raw)(**{**raw.__dict__, "max_seconds": 1e-6})).sync()
    [result] = spent.results
    assert result.status == "created"
    # The candidate was checked and pruned; the repair round waits, and the tip says why.
    assert subjects(calc_repo) == [
        "Create unittest TestCase for the function add, the function sub",
        "Prune: removed test_calc.py (no passing tests left)",
    ]
    assert messages(calc_repo)[-1].endswith(
        "Symergion-Cut: max_seconds 1e-06: repair round 1 left for the next sync")
    assert not [p for p in fleet.engines["alpha"].calls if "were run:" in p]
    # The next sync, with time, makes the round the branch records it still needs.
    make_reconciler(calc_repo, config()).sync()
    assert subjects(calc_repo)[-1].startswith("Repair: FAIL test_calc.TestCalc.test_sub")


def test_a_file_reused_without_a_recorded_result_is_checked_as_the_file_it_is(
        calc_repo, make_reconciler, fleet):
    # The first attempt was made before the template verified: its commit records no result.
    fleet.reply = lambda _model, prompt: continued(prompt, HELPFUL)
    start(calc_repo)
    plain = config()
    plain.templates["TestCase"] = replace(plain.templates["TestCase"], verify=None)
    make_reconciler(calc_repo, plain).sync()
    first = git(calc_repo, "rev-parse", f"alpha_{TASK}").strip()
    assert VerifyResult.from_message(messages(calc_repo)[0]) is None
    git(calc_repo, "notes", "add", "-m", "Use setUp method", first)
    assert [r.status for r in make_reconciler(calc_repo, plain).sync().results] == ["updated"]

    # Revoked under a verifying template: the earlier file is reused, verified and pruned.
    git(calc_repo, "notes", "remove", first)
    calls = fleet.calls
    report = make_reconciler(calc_repo, config(repair_rounds=0)).sync()
    assert [r.status for r in report.results] == ["updated"], report.as_dict()
    assert fleet.calls == calls, "the earlier commit's file is reused, not generated again"
    assert subjects(calc_repo)[2:] == ["Revert: Use setUp method", "Prune: removed 2 failing tests"]
    reverted = git(calc_repo, "show", f"alpha_{TASK}~1:test_calc.py")
    assert reverted == git(calc_repo, "show", f"{first}:test_calc.py")
    pruned = git(calc_repo, "show", f"alpha_{TASK}:test_calc.py")
    assert "def test_add" in pruned and "test_sub" not in pruned and "test_truth" not in pruned


def test_a_revoke_brings_back_the_hand_edit_verified_and_not_pruned(calc_repo, make_reconciler, fleet):
    start(calc_repo)
    cfg = config()
    fleet.reply = lambda _m, p: continued(p, HELPFUL)
    make_reconciler(calc_repo, cfg).sync()
    branch = f"alpha_{TASK}"
    # The user adds a failing test by hand on the model's file, and asks for more.
    git(calc_repo, "checkout", "-q", branch)
    path = calc_repo / "test_calc.py"
    path.write_text(path.read_text() + "\n    def test_by_hand(self):\n"
                    "        self.assertEqual(calc.add(2, 2), 5)\n")
    git(calc_repo, "commit", "-qam", "hand edit")
    git(calc_repo, "checkout", "-q", "main")
    manual = git(calc_repo, "rev-parse", branch).strip()
    git(calc_repo, "notes", "add", "-m", "Use setUp method", manual)
    make_reconciler(calc_repo, cfg).sync()
    assert "test_by_hand" not in git(calc_repo, "show", f"{branch}:test_calc.py")

    git(calc_repo, "notes", "remove", manual)
    report = make_reconciler(calc_repo, cfg).sync()
    assert [r.status for r in report.results] == ["updated"], report.as_dict()
    # The hand edit comes back whole: its failing test is reported, not pruned or repaired.
    restored = git(calc_repo, "show", f"{branch}:test_calc.py")
    assert restored == git(calc_repo, "show", f"{manual}:test_calc.py")
    revert = messages(calc_repo)[-1]
    assert revert.startswith(f"Revert: Use setUp method\nKeeps the hand edit of {manual[:12]}")
    result = VerifyResult.from_message(revert)
    assert result is not None and result.failed == 1 and result.passed == 1
    assert [r.status for r in make_reconciler(calc_repo, cfg).sync().results] == ["up-to-date"]


def test_a_pass_with_nothing_to_check_loads_none_of_the_checks(calc_repo, make_reconciler, tmp_path):
    # A no-op sync (cron, CI) reads the recorded results; the sandbox, prune, repairs and guided
    # writing are for a pass that checks something, and importing them cost it a third more time.
    start(calc_repo)
    make_reconciler(calc_repo, config()).sync()
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["templates"]["TestCase"]["guided"] = False
    raw["checkpoints"] = [{"name_or_path": "/models/alpha.gguf", "trait": "coding"}]
    code = (
        "import json, sys\nfrom pathlib import Path\n"
        "from symergion.cache import ResponseStore\nfrom symergion.config.parse import parse_config\n"
        "from symergion.core.execute import Reconciler\nfrom symergion.gitrepo import GitRepo\n"
        f"config = parse_config(json.loads({json.dumps(json.dumps(raw))}), base_dir=Path('/models'))\n"
        "def no_engine(checkpoint):\n    raise AssertionError('a no-op pass loads no model')\n"
        f"report = Reconciler(GitRepo({str(calc_repo)!r}), config, engines=no_engine,\n"
        "    fingerprint=lambda c: 'fp', store=ResponseStore("
        f"Path({str(tmp_path / 'store')!r}), 10)).sync()\n"
        "print([r.status for r in report.results])\n"
        "print(sorted(m for m in ('symergion.core.check', 'symergion.verify.sandbox',\n"
        "    'symergion.verify.prune', 'symergion.verify.repair', 'symergion.verify.candidate')\n"
        "    if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['up-to-date']", "[]"]
