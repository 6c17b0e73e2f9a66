"""Point 5: every bad input through the CLI, in one table: input -> exit code -> message -> nothing
changed (refs, work tree, index, HEAD), and the good task of the same pass is still generated."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from symergion.gitrepo import MAX_FILE_BYTES
from tests.helpers.git import git
from tests.helpers.reliability import CONFIG, all_refs, commit_files, start_task, user_state

GOOD = "TestCase_good"
BAD = "TestCase_bad"
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               "size 12345\n")


@dataclass
class Ctx:
    repo: Path
    tmp: Path
    cfg: Path
    fleet: Any
    monkeypatch: pytest.MonkeyPatch
    main: str = ""


@dataclass
class Row:
    """One bad input: ``setup`` prepares it and returns the CLI arguments to run."""

    id: str
    setup: Callable[[Ctx], list[str]]
    code: int
    fragment: str
    # Models whose branches of the good task the same pass must still create.
    answering: tuple[str, ...] = ("alpha", "beta")
    # Model branches the pass may still create besides the good task's (e.g. another model).
    also_created: set[str] = field(default_factory=set)
    check: Callable[[Ctx], None] | None = None


def bad_task(note: str, files: dict[str, tuple[str, bytes | str]] | None = None,
             branch: str | None = BAD) -> Callable[[Ctx], list[str]]:
    """A task branch at a commit holding ``files``, annotated with ``note``; then sync."""

    def setup(ctx: Ctx) -> list[str]:
        commit = commit_files(ctx.repo, files or {}, message="bad input")
        if branch is not None:
            git(ctx.repo, "update-ref", f"refs/heads/{branch}", commit)
        git(ctx.repo, "notes", "add", "-m", note, commit)
        return ["sync"]

    return setup


def spec(source: str = "utils/capture_output.py", destination: str = "t.py",
         branch: str = BAD) -> str:
    return f"task_branch: {branch}, source: {source}, destination: {destination}"


def command(*args: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: list(args)


def config(raw: Any) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        ctx.cfg.write_text(raw if isinstance(raw, str) else json.dumps(raw))
        return ["sync"]

    return setup


def broken_model(make: Callable[[Path], None]) -> Callable[[Ctx], list[str]]:
    """A second coder, "broken", whose GGUF is made by ``make`` (checked by the real runtime)."""

    def setup(ctx: Ctx) -> list[str]:
        path = ctx.tmp / "models" / "broken.gguf"
        path.parent.mkdir(exist_ok=True)
        make(path)
        ctx.cfg.write_text(json.dumps({"checkpoints": [
            {"name_or_path": "alpha.gguf", "trait": "coding"},
            {"name_or_path": str(path), "trait": "coding"}]}))
        ctx.fleet.only = {"alpha"}
        return ["sync"]

    return setup


def truncated_gguf(path: Path) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((64, 256), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def tiny_context(ctx: Ctx) -> list[str]:
    ctx.fleet.n_ctx["beta"] = 64
    return ["sync"]


def unusable_cache(ctx: Ctx) -> list[str]:
    blocker = ctx.tmp / "not-a-dir"
    blocker.write_text("a file where the cache directory should be\n")
    ctx.monkeypatch.setenv("SYMERGION_CACHE_DIR", str(blocker / "sub"))
    return ["sync"]


def corrupt_cache(ctx: Ctx) -> list[str]:
    store = Path(os.environ["SYMERGION_CACHE_DIR"]) / "responses"
    store.mkdir(parents=True)
    (store / "cache.db").write_bytes(b"this is not a sqlite database\n" * 100)
    return ["sync"]


def corrupt_cache_moved_aside(ctx: Ctx) -> None:
    cache = Path(os.environ["SYMERGION_CACHE_DIR"])
    [aside] = [p for p in cache.iterdir() if p.name.startswith("responses.corrupt-")]
    assert (aside / "cache.db").read_bytes().startswith(b"this is not a sqlite database")
    assert (cache / "responses" / "cache.db").exists()


def df_conflict(ctx: Ctx) -> list[str]:
    git(ctx.repo, "branch", f"alpha_{BAD}/old", "main")
    return bad_task(spec())(ctx)


MIB = 1024 * 1024
ROWS = [
    # paths in the note
    Row("source-traversal", bad_task(spec(source="../secret.py")), 4,
        "source '../secret.py' is not a path inside the repository"),
    Row("destination-absolute", bad_task(spec(destination="/tmp/evil.py")), 4,
        "destination '/tmp/evil.py' is not a path inside the repository"),
    Row("destination-in-.git", bad_task(spec(destination=".git/hooks/pre-commit")), 4,
        "destination '.git/hooks/pre-commit' is not a path inside the repository"),
    Row("source-in-nested-.GIT", bad_task(spec(source="utils/.GIT/config")), 4,
        "source 'utils/.GIT/config' is not a path inside the repository"),
    Row("start-destination-in-.git", command(
        "ergon", "start", BAD, "-s", "utils/capture_output.py", "-d", ".git/config"), 1,
        "destination '.git/config' is not a path inside the repository"),
    Row("start-source-absolute", command(
        "ergon", "start", BAD, "-s", "/etc/passwd", "-d", "t.py"), 1,
        "source '/etc/passwd' is not a path inside the repository"),
    # what the paths point at
    Row("source-symlink", bad_task(spec(source="link.py"), {
        "link.py": ("120000", "utils/capture_output.py")}), 4, "source 'link.py' is a symlink"),
    Row("destination-symlink", bad_task(spec(destination="t.py"), {
        "t.py": ("120000", "/etc/passwd")}), 4, "destination 't.py' is a symlink"),
    Row("source-through-symlinked-dir", bad_task(spec(source="lnk/capture_output.py"), {
        "lnk": ("120000", "utils")}), 4, "goes through 'lnk', which is not a directory"),
    Row("destination-through-file", bad_task(spec(destination="README.md/t.py")), 4,
        "goes through 'README.md', which is not a directory"),
    Row("source-submodule", bad_task(spec(source="sub"), {
        "sub": ("160000", "1" * 40)}), 4, "source 'sub' is a submodule"),
    Row("source-directory", bad_task(spec(source="utils")), 4, "source 'utils' is a directory"),
    Row("destination-directory", bad_task(spec(destination="utils")), 4,
        "destination 'utils' is a directory"),
    Row("source-missing", bad_task(spec(source="nope.py")), 4,
        "source 'nope.py' does not exist on the task branch"),
    Row("source-binary", bad_task(spec(source="blob.py"), {
        "blob.py": ("100644", b"\x7fELF\x00\x01\x02")}), 4, "source 'blob.py' is a binary file"),
    Row("source-not-utf8", bad_task(spec(source="latin.py"), {
        "latin.py": ("100644", "caf\u00e9 = 1\n".encode("latin-1"))}), 4,
        "source 'latin.py' is not UTF-8 text"),
    Row("source-oversized", bad_task(spec(source="big.py"), {
        "big.py": ("100644", b"x = 1\n" * (MIB // 6 + 1))}), 4,
        f"over the {MAX_FILE_BYTES}-byte limit"),
    # notes
    Row("unknown-template", bad_task(spec(branch="Feature_x"), branch="Feature_x"), 4,
        "task branch 'Feature_x' matches no template (TestCase, PyTest)"),
    Row("malformed-note-no-destination", bad_task(
        f"task_branch: {BAD}, source: utils/capture_output.py, destnation: t.py"), 4,
        f"the note on task branch '{BAD}' names no destination"),
    Row("spec-without-task-branch", bad_task(
        "source: utils/capture_output.py, destination: t.py", branch=None), 4,
        "looks like a task spec but names no task_branch"),
    # branch names
    Row("note-names-invalid-branch", bad_task(spec(branch="TestCase_a..b"), branch=None), 4,
        "git rejects the branch name 'TestCase_a..b'"),
    Row("start-invalid-branch", command(
        "ergon", "start", "TestCase_x.lock", "-s", "utils/capture_output.py", "-d", "t.py"), 1,
        "git rejects the branch name 'TestCase_x.lock'"),
    Row("model-branch-name-taken-by-a-directory", df_conflict, 4,
        f"'refs/heads/alpha_{BAD}/old' exists; cannot create 'refs/heads/alpha_{BAD}'",
        also_created={f"beta_{BAD}"}),
    # model files (the real runtime checks them; only alpha is fake)
    Row("model-missing", broken_model(lambda p: None), 4,
        "broken.gguf does not exist", answering=("alpha",)),
    Row("model-not-gguf", broken_model(lambda p: p.write_text("{}\n")), 4,
        "broken.gguf is not a GGUF file", answering=("alpha",)),
    Row("model-lfs-pointer", broken_model(lambda p: p.write_text(LFS_POINTER)), 4,
        "broken.gguf is a Git LFS pointer, not the model itself", answering=("alpha",)),
    Row("model-truncated", broken_model(truncated_gguf), 4,
        "broken.gguf cannot be read as GGUF: it is truncated", answering=("alpha",)),
    Row("model-empty", broken_model(lambda p: p.write_bytes(b"")), 4,
        "broken.gguf is not a GGUF file (an empty file)", answering=("alpha",)),
    Row("prompt-longer-than-context", tiny_context, 4,
        "fills the 64-token context of beta", answering=("alpha",)),
    # config
    Row("config-json-syntax", config('{"checkpoints": [}'), 1, "invalid JSON"),
    Row("config-missing-field", config({"checkpoints": [{"trait": "coding"}]}), 1,
        "checkpoints[0].name_or_path: expected a non-empty string, got null"),
    Row("config-wrong-type", config({**CONFIG, "ntokens": "many"}), 1,
        'ntokens: expected an integer, got "many"'),
    Row("config-unknown-field", config({**CONFIG, "ntoken": 5}), 1, "ntoken: unknown field"),
    # cache
    Row("cache-dir-unusable", unusable_cache, 1, "cannot create the cache directory"),
    Row("cache-corrupt", corrupt_cache, 0, "the response cache was corrupt: moved it aside",
        check=corrupt_cache_moved_aside),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, repo_dir, tmp_path, cfg, cli, fake_runtime, monkeypatch):
    start_task(repo_dir, GOOD, destination="t_good.py")
    ctx = Ctx(repo_dir, tmp_path, cfg, fake_runtime, monkeypatch)
    args = row.setup(ctx)
    refs, before = all_refs(repo_dir), user_state(repo_dir)

    result = cli(*args, "--repo", repo_dir, "--config", ctx.cfg)

    assert result.code == row.code, result.err
    assert row.fragment in result.err, result.err
    assert user_state(repo_dir) == before
    after = all_refs(repo_dir)
    moved = {r for r in set(refs) | set(after) if refs.get(r) != after.get(r)}
    extra = {f"refs/heads/{b}" for b in row.also_created}
    extra |= {f"refs/symergion/tasks/{b.split('_', 1)[1]}/{b.split('_', 1)[0]}"
              for b in row.also_created}
    if row.code == 1:
        assert moved == set(), "a refused command changes nothing"
    else:
        # The pass did everything else: the good task, for every model that could answer.
        expected = {f"refs/heads/{m}_{GOOD}" for m in row.answering}
        expected |= {f"refs/symergion/tasks/{GOOD}/{m}" for m in row.answering}
        assert moved == expected | extra, result.err
    if row.check is not None:
        row.check(ctx)
