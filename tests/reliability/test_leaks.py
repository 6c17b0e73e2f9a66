"""A long `watch` leaks no git process, zombie or file descriptor: counted at every poll."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from symergion.app.watch import watch_loop
from symergion.gitrepo import GitRepo
from tests.helpers.git import git
from tests.helpers.reliability import MODELS, TASK, start_task, symergion_commits

POLLS = 300
CHANGES = {60: "Use setUp method", 150: "Test errors too", 240: "Close files"}


class Quiet:
    def loading(self, model: str) -> None:
        pass

    def __call__(self, event: object) -> None:
        pass


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def started_since(me: psutil.Process, before: set[int]) -> list[psutil.Process]:
    """Return the processes below this one that were not there at the test's start.

    A session fixture's server (the model tier's ``llama-server``) may be running already; it
    is not the test's to leak.
    """
    return [p for p in me.children(recursive=True) if p.pid not in before]


def current(me: psutil.Process) -> set[int]:
    return {p.pid for p in me.children(recursive=True)}


def test_a_long_watch_leaks_no_git_process(repo_dir: Path, cfg: Path, fake_runtime) -> None:
    start_task(repo_dir)
    me = psutil.Process()
    before = current(me)
    children: list[int] = []
    zombies: list[int] = []
    fds: list[int] = []

    def on_poll(poll: int) -> None:
        # Every git command of the poll (and of any pass it ran) has been waited for by now.
        kids = started_since(me, before)
        children.append(len(kids))
        zombies.append(sum(1 for k in kids if k.status() == psutil.STATUS_ZOMBIE))
        fds.append(open_fds())
        if poll in CHANGES:  # feedback arrives while watching: the next poll runs a pass
            git(repo_dir, "notes", "add", "-f", "-m", CHANGES[poll], f"{MODELS[0]}_{TASK}")

    code = watch_loop(repo_dir, cfg, None, interval=0.001, printer=Quiet(), max_polls=POLLS,
                      on_poll=on_poll)
    assert code == 0
    assert len(children) == POLLS
    assert max(children) == 0, "a git process outlived its command"
    assert max(zombies) == 0
    # The store and the lock are opened before the first poll; a leak per git command would
    # add hundreds of descriptors (GitPython's pipes), a leak per pass at least three.
    assert max(fds) == min(fds), fds
    subjects = [c["subject"] for c in symergion_commits(repo_dir, TASK, f"{MODELS[0]}_{TASK}")]
    assert subjects[0] == CHANGES[240], "the polls ran passes: each feedback was applied"
    assert len(subjects) == 1 + len(CHANGES)


def test_git_repo_holds_no_process_between_commands(repo_dir: Path) -> None:
    """GitPython's object database would keep `cat-file --batch` processes per repository."""
    me = psutil.Process()
    before = current(me)
    for _ in range(50):
        with GitRepo(repo_dir) as repo:
            snap = repo.snapshot()
            repo.read_objects([snap.refs["refs/heads/main"]])
            repo.commit_message("main")
            assert started_since(me, before) == []
    assert started_since(me, before) == []


def test_the_count_sees_gitpythons_persistent_processes_and_close_ends_them(repo_dir: Path
                                                                            ) -> None:
    """The instrument works: GitPython's object database, which symergion never uses, leaves
    ``cat-file`` processes running until the repository is closed."""
    me = psutil.Process()
    before = current(me)
    repo = GitRepo(repo_dir)
    repo._repo.commit("HEAD").message  # noqa: B018 - the object database starts cat-file
    assert len(started_since(me, before)) >= 1
    repo.close()
    assert started_since(me, before) == []
