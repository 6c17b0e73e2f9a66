"""End-to-end benchmark of the workflow: `sync` wall time for initial, feedback and revoke rounds.

Each round runs `symergion sync --json` as a new process, the way cron, CI or a person runs it,
on a scratch repository with a fresh cache, so the figures include interpreter start-up, model
loading, the KV prefix restored from disk, and the response cache.

    python -m symergion.bench.sync --model PATH.gguf --repeats 3 --out bench-results/sync.json

``--tasks N`` measures instead a cold sync of N tasks on N different sources against a cold
sync of one task, paired in each repeat: the N branches of one model decode in one batch.
These syncs use the built-in template without its ``verify`` section, so that they measure
generation (prompts, decoding, commits) and not the running of the generated tests.

``--modules bisect,colorsys,stat,nturl2path`` plays a new user's first sync instead: one task
per copy of those standard library modules, with the template in the original format (code
starter ``import unittest``, no guided generation, no verify), once all in one cold sync and
once one task per cold sync; it reports each branch's stop, its published lines, and the
tokens spent on text that was trimmed away (degenerate runs), and the batching gain of the
whole sync. ``--code DIR`` runs the syncs with another checkout's ``symergion`` (before/after).
``--checked`` measures the first checked sync with the default config (guided writing,
verification, prune, repair) of a 60-line module (a copy of the standard library's
``bisect.py``) and of the demo's source: the wall time, where it went (``sync --json``'s
``spend``) and the pipeline's efficiency, (prompt tokens / the engine's prompt speed + decoded
tokens / its generation speed) / wall, with both speeds measured on this machine just before
each sync.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from symergion.app.demo import SOURCE
from symergion.config.environment import cache_dir
from symergion.config.schema import DEFAULT_CONFIG
from symergion.engine.extra_buffers import CACHE_FILE
from symergion.gitrepo import run_git
from symergion.trailers import TRIMMED, Trailers, parse_trailers

TASK = "TestCase_capture_output"
PROBE = (
    "import sys, time\n"
    "from symergion.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "sys.stderr.write('LLAMA_IMPORTED=%s\\n' % ('llama_cpp' in sys.modules))\n"
    "sys.exit(code)\n"
)


def fresh_cache(directory: Path) -> Path:
    """Create an empty cache in ``directory`` that keeps only the machine's extra-buffer verdict.

    The verdict is a fact about the CPU, not cached work: without it every round would pay the
    probe again, and a run that simulates an Intel AMX machine would lose its simulated crash.
    """
    directory.mkdir(parents=True, exist_ok=True)
    verdicts = cache_dir() / CACHE_FILE
    if verdicts.is_file():
        shutil.copyfile(verdicts, directory / CACHE_FILE)
    return directory


_IDENTITY = ("-c", "user.name=bench", "-c", "user.email=bench@example.invalid")  # for a bare machine


def _git(repo: Path, *args: str) -> str:
    proc = run_git(*_IDENTITY, *args, cwd=repo)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def _cli(repo: Path, config: Path, env: dict[str, str], *args: str) -> tuple[float, dict[str, Any],
                                                                           bool]:
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args, "--repo", str(repo), "--config", str(config),
         "--json", "--quiet"],
        capture_output=True, text=True, env=env, check=False,
    )
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"symergion {' '.join(args)} failed: {proc.stderr}")
    return seconds, json.loads(proc.stdout), "LLAMA_IMPORTED=True" in proc.stderr


def _round(repo: Path, config: Path, env: dict[str, str], name: str, *args: str
           ) -> dict[str, Any]:
    seconds, report, imported = _cli(repo, config, env, *args)
    results = report["results"]
    row: dict[str, Any] = {"round": name, "seconds": round(seconds, 3),
                           "llama_cpp_imported": imported}
    if results:
        r = results[0]
        row.update({"status": r["status"], "cache": r["cache"], "tokens": r["tokens"],
                    "stop": r["stop"]})
        trimmed = parse_trailers(_git(repo, "log", "-1", "--format=%B", r["branch"])).get(TRIMMED)
        if trimmed is not None:
            row["trimmed"] = trimmed
    return row


def run_once(model: Path, threads: int, workdir: Path) -> list[dict[str, Any]]:
    """Play initial, no-op, feedback, revoke and re-feedback rounds on a new repository."""
    repo, config, env = _new_repo(model, threads, workdir)
    (repo / "utils").mkdir()
    (repo / "utils" / "capture_output.py").write_text(SOURCE)
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "init")
    branch = f"gemma3-270m_{TASK}"
    rows = [_round(repo, config, env, "initial (cold)", "ergon", "start", TASK, "--source",
                   "utils/capture_output.py", "--destination", "test_capture_output.py")]
    rows.append(_round(repo, config, env, "no-op sync", "sync"))
    rows.append(_round(repo, config, env, "feedback", "feedback", "Use setUp method",
                       "--branch", branch))
    rows.append(_round(repo, config, env, "revoke (cached)", "revoke", "--branch", branch))
    rows.append(_round(repo, config, env, "feedback again (cached)", "feedback",
                       "Use setUp method", "--branch", branch))
    return rows


def _new_repo(model: Path, threads: int, workdir: Path, *, verify: bool = True,
              original: bool = False, code: Path | None = None
              ) -> tuple[Path, Path, dict[str, str]]:
    repo = workdir / "repo"
    repo.mkdir(parents=True)
    env = dict(os.environ)
    env.update({"SYMERGION_CACHE_DIR": str(fresh_cache(workdir / "cache")), "GIT_AUTHOR_NAME": "bench",
                "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_NAME": "bench",
                "GIT_COMMITTER_EMAIL": "bench@example.invalid"})
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    config = workdir / "config.json"
    settings: dict[str, Any] = {
        "idle_cores": max(0, (os.cpu_count() or 1) - threads),
        "checkpoints": [{"name_or_path": str(model), "name": "gemma3-270m", "trait": "coding"}],
    }
    if not verify:
        # The built-in template without verify (and so without guided generation, which needs
        # it): the sync completes the file freely and commits it.
        templates = copy.deepcopy(DEFAULT_CONFIG["templates"])
        for template in templates.values():
            template.pop("verify", None)
            template.pop("guided", None)
        if original:
            # The original SymErgion format: a code starter without placeholders.
            templates["TestCase"]["code_starter"] = "import unittest\n"
        settings["templates"] = templates
    config.write_text(json.dumps(settings))
    _git(repo, "init", "-q", "-b", "main")
    return repo, config, env


def cold_tasks(model: Path, threads: int, workdir: Path, count: int) -> dict[str, Any]:
    """Start ``count`` tasks on different sources with plain git; time one cold sync of all."""
    from symergion.bench.measure import source_text

    repo, config, env = _new_repo(model, threads, workdir, verify=False)
    (repo / "utils").mkdir()
    for i in range(count):
        (repo / "utils" / f"helpers_{i}.py").write_text(source_text(3, f"helpers{i}"))
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "init")
    for i in range(count):
        task = f"TestCase_helpers_{i}"
        _git(repo, "branch", task)
        _git(repo, "notes", "append", "-m", f"task_branch: {task}, source: utils/helpers_{i}.py,"
             f" destination: test_helpers_{i}.py", task)
    seconds, report, _ = _cli(repo, config, env, "sync")
    results = report["results"]
    if len(results) != count or any(r["status"] != "created" for r in results):
        raise RuntimeError(f"the cold sync did not create {count} branches: {results}")
    tokens = sum(int(r["tokens"]) for r in results)
    generating = max(float(r["seconds"]) for r in results)
    return {"tasks": count, "seconds": round(seconds, 3), "tokens": tokens,
            "tok_s_wall": round(tokens / seconds, 2),
            "tok_s_generation": round(tokens / generating, 2) if generating else 0.0}


def module_tasks(model: Path, threads: int, workdir: Path, modules: list[str],
                 code: Path | None = None, folder: str = "") -> dict[str, Any]:
    """One cold sync of a task per copy of a standard library module (original format)."""
    import sysconfig

    repo, config, env = _new_repo(model, threads, workdir, verify=False, original=True, code=code)
    (repo / folder).mkdir(parents=True, exist_ok=True)
    for name in modules:
        # The source file, also for modules the interpreter runs frozen (stat).
        original = Path(sysconfig.get_path("stdlib")) / f"{name}.py"
        (repo / folder / f"{name}.py").write_text(original.read_text(encoding="utf-8"))
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "init")
    for name in modules:
        _git(repo, "branch", f"TestCase_{name}")
        source = f"{folder}/{name}.py" if folder else f"{name}.py"
        _git(repo, "notes", "append", "-m", f"task_branch: TestCase_{name}, source: {source},"
             f" destination: test_{name}.py", f"TestCase_{name}")
    seconds, report, _ = _cli(repo, config, env, "sync")
    rows = []
    for r in report["results"]:
        message = _git(repo, "log", "-1", "--format=%B", r["branch"])
        trailers = Trailers.parse(message)
        trimmed_chars = trailers.trimmed.chars if trailers.trimmed is not None else 0
        name = r["task"].removeprefix("TestCase_")
        published = _git(repo, "show", f"{r['branch']}:test_{name}.py")
        generated = len(published) + trimmed_chars - len("import unittest\n")
        tokens = int(r["tokens"])
        rows.append({
            "task": name, "tokens": tokens, "stop": r["stop"],
            "trimmed": parse_trailers(message).get(TRIMMED, ""),
            "published_lines": published.count("\n"),
            # The tokens of the text trimmed away, in proportion to its characters.
            "trimmed_tokens": round(tokens * trimmed_chars / generated) if generated > 0 else 0,
        })
    return {"seconds": round(seconds, 3), "tasks": rows}


def run_modules_bench(model: Path, *, threads: int, repeats: int, modules: list[str],
                      code: Path | None = None, folder: str = "") -> dict[str, Any]:
    """Time all ``modules`` in one cold sync against each in its own, ``repeats`` times."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="symergion-bench-") as tmp:
            together = module_tasks(model, threads, Path(tmp) / "all", modules, code, folder)
            alone = [module_tasks(model, threads, Path(tmp) / name, [name], code, folder)
                     for name in modules]
        runs.append({"together": together, "alone": alone,
                     "alone_seconds": round(sum(a["seconds"] for a in alone), 3),
                     "gain": round(sum(a["seconds"] for a in alone) / together["seconds"], 2)})
    return {"model": str(model), "threads": threads, "repeats": repeats, "modules": modules,
            "folder": folder,
            "code": str(code) if code else "", "runs": runs,
            "gain_median": statistics.median(r["gain"] for r in runs)}


