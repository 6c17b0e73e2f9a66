"""The git layer on real repositories: discovery, exact bytes, compare-and-swap under a translated
git, notes merges that keep lines in order, file modes, tree entry names, transfer progress, and
git run outside a repository."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from symergion.errors import GitError
from symergion.gitrepo import ZERO_OID, GitRepo, TransferProgress, parse_progress, run_git
from tests.helpers.fleet import make_config
from tests.helpers.git import git, start_task_with_git

TASK = "TestCase_capture_output"


def head(path: Path, rev: str = "HEAD") -> str:
    return git(path, "rev-parse", rev).strip()


def ls_tree(path: Path, rev: str) -> dict[str, tuple[str, str]]:
    """Return every path of a commit's tree mapped to (mode, object)."""
    out = git(path, "ls-tree", "-r", "-t", "-z", "--full-tree", rev)
    entries = {}
    for item in out.split("\0"):
        if item:
            meta, _, name = item.partition("\t")
            mode, _kind, oid = meta.split()
            entries[name] = (mode, oid)
    return entries


def fsck_warnings(path: Path) -> str:
    proc = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path,
                          capture_output=True, text=True, check=False)
    return proc.stderr + proc.stdout


# -- finding the repository ----------------------------------------------------------------------


def test_finds_the_repository_from_a_subdirectory_and_a_file(repo_dir):
    for start in (repo_dir, repo_dir / "utils", repo_dir / "utils" / "capture_output.py"):
        with GitRepo(start) as repo:
            assert repo.git_dir == repo_dir / ".git"
            assert repo.common_dir == repo_dir / ".git"
            assert not repo.bare
            assert repo.rev_parse("main") == head(repo_dir)


def test_finds_a_bare_repository_and_a_linked_worktree(repo_dir, tmp_path):
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo_dir), str(bare))
    with GitRepo(bare) as repo:
        assert repo.bare and repo.git_dir == bare and repo.common_dir == bare
        assert repo.snapshot().branch("main") == head(repo_dir)

    linked = tmp_path / "linked"
    git(repo_dir, "worktree", "add", "-q", "-b", "side", str(linked))
    with GitRepo(linked / "utils") as repo:
        assert repo.git_dir == repo_dir / ".git" / "worktrees" / "linked"
        assert repo.common_dir == repo_dir / ".git"
        assert not repo.bare
        assert repo.checked_out_branches() == {"main", "side"}
        assert repo.current_branch() == "side"


def test_outside_a_repository_is_an_error_with_a_hint(tmp_path):
    with pytest.raises(GitError, match="not inside a git repository") as caught:
        GitRepo(tmp_path)
    assert caught.value.hint and "--repo" in caught.value.hint
    with pytest.raises(GitError, match="does not exist"):
        GitRepo(tmp_path / "missing")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository away")
def test_a_repository_of_another_user_says_how_to_trust_it(repo_dir):
    subprocess.run(["chown", "-R", "nobody", str(repo_dir)], check=True)
    repo = GitRepo(repo_dir)
    with pytest.raises(GitError, match="dubious ownership") as caught:
        repo.snapshot()
    assert caught.value.hint and "safe.directory" in caught.value.hint


def test_a_hooks_git_variables_never_redirect_commands(repo_dir, tmp_path, monkeypatch):
    """A git hook exports GIT_DIR, GIT_WORK_TREE and GIT_INDEX_FILE of its own repository."""
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo_dir), str(other))
    git(other, "switch", "-q", "-c", "elsewhere")
    git(other, "commit", "-q", "--allow-empty", "-m", "other's own commit")
    ours, theirs = head(repo_dir), head(other)
    assert ours != theirs
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    repo = GitRepo(repo_dir / "utils")
    assert repo.git_dir == repo_dir / ".git" and repo.work_tree == repo_dir
    assert repo.rev_parse("HEAD") == ours
    assert repo.current_branch() == "main"
    assert repo.checked_out_branches() == {"main"}
    assert repo.update_refs([("refs/heads/made", ours, ZERO_OID)], "here")
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_WORK_TREE")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert head(repo_dir, "made") == ours
    assert git(other, "branch", "--list", "made") == ""


