"""Point 1, property-based: random user git operations interleaved with syncs and simulated kills.

After every sync (finished or killed) the user's work tree, index, HEAD and refs are as they
were; after every step each model branch's last symergion commit carries valid trailers; after
every finished sync a second sync changes nothing.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from symergion.app.demo import SOURCE
from symergion.cache import ResponseStore
from symergion.core.execute import Reconciler
from symergion.engine.fake import FakeEngine
from symergion.gitrepo import GitRepo
from symergion.trailers import parse_trailers
from tests.helpers.fleet import default_reply, make_config
from tests.helpers.git import git
from tests.helpers.reliability import all_refs, commit_files, is_symergion_ref, user_state

MODELS = ("alpha", "beta")
TASKS = ("TestCase_one", "TestCase_two")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
OID_LIST = re.compile(r"^(-|[0-9a-f]{40}:[0-9a-f]{40}( [0-9a-f]{40}:[0-9a-f]{40})*)$")


# Feedback and checkouts are listed twice: together they make the interesting states (a model
# branch checked out while its task has new feedback) reachable in a short run.
USER_OPS = [
    "commit_on_task_branch", "commit_on_model_branch", "commit_on_checked_out_branch",
    "checkout", "checkout", "toggle_user_branch", "delete_model_branch", "toggle_second_task",
    "add_feedback", "add_feedback", "remove_feedback", "housekeeping",
]


class SimulatedKill(BaseException):
    """Stands for SIGKILL: not an error symergion handles, it just stops there."""


class FlakyEngine(FakeEngine):
    """A fake engine that can die after a few tokens."""

    die = False

    def generate(self, prompt: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        for count, piece in enumerate(super().generate(prompt, **kwargs)):
            if FlakyEngine.die and count == 3:
                raise SimulatedKill("the engine died mid-generation")
            yield piece

    def generate_many(self, requests, **kwargs):  # type: ignore[no-untyped-def]
        for count, item in enumerate(super().generate_many(requests, **kwargs)):
            if FlakyEngine.die and count == 3:
                raise SimulatedKill("the engine died mid-generation")
            yield item


class UserAndSymergion(RuleBasedStateMachine):
    base: Path

    def __init__(self) -> None:
        super().__init__()
        self.path = Path(tempfile.mkdtemp(dir=self.base))
        self.store_dir = self.path.parent / (self.path.name + "-cache")
        self.engines: dict[str, FlakyEngine] = {}
        self.counter = 0
        self.synced = False

    # -- set-up ---------------------------------------------------------------------------

    @initialize(head=st.sampled_from(["detached", "task", "branch"]))
    def make_repo(self, head: str) -> None:
        p = self.path
        git(p, "init", "-q", "-b", "main")
        (p / "utils").mkdir()
        (p / "utils" / "capture_output.py").write_text(SOURCE)
        (p / "README.md").write_text("demo\n")
        git(p, "add", ".")
        git(p, "commit", "-q", "-m", "initial")
        for task in TASKS:
            git(p, "branch", task)
        git(p, "notes", "add", "-m", "\n".join(
            f"task_branch: {t}, source: utils/capture_output.py, destination: test_{t}.py"
            for t in TASKS), "main")
        if head == "detached":
            git(p, "checkout", "-q", "--detach", "main")
        elif head == "task":
            git(p, "checkout", "-q", TASKS[0])
        else:
            git(p, "checkout", "-q", "-b", "work")
        (p / "staged.txt").write_text("staged\n")
        git(p, "add", "staged.txt")
        (p / "README.md").write_text("unstaged edit\n")
        (p / "untracked.txt").write_text("untracked\n")

    def teardown(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(self.store_dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def reconciler(self) -> tuple[Reconciler, ResponseStore]:
        def engine(checkpoint: Any) -> FlakyEngine:
            name = checkpoint.model_name
            if name not in self.engines:
                self.engines[name] = FlakyEngine(name, lambda p, n=name: default_reply(n, p))
            return self.engines[name]

        store = ResponseStore(self.store_dir, 100)
        return Reconciler(GitRepo(self.path), make_config(MODELS), engines=engine,
                          fingerprint=lambda c: f"fp-{c.model_name}", store=store), store

    def model_branches(self) -> dict[str, str]:
        return {r[len("refs/heads/"):]: o for r, o in all_refs(self.path).items()
                if r.startswith("refs/heads/") and is_symergion_ref(r, MODELS)}

    def existing(self, names: tuple[str, ...]) -> list[str]:
        refs = all_refs(self.path)
        return [n for n in names if f"refs/heads/{n}" in refs]

    def checked_out(self) -> str:
        """Return the checked-out branch, or '' when HEAD is detached."""
        proc = subprocess.run(["git", "symbolic-ref", "-q", "--short", "HEAD"], cwd=self.path,
                              capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    def run_sync(self, *, kill: str | None = None) -> list[str]:
        """Run one pass (maybe killed), checking that the user's work and refs are untouched."""
        before, refs = user_state(self.path), self._user_refs()
        reconciler, store = self.reconciler()
        statuses: list[str] = []
        try:
            if kill == "engine":
                FlakyEngine.die = True
            elif kill is not None:
                method = getattr(reconciler.repo, kill)

                def killed(*args: Any, **kwargs: Any) -> Any:
                    if kill == "write_blob":
                        method(*args, **kwargs)  # the object is written, then the process dies
                    raise SimulatedKill(kill)

                setattr(reconciler.repo, kill, killed)
            with contextlib.suppress(SimulatedKill):
                statuses = [r.status for r in reconciler.sync().results]
        finally:
            FlakyEngine.die = False
            store.close()
        assert user_state(self.path) == before, "sync touched the work tree, index or HEAD"
        assert self._user_refs() == refs, "sync moved a user ref"
        return statuses

    def _user_refs(self) -> dict[str, str]:
        return {r: o for r, o in all_refs(self.path).items() if not is_symergion_ref(r, MODELS)}

    # -- what the user does ------------------------------------------------------------------

    def commit_on_task_branch(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(TASKS))
        change_source = data.draw(st.booleans())
        if task not in self.existing(TASKS):
            return
        files = {f"notes_{self.next_id()}.txt": ("100644", "user work\n")}
        if change_source:
            files["utils/capture_output.py"] = ("100644", SOURCE + f"# change {self.counter}\n")
        commit = commit_files(self.path, files, at=task)
        self._move_branch(task, commit)

    def _move_branch(self, branch: str, commit: str) -> None:
        if self.checked_out() == branch:
            # The checked-out branch moves the way `git commit` would move it: index too.
            git(self.path, "reset", "-q", "--soft", commit)
        else:
            git(self.path, "update-ref", f"refs/heads/{branch}", commit)

    def commit_on_model_branch(self, data: st.DataObject) -> None:
        branches = sorted(self.model_branches())
        if not branches:
            return
        branch = data.draw(st.sampled_from(branches))
        commit = commit_files(self.path, {"helper.py": ("100644", f"# hand fix {self.next_id()}\n")},
                              at=branch)
        self._move_branch(branch, commit)

    def commit_on_checked_out_branch(self, data: st.DataObject) -> None:
        """A real `git commit` of the staged file: index, HEAD's branch and files change."""
        if not self.checked_out():
            return
        (self.path / "staged.txt").write_text(f"staged {self.next_id()}\n")
        git(self.path, "add", "staged.txt")
        git(self.path, "commit", "-q", "-m", "user commit")

    def checkout(self, data: st.DataObject) -> None:
        """Switch branches (a model branch too), carrying the uncommitted changes along."""
        branches = sorted(self.model_branches())
        others = ["main", TASKS[0], "--detach"]
        target = data.draw(st.sampled_from(branches or others) | st.sampled_from(others))
        subprocess.run(["git", "checkout", "-q", target], cwd=self.path, capture_output=True,
                       check=False)

    def toggle_user_branch(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(["feature", "spare"]))
        if name in self.existing(("feature", "spare")):
            git(self.path, "branch", "-D", name)
        else:
            git(self.path, "branch", name, "main")

    def delete_model_branch(self, data: st.DataObject) -> None:
        branches = sorted(b for b in self.model_branches() if b != self.checked_out())
        if branches:
            git(self.path, "branch", "-D", data.draw(st.sampled_from(branches)))

    def toggle_second_task(self, data: st.DataObject) -> None:
        """End the second task (delete its branch) or start it again."""
        if TASKS[1] in self.existing(TASKS):
            git(self.path, "branch", "-D", TASKS[1])
        else:
            git(self.path, "branch", TASKS[1], "main")

    def add_feedback(self, data: st.DataObject) -> None:
        text = data.draw(st.sampled_from(["Use setUp method", "Test errors too", "Add docstrings"]))
        branches = self.model_branches()
        noted = set(git(self.path, "notes", "list").split()[1::2])
        tips = sorted(b for b, oid in branches.items() if oid not in noted)
        if tips:
            git(self.path, "notes", "add", "-m", text, data.draw(st.sampled_from(tips)))

    def remove_feedback(self, data: st.DataObject) -> None:
        main = git(self.path, "rev-parse", "main").strip()
        targets = sorted(t for t in git(self.path, "notes", "list").split()[1::2] if t != main)
        if targets:
            git(self.path, "notes", "remove", data.draw(st.sampled_from(targets)))

    def housekeeping(self, data: st.DataObject) -> None:
        how = data.draw(st.sampled_from(["pack-refs", "gc"]))
        if how == "gc":
            git(self.path, "gc", "--quiet")
        else:
            git(self.path, "pack-refs", "--all")

    @rule(data=st.data())
    def user(self, data: st.DataObject) -> None:
        """One to three things the user does with git between symergion's passes."""
        for op in data.draw(st.lists(st.sampled_from(USER_OPS), min_size=1, max_size=3)):
            getattr(self, op)(data)

    # -- what symergion does -----------------------------------------------------------------

    @rule()
    def sync(self) -> None:
        self.run_sync()
        # A clean pass converges: the next one creates nothing and moves nothing.
        refs = all_refs(self.path)
        calls = sum(len(e.calls) for e in self.engines.values())
        statuses = self.run_sync()
        assert set(statuses) <= {"up-to-date", "skipped", "kept"}, statuses
        assert all_refs(self.path) == refs
        assert sum(len(e.calls) for e in self.engines.values()) == calls
        self.synced = True

    @rule(kill=st.sampled_from(["engine", "write_blob", "commit_tree", "update_refs"]))
    def killed_sync(self, kill: str) -> None:
        self.run_sync(kill=kill)

    # -- always ------------------------------------------------------------------------------

    @invariant()
    def model_branches_carry_valid_trailers(self) -> None:
        if not (self.path / ".git").exists():
            return
        refs = all_refs(self.path)
        for branch, head in self.model_branches().items():
            model, _, task = branch.partition("_")
            found = False
            for _oid, message in GitRepo(self.path).first_parent_log(head, limit=50):
                trailers = parse_trailers(message)
                if trailers.get("Symergion-Model") != model:
                    continue
                found = True
                assert trailers["Symergion-Task"] == task
                assert HEX64.match(trailers["Symergion-Prompt"])
                assert OID_LIST.match(trailers["Symergion-Notes"]), trailers
                assert int(trailers["Symergion-Tokens"]) > 0
                float(trailers["Symergion-Seconds"])
                assert trailers["Symergion-Cache"] in ("hit", "miss")
                assert trailers["Symergion-Stop"] and trailers["Symergion-Trimmed"]
                break
            assert found, f"{branch} has no symergion commit"
            shadow = refs.get(f"refs/symergion/tasks/{task}/{model}")
            assert shadow is not None, f"{branch} has no shadow ref"


@pytest.mark.slow
def test_random_user_operations_with_syncs_and_kills(tmp_path):
    UserAndSymergion.base = tmp_path
    run_state_machine_as_test(UserAndSymergion, settings=settings(
        max_examples=20, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))