def run_tasks_bench(model: Path, *, threads: int, repeats: int, count: int) -> dict[str, Any]:
    """Pair a cold sync of one task with one of ``count`` tasks, ``repeats`` times."""
    pairs = []
    for _ in range(repeats):
        pair = []
        for n in (1, count):
            with tempfile.TemporaryDirectory(prefix="symergion-bench-") as tmp:
                pair.append(cold_tasks(model, threads, Path(tmp), n))
        pairs.append(pair)

    def median(index: int, key: str) -> float:
        return round(float(statistics.median(p[index][key] for p in pairs)), 2)

    ratios = {key: round(statistics.median(p[1][key] / p[0][key] for p in pairs), 2)
              for key in ("tok_s_wall", "tok_s_generation")}
    return {"model": str(model), "threads": threads, "repeats": repeats, "tasks": count,
            "one": {k: median(0, k) for k in ("seconds", "tokens", "tok_s_wall",
                                              "tok_s_generation")},
            "many": {k: median(1, k) for k in ("seconds", "tokens", "tok_s_wall",
                                               "tok_s_generation")},
            "ratio": ratios, "pairs": pairs}


CHECKED_MODULE = "bisect"  # the standard library's bisect.py: 4 public functions


def engine_speeds(model: Path, threads: int) -> tuple[float, float]:
    """Return this machine's prompt and generation tokens/s now: a 500-token prompt, 64 tokens.

    The model loads in this process (with the machine's extra-buffer decision), as the worker
    of a sync does; the figures are the references of the efficiency.
    """
    from symergion.bench.measure import machine_extra_buffers, source_text
    from symergion.config.sampling import Sampling
    from symergion.engine.llama import LlamaEngine

    engine = LlamaEngine(model, model_name="bench", n_ctx=2048, n_threads=threads,
                         sampling=Sampling(), extra_buffers=machine_extra_buffers(model))
    try:
        prompt = source_text(1, "speeds")
        n = 1
        while engine.count_tokens(prompt) < 500:
            n += 1
            prompt = source_text(n, "speeds")
        for _ in engine.generate(prompt, max_tokens=64):
            pass
        stats = engine.stats
        return (stats.prompt_tokens / stats.prompt_seconds,
                stats.generated_tokens / stats.generation_seconds)
    finally:
        engine.close()