# -- exact bytes in and out --------------------------------------------------------------------


def test_blobs_and_messages_keep_every_byte(repo_dir):
    repo = GitRepo(repo_dir)
    data = b"line\r\n\x00binary\xff\n\n\n"
    blob = repo.write_blob(data)
    assert repo.read_blob_bytes(blob) == data
    assert repo.read_objects([blob, "f" * 40, blob]) == {blob: data}
    assert repo.read_blobs([blob])[blob] == data.decode("utf-8", "replace")

    message = "# not a comment\n\nbody  \n\nSymergion-Model: alpha\n\n"
    tree = repo.tree_with_file(head(repo_dir), "x.py", blob)
    commit = repo.commit_tree(tree, [head(repo_dir)], message, author="alpha",
                              email="alpha@symergion.invalid")
    assert repo.commit_message(commit) == message + "\n"  # log --format=%B adds one newline
    raw = git(repo_dir, "cat-file", "commit", commit)
    assert raw.endswith("\n\n" + message)
    assert "author alpha <alpha@symergion.invalid>" in raw


def test_a_failing_command_is_a_git_error_with_a_hint(repo_dir):
    repo = GitRepo(repo_dir)
    with pytest.raises(GitError) as caught:
        repo.read_blob_bytes("e" * 40)
    assert "git cat-file failed" in caught.value.message
    assert caught.value.hint and "git fsck" in caught.value.hint


# -- compare-and-swap ----------------------------------------------------------------------------


def test_compare_and_swap_moves_all_refs_or_none(repo_dir):
    repo = GitRepo(repo_dir)
    main = head(repo_dir)
    other = git(repo_dir, "commit-tree", f"{main}^{{tree}}", "-p", main, "-m", "x").strip()
    assert repo.update_refs([("refs/heads/a", main, ZERO_OID)], "create")
    assert not repo.update_refs([("refs/heads/a", other, ZERO_OID)], "must not exist")
    # One stale old value fails the whole transaction: b is not created.
    assert not repo.update_refs([("refs/heads/b", main, ZERO_OID), ("refs/heads/a", other, other)],
                                "stale")
    assert git(repo_dir, "branch", "--list", "b") == ""
    assert repo.update_refs([("refs/heads/a", other, main)], "move")
    assert repo.update_refs([("refs/heads/a", ZERO_OID, other)], "delete")
    assert git(repo_dir, "branch", "--list", "a") == ""


def git_speaks(language: str) -> bool:
    """Return whether this git has translations for ``language`` (LANGUAGE works in C.UTF-8)."""
    env = {**os.environ, "LANGUAGE": language, "LANG": "C.UTF-8"}
    env.pop("LC_ALL", None)
    proc = subprocess.run(["git", "rev-parse", "--verify", "no-such-ref"], env=env,
                          capture_output=True, text=True, check=False)
    return not proc.stderr.startswith("fatal:")


@pytest.fixture
def german_git(monkeypatch):
    if not git_speaks("de"):
        pytest.skip("git has no German translation installed")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)


def test_a_lost_race_under_a_translated_git_is_still_a_lost_race(repo_dir, german_git):
    repo = GitRepo(repo_dir)
    main = head(repo_dir)
    assert not repo.update_refs([("refs/heads/main", main, "1" * 40)], "stale")
    assert not repo.update_refs([("refs/heads/main", main, ZERO_OID)], "exists")


def test_a_stale_lock_under_a_translated_git_is_an_error_not_a_lost_race(repo_dir, german_git):
    """A lost race is retried by re-planning; a stale lock must stop with its fix instead."""
    repo = GitRepo(repo_dir)
    main = head(repo_dir)
    lock = repo_dir / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    with pytest.raises(GitError) as caught:
        repo.update_refs([("refs/heads/main", main, main)], "locked")
    assert str(lock) in caught.value.message
    assert caught.value.hint and f"delete {lock}" in caught.value.hint


def test_a_ref_in_the_way_under_a_translated_git_is_an_error(repo_dir, german_git):
    repo = GitRepo(repo_dir)
    with pytest.raises(GitError) as caught:
        repo.update_refs([("refs/heads/main/x", head(repo_dir), ZERO_OID)], "d/f")
    assert caught.value.hint == "rename or delete the ref that is in the way"


