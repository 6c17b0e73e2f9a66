"""The sync pass with guided generation: real git, the real bubblewrap sandbox, a fake model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG
from symergion.core import respond
from symergion.core.state import shadow_ref
from symergion.engine.fake import FakeEngine
from symergion.errors import ConfigError
from tests.helpers.fleet import FakeFleet
from tests.helpers.git import git
from tests.helpers.verify import CALC, commit_files, needs_bwrap

TASK = "TestCase_calc"
NOTE = f"task_branch: {TASK}, source: utils/calc.py, destination: test_calc.py"


def guided_reply(_model: str, prompt: str) -> str:
    """Complete what the guide opened: a bound value, or an expected value that is wrong."""
    last = prompt.rsplit("\n", 1)[-1]
    if last.rstrip().endswith("="):
        return "2\n"
    if last.endswith("self.assertEqual(result, "):
        return "5)\n\n"
    return "\n"


def config(**guided: Any) -> Any:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["checkpoints"] = [{"name_or_path": "/models/alpha.gguf", "trait": "coding"}]
    if guided:
        raw["templates"]["TestCase"]["guided"] = guided
    return parse_config(raw, base_dir=Path("/models"))


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet(guided_reply)


def messages(repo: Path) -> list[str]:
    out = git(repo, "log", "--reverse", "--format=%B%x1e", f"{TASK}..alpha_{TASK}")
    return [m.strip() for m in out.split("\x1e") if m.strip()]


def start(repo: Path) -> None:
    git(repo, "branch", TASK)
    git(repo, "notes", "add", "-m", NOTE, TASK)


@needs_bwrap
def test_a_guided_file_is_repaired_without_the_model_and_a_second_sync_changes_nothing(
        calc_repo: Path, make_reconciler: Any, fleet: FakeFleet) -> None:
    start(calc_repo)
    report = make_reconciler(calc_repo, config()).sync()

    assert not report.failed
    candidate, fixed = messages(calc_repo)
    # The model wrote one test per function, its values bound to the parameters' names.
    first = git(calc_repo, "show", f"alpha_{TASK}~1:test_calc.py")
    assert "def test_add(self):\n        a = 2\n        b = 2\n        result = calc.add(a, b)" in first
    assert "Symergion-Verify: 0 passed, 2 failed" in candidate
    # The wrong expected values were pinned to what the code returned, without the model.
    assert fixed.startswith("Repair: pinned 2 assertions\n")
    assert "Symergion-Fix: pinned 2 assertions" in fixed
    assert "Symergion-Verify: 2 passed, 0 failed, 0 errors" in fixed
    final = git(calc_repo, "show", f"alpha_{TASK}:test_calc.py")
    assert "self.assertEqual(result, 4)" in final and "self.assertEqual(result, 0)" in final
    # The fixed file passes: no model repair round, and a second pass asks the model nothing.
    calls = fleet.calls
    again = make_reconciler(calc_repo, config()).sync()
    assert [r.status for r in again.results] == ["up-to-date"]
    assert fleet.calls == calls


@needs_bwrap
def test_the_guided_file_is_cached_under_the_guide_version(
        calc_repo: Path, tmp_path: Path, make_reconciler: Any, fleet: FakeFleet,
        monkeypatch: pytest.MonkeyPatch) -> None:
    start(calc_repo)
    make_reconciler(calc_repo, config()).sync()
    calls = fleet.calls
    for ref in (f"refs/heads/alpha_{TASK}", shadow_ref(TASK, "alpha")):
        git(calc_repo, "update-ref", "-d", ref)

    make_reconciler(calc_repo, config()).sync()  # the same prompt and method: from the store
    assert fleet.calls == calls
    for ref in (f"refs/heads/alpha_{TASK}", shadow_ref(TASK, "alpha")):
        git(calc_repo, "update-ref", "-d", ref)
    monkeypatch.setattr(respond, "GUIDE_VERSION", respond.GUIDE_VERSION + 1)
    make_reconciler(calc_repo, config()).sync()  # a changed method writes the file again
    assert fleet.calls > calls


def test_guided_generation_needs_a_verify_section() -> None:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    del raw["templates"]["TestCase"]["verify"]
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=Path("/models"))
    assert "templates.TestCase.guided" in str(caught.value)
    assert 'remove "guided"' in (caught.value.hint or "")


def test_guided_settings_are_checked() -> None:
    assert config(variants=2).templates["TestCase"].guided.variants == 2  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"templates\.TestCase\.guided\.variants"):
        config(variants=0)
    with pytest.raises(ConfigError, match="unknown field"):
        config(tests=3)


def test_a_guided_task_whose_destination_is_not_python_fails_with_the_fix(
        calc_repo: Path, make_reconciler: Any) -> None:
    git(calc_repo, "branch", TASK)
    git(calc_repo, "notes", "add", "-m",
        f"task_branch: {TASK}, source: utils/calc.py, destination: calc_test.txt", TASK)

    report = make_reconciler(calc_repo, config()).sync()

    [result] = report.results
    assert result.status == "failed" and "calc_test.txt is not a .py file" in (result.reason or "")
    assert git(calc_repo, "branch", "--list", f"alpha_{TASK}") == ""


@needs_bwrap
def test_variants_are_sampled_and_those_that_add_no_coverage_are_pruned(
        calc_repo: Path, make_reconciler: Any, fleet: FakeFleet) -> None:
    seeds: list[int] = []

    def seeded(prompt: str, seed: int) -> str:
        seeds.append(seed)
        return "3\n" if prompt.rsplit("\n", 1)[-1].rstrip().endswith("=") else guided_reply("", prompt)

    fleet.engines["alpha"] = FakeEngine("alpha", lambda p: guided_reply("alpha", p), seeded=seeded)
    start(calc_repo)
    report = make_reconciler(calc_repo, config(variants=2)).sync()

    assert not report.failed and seeds and set(seeds) == {1, 3}  # round 1: a seed per target
    candidate = git(calc_repo, "show", f"alpha_{TASK}~2:test_calc.py")
    assert "def test_add_2(self):\n        a = 3\n        b = 3\n" in candidate
    subjects = [m.splitlines()[0] for m in messages(calc_repo)]
    assert subjects[1:] == ["Repair: pinned 4 assertions",
                            "Prune: removed 2 tests that failed or added no coverage"]
    prune_message = messages(calc_repo)[2]
    assert "test_calc.TestCalc.test_add_2: adds no coverage" in prune_message
    final = git(calc_repo, "show", f"alpha_{TASK}:test_calc.py")
    assert "def test_add(self)" in final and "def test_sub(self)" in final and "_2(self)" not in final


def prompt_trailer(repo: Path) -> str:
    first = git(repo, "log", "--reverse", "--format=%(trailers:key=Symergion-Prompt,valueonly)",
                f"{TASK}..alpha_{TASK}").split("\n")[0]
    return first.strip()


@needs_bwrap
def test_a_source_longer_than_the_context_is_compacted_for_the_model_and_keeps_the_plans_digest(
        calc_repo: Path, tmp_path: Path, make_reconciler: Any, fleet: FakeFleet) -> None:
    # About 4,400 of the fake engine's tokens: more than its 4,096-token context.
    table = "TABLE = [" + ", ".join(str(i) for i in range(3000)) + "]\n"
    commit_files(calc_repo, {"utils/calc.py": CALC + "\n\n" + table}, "a long table")
    twin = tmp_path / "twin"
    git(tmp_path, "clone", "-q", str(calc_repo), str(twin))
    start(calc_repo)
    start(twin)
    events: list[Any] = []

    report = make_reconciler(calc_repo, config(), events).sync()

    assert not report.failed
    read = fleet.engines["alpha"].calls[0]
    assert "TABLE = [0, 1, 2, 3, ...]" in read and "2999" not in read
    [compacted] = [e for e in events if e.kind == "compacted"]
    assert "level 1 of 3" in compacted.detail
    final = git(calc_repo, "log", "-1", "--format=%B", f"alpha_{TASK}")
    assert "Symergion-Verify: 2 passed, 0 failed, 0 errors" in final
    # A model whose context holds the whole source reads it whole, and the commits record the
    # same prompt: the plan's, not what was shown.
    fleet.engines.clear()
    fleet.n_ctx = 32768
    events.clear()
    assert not make_reconciler(twin, config(), events, tmp_path / "other-store").sync().failed
    assert "2999" in fleet.engines["alpha"].calls[0]
    assert not [e for e in events if e.kind == "compacted"]
    assert prompt_trailer(twin) == prompt_trailer(calc_repo) != ""


def test_a_prompt_that_fills_the_context_even_compacted_fails_its_branch_with_the_fix(
        calc_repo: Path, make_reconciler: Any, fleet: FakeFleet) -> None:
    fleet.n_ctx = 64
    start(calc_repo)

    [result] = make_reconciler(calc_repo, config()).sync().results

    assert result.status == "failed"
    assert "fills the 64-token context of alpha, even with the source's bodies" in (result.reason or "")
    assert git(calc_repo, "branch", "--list", f"alpha_{TASK}") == ""


@needs_bwrap
def test_the_pass_accounts_for_every_token_and_second(
        calc_repo: Path, make_reconciler: Any, fleet: FakeFleet) -> None:
    start(calc_repo)
    report = make_reconciler(calc_repo, config(variants=2)).sync()
    assert not report.failed
    spend = report.spend
    engine = fleet.engines["alpha"]
    # Every token the engine decoded is in the ledger, kept by a commit or discarded with a why.
    assert spend.decoded_tokens == engine.totals.decoded_tokens > 0
    assert spend.kept_tokens + sum(spend.discarded.values()) == spend.decoded_tokens
    assert spend.kept_tokens > 0
    # The variants repeat the greedy tests (the fake answers alike): their tokens are discarded.
    assert spend.discarded.get("variants left out", 0) > 0
    assert spend.prompt_tokens == engine.totals.prompt_tokens > 0
    # The candidate and the pinned file were verified, twice each (the template's runs: 2).
    assert spend.verify_runs == 4 and spend.verify_seconds > 0
    assert spend.git_calls > 0 and spend.git_seconds > 0
    measured = (spend.load_seconds + spend.prompt_seconds + spend.decode_seconds
                + spend.verify_seconds + spend.git_seconds)
    assert measured <= spend.wall_seconds and spend.other_seconds >= 0
    data = report.as_dict()["spend"]
    assert data["decoded_tokens"] == spend.decoded_tokens and "other_seconds" in data
    # The candidate's trailer gives the honest split: all decoded, kept, the decoding rate.
    candidate = messages(calc_repo)[0]
    assert (f"Symergion-Decode: {spend.decoded_tokens} decoded, {spend.kept_tokens} kept, "
            in candidate)
    (result,) = report.results
    assert result.tokens == spend.decoded_tokens and result.kept_tokens == spend.kept_tokens


@needs_bwrap
def test_a_spent_time_budget_publishes_the_tests_written_so_far(
        calc_repo: Path, make_reconciler: Any) -> None:
    import time

    calls: list[str] = []

    def slow(model: str, prompt: str) -> str:
        calls.append(prompt)
        if len(calls) == 1:
            time.sleep(1.5)  # the budget runs out while the first test is written
        return guided_reply(model, prompt)

    fleet = FakeFleet(slow)
    start(calc_repo)
    raw = config()
    limited = type(raw)(**{**raw.__dict__, "max_seconds": 1.0})
    reconciler = make_reconciler(calc_repo, limited)
    reconciler.engines = fleet
    events: list[Any] = []
    reconciler.on_event = events.append
    report = reconciler.sync()
    assert not report.failed
    candidate = messages(calc_repo)[0]
    assert "Symergion-Cut: max_seconds 1: the guided file stopped after 1 tests" in candidate
    first = git(calc_repo, "show", f"alpha_{TASK}~1:test_calc.py")
    assert "def test_add(self):" in first and "def test_sub" not in first
    # The progress estimated the whole pass's time left, within the budget.
    etas = [e.eta for e in events if e.kind == "progress" and e.eta is not None]
    assert etas and all(0 <= eta <= 1.0 for eta in etas)
    # The cut file is not stored: a sync with time writes every test for this prompt.
    for ref in (f"refs/heads/alpha_{TASK}", shadow_ref(TASK, "alpha")):
        git(calc_repo, "update-ref", "-d", ref)
    again = make_reconciler(calc_repo, config())
    again.engines = fleet
    again.sync()
    whole = git(calc_repo, "show", f"alpha_{TASK}:test_calc.py")
    assert "def test_add(self):" in whole and "def test_sub(self):" in whole