def efficiency(spend: dict[str, Any], wall: float, prompt_speed: float, gen_speed: float) -> float:
    """Return the engine's share of a wall time at its reference speeds (1.0: nothing else)."""
    busy = spend["prompt_tokens"] / prompt_speed + spend["decoded_tokens"] / gen_speed
    return busy / wall if wall else 0.0


def checked_sync(model: Path, threads: int, workdir: Path, name: str, source: str) -> dict[str, Any]:
    """Start a task on ``lib/<name>.py`` and time the first sync with the default config."""
    repo, config, env = _new_repo(model, threads, workdir)
    path = f"lib/{name}.py"
    (repo / "lib").mkdir()
    (repo / path).write_text(source)
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "init")
    task = f"TestCase_{name}"
    _git(repo, "branch", task)
    _git(repo, "notes", "append", "-m",
         f"task_branch: {task}, source: {path}, destination: test_{name}.py", task)
    seconds, report, _ = _cli(repo, config, env, "sync")
    [result] = report["results"]
    if result["status"] not in ("created", "updated"):
        raise RuntimeError(f"the checked sync of {path} did not publish: {result}")
    return {"module": path, "lines": len(source.splitlines()), "seconds": round(seconds, 3),
            "status": result["status"], "verify": result["verify"], "spend": report["spend"]}


