"""A pass decodes all the branches one model generates in one batch; endpoints run side by side."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from symergion.config.parse import parse_config
from symergion.core.execute import Reconciler
from tests.helpers.fleet import FakeFleet, default_reply, make_config, original_templates
from tests.helpers.git import git

TASKS = ("TestCase_one", "TestCase_two", "TestCase_three")


def start_tasks(path: Path) -> None:
    """Start three tasks on three sources, so each prompt differs."""
    for task in TASKS:
        name = task.split("_", 1)[1]
        (path / "utils" / f"{name}.py").write_text(f"def {name}():\n    return {name!r}\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "sources")
    for task in TASKS:
        name = task.split("_", 1)[1]
        git(path, "branch", task)
        # The tasks branch off one commit: their sections share its note.
        git(path, "notes", "append", "-m", f"task_branch: {task}, source: utils/{name}.py, "
            f"destination: test_{name}.py", task)


def test_each_model_decodes_its_tasks_in_one_batch(
        repo_dir: Path, make_reconciler: Callable[..., Reconciler], fleet: FakeFleet) -> None:
    start_tasks(repo_dir)
    report = make_reconciler(repo_dir).sync()
    assert sorted(r.status for r in report.results) == ["created"] * 6
    for model in ("alpha", "beta"):
        engine = fleet.engines[model]
        assert engine.batches == [3]
        assert len(engine.calls) == 3
    # Each branch holds what the model answers to that task's prompt alone.
    for task in TASKS:
        prompt = next(p for p in fleet.engines["alpha"].calls if f"utils/{task[9:]}.py" in p)
        text = git(repo_dir, "show", f"alpha_{task}:test_{task.split('_', 1)[1]}.py")
        assert default_reply("alpha", prompt).strip() in text
    # Nothing is generated twice: the second pass is a no-op.
    again = make_reconciler(repo_dir).sync()
    assert {r.status for r in again.results} == {"up-to-date"}
    assert fleet.engines["alpha"].batches == [3]


def test_a_failed_budget_fails_only_that_branch(
        repo_dir: Path, make_reconciler: Callable[..., Reconciler], fleet: FakeFleet,
        tmp_path: Path) -> None:
    """A prompt too long for the context fails its branch; the rest of the batch goes on."""
    start_tasks(repo_dir)
    big = repo_dir / "utils" / "big.py"
    big.write_text("".join(f"def f{i}():\n    return {i}\n" for i in range(3000)))
    git(repo_dir, "add", ".")
    git(repo_dir, "commit", "-q", "-m", "big")
    git(repo_dir, "branch", "TestCase_big")
    git(repo_dir, "notes", "append", "-m",
        "task_branch: TestCase_big, source: utils/big.py, destination: test_big.py",
        "TestCase_big")
    report = make_reconciler(repo_dir, make_config(("alpha",))).sync()
    status = {r.branch: r.status for r in report.results}
    assert status.pop("alpha_TestCase_big") == "failed"
    assert set(status.values()) == {"created"}
    assert fleet.engines["alpha"].batches == [3]


def test_models_on_endpoints_generate_at_the_same_time(
        repo_dir: Path, make_reconciler: Callable[..., Reconciler]) -> None:
    """Two endpoint checkpoints each wait for the other inside their generation: sequential
    execution would time out on the barrier."""
    both = threading.Barrier(2, timeout=20)
    met: list[str] = []

    def reply(model: str, prompt: str) -> str:
        both.wait()
        met.append(model)
        return default_reply(model, prompt)

    fleet = FakeFleet(reply)
    config = parse_config({"checkpoints": [
        {"endpoint": "http://127.0.0.1:9", "name": "east", "trait": "coding"},
        {"endpoint": "http://127.0.0.1:10", "name": "west", "trait": "coding"},
    ], "templates": original_templates()}, base_dir=repo_dir)
    git(repo_dir, "branch", "TestCase_one")
    git(repo_dir, "notes", "add", "-m", "task_branch: TestCase_one, source: "
        "utils/capture_output.py, destination: test_one.py", "TestCase_one")
    reconciler = make_reconciler(repo_dir, config)
    reconciler.engines = fleet
    report = reconciler.sync()
    assert sorted(met) == ["east", "west"]
    assert sorted((r.model, r.status) for r in report.results) == [("east", "created"),
                                                                   ("west", "created")]


def test_a_counting_loop_stops_its_branch_alone_and_is_not_published(
        repo_dir: Path, make_reconciler: Callable[..., Reconciler]) -> None:
    """One branch of the batch falls into a counting loop: it stops within a few lines of the
    loop, takes no decode step after that, and its file is cut before the loop began."""
    head = ("\n\nclass TestTwo(unittest.TestCase):\n    def test_two(self):\n"
            "        self.assertEqual(two(), 'two')\n")
    loop = "".join(f"        {chr(97 + i)} = {55 + i}\n" for i in range(26)) * 4

    def reply(model: str, prompt: str) -> str:
        return head + loop if "utils/two.py" in prompt else default_reply(model, prompt)

    fleet = FakeFleet(reply)
    start_tasks(repo_dir)
    reconciler = make_reconciler(repo_dir, make_config(("alpha",)))
    reconciler.engines = fleet
    report = reconciler.sync()
    assert {r.status for r in report.results} == {"created"}
    engine = fleet.engines["alpha"]
    assert engine.batches == [3]
    index = next(i for i, p in enumerate(engine.calls) if "utils/two.py" in p)
    stats = engine.batch_stats[index]
    assert stats.stop == "stopped"
    # Four characters a token: the loop's lines are 15 characters, the ninth ends the run, and
    # the token that ends it is the last one decoded.
    assert stats.generated_tokens == -(-(len(head) + 9 * 15) // 4)
    assert git(repo_dir, "show", "alpha_TestCase_two:test_two.py") == "import unittest\n" + head
    trailers = git(repo_dir, "log", "-1", "--format=%B", "alpha_TestCase_two")
    assert "Symergion-Stop: shape-loop" in trailers
    # Cut: the nine lines of the loop and the start of the tenth the last token brought.
    cut = stats.generated_tokens * 4 - len(head)
    assert f"Symergion-Trimmed: {cut} chars, 9 lines" in trailers
    done = next(r for r in report.results if r.branch == "alpha_TestCase_two")
    assert done.stop == "shape-loop" and done.tokens == stats.generated_tokens


def test_a_batched_pass_accounts_for_its_tokens(
        repo_dir: Path, make_reconciler: Callable[..., Reconciler], fleet: FakeFleet) -> None:
    start_tasks(repo_dir)
    report = make_reconciler(repo_dir).sync()
    spend = report.spend
    decoded = sum(engine.totals.decoded_tokens for engine in fleet.engines.values())
    assert spend.decoded_tokens == decoded == sum(r.tokens or 0 for r in report.results) > 0
    assert spend.kept_tokens + sum(spend.discarded.values()) == spend.decoded_tokens
    assert all(r.kept_tokens is not None and 0 < r.kept_tokens <= (r.tokens or 0)
               for r in report.results)
    assert spend.verify_runs == 0 and spend.git_calls > 0
    assert report.as_dict()["spend"]["decoded_tokens"] == decoded
    # A pass that generates nothing decodes nothing.
    again = make_reconciler(repo_dir).sync()
    assert again.spend.decoded_tokens == 0 and again.spend.prompt_tokens == 0