def test_git_runs_with_the_c_locale_as_a_hook_sees_it(repo_dir, german_git):
    hook = repo_dir / ".git" / "hooks" / "reference-transaction"
    seen = repo_dir.parent / "hook-env.json"
    hook.write_text("#!/bin/sh\n"
                    f"[ \"$1\" = committed ] && python3 -c 'import json, os; "
                    f"json.dump(dict(os.environ), open(\"{seen}\", \"w\"))'\n"
                    "exit 0\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    repo = GitRepo(repo_dir)
    assert repo.update_refs([("refs/heads/seen", head(repo_dir), ZERO_OID)], "observe")
    env = json.loads(seen.read_text())
    assert env["LC_ALL"] == "C"
    assert env.get("LANGUAGE", "C") == "C"  # gettext ignores it under LC_ALL=C anyway


# -- notes -------------------------------------------------------------------------------------


def test_merged_notes_keep_each_notes_lines_in_order(repo_dir, tmp_path):
    """Two clones add a multi-line note on the same commit; sync merges both, in order."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo_dir), str(remote))
    mine, mate = tmp_path / "mine", tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(remote), str(mine))
    git(tmp_path, "clone", "-q", str(remote), str(mate))
    theirs = ("task_branch: TestCase_b, Use setUp method\n"
              "task_branch: TestCase_a, Test errors too\nand close files\n")
    ours = "Name tests after behaviour\nAssert messages too\n"
    git(mate, "notes", "add", "-m", theirs.rstrip("\n"), "main")
    git(mate, "push", "-q", "origin", "refs/notes/commits")
    git(mine, "notes", "add", "-m", ours.rstrip("\n"), "main")

    repo = GitRepo(mine)
    fetched = repo.fetch("origin", repo.notes_ref())
    assert fetched == head(mate, "refs/notes/commits")
    repo.merge_notes(fetched)
    assert git(mine, "notes", "show", "main") == ours + "\n" + theirs
    # Merged again (a second sync): nothing changes.
    before = head(mine, "refs/notes/commits")
    repo.merge_notes(repo.fetch("origin", repo.notes_ref()))
    assert head(mine, "refs/notes/commits") == before


# -- trees -------------------------------------------------------------------------------------


def commit_entry(path: Path, mode: str, name: str, oid: str) -> str:
    """Commit ``name`` with ``mode`` on top of main with plumbing; return the commit."""
    main = head(path)
    git(path, "read-tree", main)
    git(path, "update-index", "--add", "--cacheinfo", f"{mode},{oid},{name}")
    tree = git(path, "write-tree").strip()
    git(path, "read-tree", main)
    return git(path, "commit-tree", tree, "-p", main, "-m", f"add {name}").strip()


def test_an_executable_file_stays_executable(repo_dir):
    repo = GitRepo(repo_dir)
    old = repo.write_blob(b"#!/bin/sh\n")
    base = commit_entry(repo_dir, "100755", "bin/run", old)
    new = repo.write_blob(b"#!/bin/sh\necho hi\n")
    assert ls_tree(repo_dir, repo.tree_with_file(base, "bin/run", new))["bin/run"] == ("100755",
                                                                                       new)
    assert ls_tree(repo_dir, repo.tree_with_file(base, "README.md", new))["README.md"][0] == \
        "100644"
    assert ls_tree(repo_dir, repo.tree_with_file(base, "bin/new", new))["bin/new"][0] == "100644"
    forced = repo.tree_with_file(base, "bin/run", new, mode="100644")
    assert ls_tree(repo_dir, forced)["bin/run"] == ("100644", new)
    tree = ls_tree(repo_dir, repo.tree_with_file(base, "utils/deep/x.py", new))
    assert tree["utils/deep/x.py"] == ("100644", new)
    assert tree["utils/capture_output.py"] == ls_tree(repo_dir, base)["utils/capture_output.py"]
    with pytest.raises(ValueError):
        repo.tree_with_file(base, "bin/run", new, mode="120000")


def test_an_executable_destination_keeps_its_mode_through_a_sync(repo_dir, make_reconciler):
    (repo_dir / "test_capture_output.py").write_text("import unittest\n")
    git(repo_dir, "add", "--chmod=+x", "test_capture_output.py")
    git(repo_dir, "commit", "-q", "-m", "executable test file")
    start_task_with_git(repo_dir)
    make_reconciler(repo_dir, make_config(("alpha",))).sync()
    mode, _ = ls_tree(repo_dir, f"alpha_{TASK}")["test_capture_output.py"]
    assert mode == "100755"


@pytest.mark.parametrize("mode, kind", [("120000", "a symlink"), ("160000", "a submodule")])
def test_a_symlink_or_submodule_is_never_overwritten(repo_dir, mode, kind):
    repo = GitRepo(repo_dir)
    oid = repo.write_blob(b"utils/capture_output.py") if mode == "120000" else head(repo_dir)
    base = commit_entry(repo_dir, mode, "link.py", oid)
    with pytest.raises(GitError, match=kind):
        repo.tree_with_file(base, "link.py", repo.write_blob(b"x = 1\n"))
    with pytest.raises(GitError, match=f"'link.py' is {kind}, not a directory"):
        repo.tree_with_file(base, "link.py/inner.py", repo.write_blob(b"x = 1\n"))


def test_a_directory_or_a_file_in_the_way_is_refused(repo_dir):
    repo = GitRepo(repo_dir)
    blob = repo.write_blob(b"x = 1\n")
    with pytest.raises(GitError, match="a directory"):
        repo.tree_with_file(head(repo_dir), "utils", blob)
    with pytest.raises(GitError, match="not a directory"):
        repo.tree_with_file(head(repo_dir), "README.md/x.py", blob)


@pytest.mark.parametrize("path", ["./test_x.py", "tests/./x.py", "tests//x.py", "tests/",
                                  "/test_x.py", "../x.py", "a/../x.py", ".", "",
                                  ".git/hooks/x", "a/.GIT/x"])
def test_no_tree_entry_is_ever_named_dot_dotdot_empty_or_git(repo_dir, path):
    repo = GitRepo(repo_dir)
    blob = repo.write_blob(b"x = 1\n")
    with pytest.raises(GitError, match="not a file or directory name") as caught:
        repo.tree_with_file(head(repo_dir), path, blob)
    assert caught.value.hint
    assert "hasDot" not in fsck_warnings(repo_dir)


def test_a_dot_slash_destination_never_writes_a_dot_entry(repo_dir, make_reconciler):
    start_task_with_git(repo_dir, destination="./test_capture_output.py")
    make_reconciler(repo_dir, make_config(("alpha",))).sync()
    for ref in git(repo_dir, "for-each-ref", "--format=%(refname)", "refs/heads").split():
        names = [name.split("/") for name in ls_tree(repo_dir, ref)]
        assert not any(part in (".", "..", "") for parts in names for part in parts), ref
    warnings = fsck_warnings(repo_dir)
    assert "hasDot" not in warnings and "hasEmptyName" not in warnings


# -- transfer progress -------------------------------------------------------------------------


def test_fetch_and_push_report_progress(repo_dir, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo_dir), str(remote))
    mine = tmp_path / "mine"
    git(tmp_path, "clone", "-q", str(remote), str(mine))
    for i in range(3):
        (repo_dir / f"f{i}.py").write_text(f"x = {i}\n" * 50)
        git(repo_dir, "add", ".")
        git(repo_dir, "commit", "-q", "-m", f"commit {i}")
    git(repo_dir, "push", "-q", str(remote), "main")

    repo = GitRepo(mine)
    seen: list[TransferProgress] = []
    assert repo.fetch("origin", repo.notes_ref(), progress=seen.append) == ""
    assert git(mine, "rev-parse", "origin/main").strip() == head(repo_dir)
    assert seen and all(p.remote == "origin" for p in seen)
    assert any(p.finished for p in seen)
    assert {p.operation for p in seen} & {"Counting objects", "Receiving objects",
                                          "Unpacking objects", "Enumerating objects"}

    git(mine, "commit", "-q", "--allow-empty", "-m", "mine")
    pushed: list[TransferProgress] = []
    assert repo.push("origin", ["refs/heads/main:refs/heads/mine"], progress=pushed.append) == {}
    assert head(remote, "mine") == head(mine)
    assert any(p.operation == "Writing objects" and p.finished for p in pushed)
    # Without a callback nothing is asked of git's progress, and the result is the same.
    git(mine, "commit", "-q", "--allow-empty", "-m", "again")
    assert repo.push("origin", ["refs/heads/main:refs/heads/mine"]) == {}
    assert head(remote, "mine") == head(mine)


def test_a_failing_progress_callback_still_lets_git_finish(repo_dir, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo_dir), str(remote))
    git(repo_dir, "remote", "add", "origin", str(remote))
    git(repo_dir, "commit", "-q", "--allow-empty", "-m", "new")

    def broken(update: TransferProgress) -> None:
        raise RuntimeError("renderer broke")

    repo = GitRepo(repo_dir)
    with pytest.raises(RuntimeError, match="renderer broke"):
        repo.push("origin", ["refs/heads/main:refs/heads/main"], progress=broken)
    assert head(remote, "main") == head(repo_dir), "git finished the push"


def test_an_unreachable_remote_names_git_s_reason(repo_dir, tmp_path):
    git(repo_dir, "remote", "add", "gone", str(tmp_path / "nowhere.git"))
    repo = GitRepo(repo_dir)
    with pytest.raises(GitError, match="cannot fetch from gone: fatal:") as caught:
        repo.fetch("gone", repo.notes_ref(), progress=lambda p: None)
    assert "git remote -v" in (caught.value.hint or "")


def test_progress_lines_are_parsed_as_git_writes_them():
    assert parse_progress("o", "Receiving objects:  45% (9/20), 1.20 MiB | 3.00 MiB/s") == \
        TransferProgress("o", "Receiving objects", 9, 20, False)
    assert parse_progress("o", "remote: Enumerating objects: 5, done.        ") == \
        TransferProgress("o", "Enumerating objects", 5, None, True)
    assert parse_progress("o", "Writing objects: 100% (3/3), 260 bytes | 260.00 KiB/s, done.") \
        == TransferProgress("o", "Writing objects", 3, 3, True)
    for line in ("Total 3 (delta 0), reused 0 (delta 0)", "To /tmp/remote.git",
                 "fatal: unable to access", "Delta compression using up to 2 threads"):
        assert parse_progress("o", line) is None


# -- GitPython stays off the fast paths ----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_help_and_imports_do_not_load_gitpython():
    proc = run_python(
        "import sys\n"
        "import symergion.gitrepo, symergion.app.service, symergion.app.watch, symergion.core.execute\n"
        "from symergion.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('GITPYTHON', 'git' in sys.modules)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "GITPYTHON False" in proc.stdout


def test_without_git_on_path_the_error_says_to_install_it(repo_dir):
    proc = run_python(
        "from symergion.errors import GitError\n"
        "from symergion.gitrepo import GitRepo\n"
        "try:\n"
        f"    GitRepo({str(repo_dir)!r})\n"
        "except GitError as exc:\n"
        "    print('HINT', exc.hint)\n",
        PATH=str(repo_dir / "no-bin"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "HINT install git and put it on PATH" in proc.stdout


# -- git outside a GitRepo -----------------------------------------------------------------------


def test_run_git_runs_in_its_directory_and_returns_a_failure_without_raising(repo_dir, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("LC_ALL", "C")  # it runs in the caller's locale; the message is matched
    done = run_git("rev-parse", "HEAD", cwd=repo_dir)
    assert done.returncode == 0
    assert done.stdout.strip() == head(repo_dir)

    outside = tmp_path / "outside"
    outside.mkdir()
    failed = run_git("rev-parse", "HEAD", cwd=outside)
    assert failed.returncode != 0
    assert "not a git repository" in failed.stderr

    assert run_git("--version").stdout.startswith("git version")


def test_run_git_without_git_on_path_raises_oserror(repo_dir, monkeypatch):
    monkeypatch.setenv("PATH", str(repo_dir / "no-bin"))
    with pytest.raises(OSError):
        run_git("--version")