def run_checked_bench(model: Path, *, threads: int, repeats: int,
                      module: str = CHECKED_MODULE) -> dict[str, Any]:
    """Time the first checked sync of a standard library module and of the demo, ``repeats`` times.

    Each sync is paired with the engine's speeds measured just before it, so the efficiency of
    every run is taken against the machine as it was in that minute.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = {module: (stdlib / f"{module}.py").read_text(encoding="utf-8"),
               "capture_output": SOURCE}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    for _ in range(repeats):
        for name, text in sources.items():
            prompt_speed, gen_speed = engine_speeds(model, threads)
            with tempfile.TemporaryDirectory(prefix="symergion-bench-") as tmp:
                row = checked_sync(model, threads, Path(tmp), name, text)
            row["prompt_speed"] = round(prompt_speed, 1)
            row["gen_speed"] = round(gen_speed, 1)
            row["efficiency"] = round(efficiency(row["spend"], row["seconds"], prompt_speed,
                                                 gen_speed), 3)
            runs[name].append(row)
    rows = []
    for found in runs.values():
        walls = [r["seconds"] for r in found]
        middle = sorted(found, key=lambda r: r["seconds"])[len(found) // 2]
        rows.append({"module": found[0]["module"], "lines": found[0]["lines"],
                     "seconds_median": round(statistics.median(walls), 3), "seconds_all": walls,
                     "efficiency_median": round(statistics.median(r["efficiency"] for r in found),
                                                3),
                     "median_run": middle})
    return {"model": str(model), "threads": threads, "repeats": repeats, "rows": rows,
            "runs": runs}


def format_checked(found: dict[str, Any]) -> list[str]:
    """Return the checked-sync rows as a table: wall, efficiency and the median run's split."""
    lines = [f"model {found['model']}, {found['threads']} threads, {found['repeats']} runs "
             "(medians; the split is the median run's)",
             f"{'first checked sync':<26}{'wall s':>8}{'eff.':>6}  {'load':>5}{'prompt':>7}"
             f"{'decode':>7}{'verify':>7}{'git':>5}{'other':>6}{'start':>6}  decoded/kept"]
    for row in found["rows"]:
        run = row["median_run"]
        spend = run["spend"]
        start = run["seconds"] - spend["wall_seconds"]  # interpreter, config, lock
        label = f"{row['module']} ({row['lines']} lines)"
        lines.append(
            f"{label:<26}{row['seconds_median']:>8.1f}{row['efficiency_median']:>6.2f}  "
            f"{spend['load_seconds']:>5.1f}{spend['prompt_seconds']:>7.1f}"
            f"{spend['decode_seconds']:>7.1f}{spend['verify_seconds']:>7.1f}"
            f"{spend['git_seconds']:>5.1f}{spend['other_seconds']:>6.1f}{start:>6.1f}  "
            f"{spend['decoded_tokens']}/{spend['kept_tokens']}")
        lines.append(f"{'':<26}prompt {spend['prompt_tokens']} tokens evaluated, "
                     f"{spend['reused_tokens']} reused; engine {run['prompt_speed']:.0f} / "
                     f"{run['gen_speed']:.1f} tok/s; verify runs {spend['verify_runs']}; "
                     f"{run['verify']}")
    return lines


def help_seconds(repeats: int) -> float:
    """Return the median wall time of `symergion --help` in a new process."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "symergion", "--help"], capture_output=True,
                       check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def run_bench(model: Path, *, threads: int, repeats: int) -> dict[str, Any]:
    """Run the rounds ``repeats`` times and return medians per round."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="symergion-bench-") as tmp:
            runs.append(run_once(model, threads, Path(tmp)))
    table = []
    for index, first in enumerate(runs[0]):
        seconds = [run[index]["seconds"] for run in runs]
        table.append({**first, "seconds_median": round(statistics.median(seconds), 3),
                      "seconds_all": seconds})
    return {"model": str(model), "threads": threads, "repeats": repeats,
            "help_seconds_median": round(help_seconds(max(5, repeats)), 3), "rounds": table}


