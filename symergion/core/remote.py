"""Sharing a pass through a remote: fetch and merge notes first, push the results after.

What a fetch may change locally is narrow on purpose, since anyone who can push to the remote
writes the notes a pass runs: only the task branches those notes start and the configured
models' branches of those tasks are created or fast-forwarded (never a checked-out one, never
``main`` or any other branch), and destinations under CI and hook paths are refused by the plan
unless the config's ``allow_destinations`` lists them. Nothing is ever force-pushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from symergion.config.schema import Config
from symergion.core.spec import split_sections
from symergion.core.state import model_branch, shadow_ref
from symergion.errors import GitError
from symergion.gitrepo import ZERO_OID, GitRepo


@dataclass
class RemoteReport:
    """What a team/CI pass exchanged with a remote."""

    fetched: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def wanted_branches(repo: GitRepo, config: Config) -> set[str]:
    """Return the local branches a fetch may create or move: task branches that notes start,
    and the configured coders' model branches of those tasks."""
    names: set[str] = set()
    for note in repo.snapshot().notes.values():
        for section in split_sections(note.text, config.task_branch_spec):
            if section.task_branch and config.template_for(section.task_branch):
                names.add(section.task_branch)
    return names | {model_branch(c.model_name, t) for t in names for c in config.coders}


def pull(repo: GitRepo, config: Config, remote: str) -> RemoteReport:
    """Fetch branches and notes from ``remote``; merge the notes; fast-forward what a task needs.

    Raises:
        GitError: the remote does not exist or cannot be fetched from.
    """
    if remote not in repo.remotes():
        raise GitError(f"there is no remote named {remote!r}",
                       hint="see `git remote -v` for the configured remotes")
    notes_ref = repo.notes_ref()
    fetched_notes = repo.fetch(remote, notes_ref)
    result = RemoteReport()
    if fetched_notes:
        repo.merge_notes(fetched_notes)
        result.fetched.append(notes_ref)
    wanted = wanted_branches(repo, config)
    snap = repo.snapshot()
    checked_out = repo.checked_out_branches()
    for name, oid in repo.remote_branches(remote).items():
        local = snap.branch(name)
        if name not in wanted or name in checked_out or local == oid:
            continue
        forward = local is None or repo.is_ancestor(local, oid)
        if forward and repo.update_refs([(f"refs/heads/{name}", oid, local or ZERO_OID)],
                                        f"symergion: fast-forward from {remote}"):
            result.fetched.append(name)
    return result


def push(repo: GitRepo, remote: str, branches: list[tuple[str, str, str]],
         result: RemoteReport) -> None:
    """Push model branches (with their shadow refs) and the notes, never forced.

    Args:
        repo: the repository.
        remote: the remote's name.
        branches: (branch, task, model) of every model branch the pass holds.
        result: collects what was pushed and rejected.
    """
    refspecs = []
    for branch, task, model in branches:
        refspecs.append(f"refs/heads/{branch}:refs/heads/{branch}")
        refspecs.append(f"{shadow_ref(task, model)}:{shadow_ref(task, model)}")
    notes_ref = repo.notes_ref()
    if repo.snapshot().refs.get(notes_ref):
        refspecs.append(f"{notes_ref}:{notes_ref}")
    result.rejected.update(repo.push(remote, refspecs))
    result.pushed.extend(s.split(":")[0] for s in refspecs
                         if s.split(":")[0] not in result.rejected)
