"""Guided generation and the repairs on the real embedded model, in the real sandbox."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from symergion.config.sampling import Sampling
from symergion.config.schema import VerifySpec
from symergion.core import prompt as prompts
from symergion.engine.llama import LlamaEngine
from symergion.gitrepo import GitRepo
from symergion.verify import examples, guide
from symergion.verify.candidate import verify_candidate
from symergion.verify.names import imports_module
from symergion.verify.prune import prune_candidate
from symergion.verify.repair import repair_candidate
from symergion.verify.result import VerifyResult
from symergion.verify.sandbox import Sandbox
from tests.helpers.git import git
from tests.helpers.verify import commit_files, needs_bwrap

SOURCE = '''"""Small helpers for numbers."""


def double(x):
    return x * 2


def clip(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value
'''


FILES = '''"""What a folder of text files holds."""
import os


def count_lines(filename):
    with open(filename) as handle:
        return sum(1 for _ in handle)


def largest(directory):
    sizes = {name: os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)}
    return max(sizes, key=sizes.get) if sizes else None
'''


def guided_and_checked(gguf_path: Path, tmp_path: Path, source: str, code: str
                       ) -> tuple[guide.Guided, VerifyResult]:
    """Write a guided test file with the real model, then repair and prune it as the pass does."""
    destination = f"test_{examples.module_alias(source)}.py"
    files = [*examples.few_shot_files(source, destination), (source, code)]
    starter = examples.test_case_starter(source, destination)
    prompt = prompts.render(files, [prompts.call_to_action("Create unittest TestCase", code)], [], starter)
    engine = LlamaEngine(gguf_path, model_name="gemma3-270m", n_threads=2, n_ctx=4096, sampling=Sampling())
    try:
        def generate(text: str, max_tokens: int, stable_prefix: int) -> Iterable[str]:
            return engine.generate(text, max_tokens=max_tokens, stable_prefix=stable_prefix)

        done = guide.guided_file(generate,
                                 guide.GuidedTask(prompt.text, starter, code, examples.module_alias(source),
                                                  destination),
                                 guide.GuideOptions(budget=300))
    finally:
        engine.close()
    ast.parse(done.text)
    assert 0 < done.tokens <= 300
    assert imports_module(done.text, source[:-3].replace("/", "."))
    repo_path = tmp_path / "repo"
    repo_path.mkdir()
    git(repo_path, "init", "-q", "-b", "main")
    commit = commit_files(repo_path, {source: code, destination: done.text})
    repo, spec, sandbox = GitRepo(repo_path), VerifySpec(coverage=True, runs=1), Sandbox(mode="bwrap")
    first = verify_candidate(repo, commit, spec, source, destination, sandbox=sandbox)
    repaired = repair_candidate(repo, commit, spec, source, destination, first, sandbox=sandbox)
    result = repaired.rerun or first
    if repaired.changed:  # the repair is committed on top, as the pass does
        commit = commit_files(repo_path, {destination: repaired.text}, repaired.commit_message())
    if not result.ok:
        pruned = prune_candidate(repo, commit, spec, source, destination, result, sandbox=sandbox)
        assert pruned.rerun is not None
        result = pruned.rerun
    return replace(done, text=repaired.text if repaired.changed else done.text), result


@needs_bwrap
def test_the_model_writes_one_test_per_function_and_the_repairs_make_them_pass(
        gguf_path: Path, tmp_path: Path) -> None:
    done, result = guided_and_checked(gguf_path, tmp_path, "lib/numbers_util.py", SOURCE)
    assert done.tested == ["double", "clip"]
    # Whatever the model's expected values were, what is left passes and runs the module.
    assert result.ok and result.imports_source and result.exercising
    assert result.tested_coverage(strict=True) > 0


@needs_bwrap
def test_tests_of_a_module_that_reads_files_run_it_on_the_fixture(gguf_path: Path, tmp_path: Path) -> None:
    done, result = guided_and_checked(gguf_path, tmp_path, "lib/folder_stats.py", FILES)
    assert done.tested == ["count_lines", "largest"]
    assert "        filename = self.path\n" in done.text and "        directory = self.folder\n" in done.text
    # Both calls ran on a file and a folder that exist: nothing is left expecting an error, and
    # every line of both functions ran.
    assert "assertRaises" not in done.text
    assert result.ok and result.exercising == 2 and result.tested_coverage() == 100.0