def _parser() -> argparse.ArgumentParser:
    """Return the command line's parser: a plain run, or --modules, --checked or --tasks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-results/sync.json"))
    parser.add_argument("--tasks", type=int, default=0,
                        help="compare a cold sync of this many tasks with one of a single task")
    parser.add_argument("--modules", default="",
                        help="comma-separated standard library modules: a task each, original "
                             "format, all in one sync against one sync each")
    parser.add_argument("--folder", default="",
                        help="with --modules: the repository folder the copies go in (e.g. src)")
    parser.add_argument("--code", type=Path,
                        help="run the syncs with the symergion package of this checkout")
    parser.add_argument("--checked", action="store_true",
                        help="time the first checked sync of a 60-line module and of the demo")
    parser.add_argument("--checked-module", default=CHECKED_MODULE,
                        help="with --checked: the standard library module to copy (default: bisect)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the end-to-end benchmark and print a table."""
    args = _parser().parse_args(argv)
    model = args.model
    if model is None:
        from symergion.config.schema import EMBEDDED_MODEL
        from symergion.models.resolve import resolve_model

        model = resolve_model(EMBEDDED_MODEL, Path.cwd())
    if args.modules:
        modules = [m.strip() for m in args.modules.split(",") if m.strip()]
        found = run_modules_bench(model, threads=args.threads, repeats=args.repeats,
                                  modules=modules, code=args.code, folder=args.folder)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(found, indent=2))
        print(f"model {found['model']}, {found['threads']} threads, code {found['code'] or '-'}")
        print(f"{'run':<5}{'task':<14}{'tokens':>7}  {'stop':<11}{'lines':>6}{'trimmed tok':>12}"
              f"  trimmed")
        for number, run in enumerate(found["runs"], 1):
            for row in run["together"]["tasks"]:
                print(f"{number:<5}{row['task']:<14}{row['tokens']:>7}  {row['stop']:<11}"
                      f"{row['published_lines']:>6}{row['trimmed_tokens']:>12}  {row['trimmed']}")
            print(f"{number:<5}together {run['together']['seconds']:.1f} s, one at a time "
                  f"{run['alone_seconds']:.1f} s: gain {run['gain']:.2f}x")
        print(f"gain (median of {len(found['runs'])}): {found['gain_median']:.2f}x")
        print(f"wrote {args.out}")
        return 0
    if args.checked:
        checked = run_checked_bench(model, threads=args.threads, repeats=args.repeats,
                                    module=args.checked_module)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(checked, indent=2))
        print("\n".join(format_checked(checked)))
        print(f"wrote {args.out}")
        return 0
    if args.tasks:
        found = run_tasks_bench(model, threads=args.threads, repeats=args.repeats,
                                count=args.tasks)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(found, indent=2))
        print(f"model {found['model']}, {found['threads']} threads, {found['repeats']} pairs "
              "(medians)")
        print(f"{'cold sync':<16}{'seconds':>8}{'tokens':>8}{'tok/s wall':>12}"
              f"{'tok/s gen':>11}")
        for label, row in (("1 task", found["one"]), (f"{args.tasks} tasks", found["many"])):
            print(f"{label:<16}{row['seconds']:>8.2f}{row['tokens']:>8.0f}"
                  f"{row['tok_s_wall']:>12.1f}{row['tok_s_generation']:>11.1f}")
        print(f"ratio ({args.tasks} tasks / 1 task, paired medians): wall "
              f"{found['ratio']['tok_s_wall']:.2f}x, generation "
              f"{found['ratio']['tok_s_generation']:.2f}x")
        print(f"wrote {args.out}")
        return 0
    result = run_bench(model, threads=args.threads, repeats=args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"model {result['model']}, {result['threads']} threads, {result['repeats']} runs")
    print(f"{'round':<26}{'median s':>9}  {'cache':<6}{'tokens':>7}  {'stop':<11}llama_cpp")
    for row in result["rounds"]:
        print(f"{row['round']:<26}{row['seconds_median']:>9.2f}  {row.get('cache') or '-':<6}"
              f"{row.get('tokens') or 0:>7}  {row.get('stop') or '-':<11}"
              f"{'imported' if row['llama_cpp_imported'] else 'not imported'}")
    print(f"symergion --help: {result['help_seconds_median']:.2f} s (median)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
