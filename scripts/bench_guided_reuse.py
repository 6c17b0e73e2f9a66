"""Guided writing with and without keeping the file's KV (marks): prompt tokens, time, texts.

One guided file (the default config's method: 12 targets, 3 variants) is written with the real
engine in this process, from a cold KV cache, once as before (each test's prompt reuses the KV
up to the stable prefix only) and once with marks (``Engine.generate``'s ``marks``: the KV of
the file so far is kept). Both arms run at the same time, in two processes, so the machine's
load weighs on both alike; the token counts do not depend on the load at all.

    PYTHONPATH=. python scripts/bench_guided_reuse.py --module bisect --threads 2
    PYTHONPATH=. python scripts/bench_guided_reuse.py --demo --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from symergion.config.sampling import Sampling
from symergion.core import prompt as prompts
from symergion.engine.base import GenerationRequest, max_new_tokens
from symergion.verify import examples, guide


def write(model: Path, threads: int, name: str, code: str, marks: bool) -> dict[str, Any]:
    """Write one guided file; return the engine's figures, the wall time and the text."""
    from symergion.bench.measure import machine_extra_buffers
    from symergion.engine.llama import LlamaEngine

    source, destination = f"lib/{name}.py", f"test_{name}.py"
    files = [*examples.few_shot_files(source, destination), (source, code)]
    starter = examples.test_case_starter(source, destination)
    prompt = prompts.render(files, [prompts.call_to_action("Create unittest TestCase", code)], [],
                            starter)
    engine = LlamaEngine(model, model_name="bench", n_ctx=8192, n_threads=threads,
                         sampling=Sampling(), extra_buffers=machine_extra_buffers(model))
    shared: list[int] = []

    def kept(text: str) -> tuple[int, ...]:
        return tuple(m for m in shared if m < len(text)) if marks else ()

    def generate(text: str, max_tokens: int, stable: int) -> Iterator[str]:
        return engine.generate(text, max_tokens=max_tokens, stable_prefix=stable, marks=kept(text))

    def sample(text: str, max_tokens: int, stable: int, seed: int) -> Iterator[str]:
        request = GenerationRequest(text, max_tokens, stable, seed, 0.8, kept(text))
        return (piece for _, piece in engine.generate_many([request]))

    try:
        budget = max_new_tokens(engine.n_ctx, engine.count_tokens(prompt.text), 512)
        began = time.monotonic()
        done = guide.guided_file(generate,
                                 guide.GuidedTask(prompt.text, starter, code, examples.module_alias(source),
                                                  destination),
                                 guide.GuideOptions(budget=budget, variants=3, sample=sample,
                                                    room=lambda text: engine.n_ctx
                                                    - engine.count_tokens(text),
                                                    on_shared=shared.append))
        wall = time.monotonic() - began
        totals = engine.totals
        return {"marks": marks, "wall": round(wall, 2), "prompt_tokens": totals.prompt_tokens,
                "reused_tokens": totals.reused_tokens,
                "prompt_seconds": round(totals.prompt_seconds, 2),
                "decoded_tokens": totals.decoded_tokens,
                "decode_seconds": round(totals.decode_seconds, 2), "requests": totals.requests,
                "tests": len(done.tested) + len(done.variants), "text": done.text}
    finally:
        engine.close()


def main(argv: list[str]) -> int:
    """Run both arms side by side and print the comparison as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="bisect", help="a standard-library module")
    parser.add_argument("--demo", action="store_true", help="the demo's source instead")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--arm", choices=("before", "marks"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model = args.model
    if model is None:
        from symergion.config.schema import EMBEDDED_MODEL
        from symergion.models.resolve import resolve_model

        model = resolve_model(EMBEDDED_MODEL, Path.cwd())
    if args.demo:
        from symergion.app.demo import SOURCE

        name, code = "capture_output", SOURCE
    else:
        name = args.module
        code = (Path(sysconfig.get_paths()["stdlib"]) / f"{name}.py").read_text(encoding="utf-8")
    if args.arm:
        print(json.dumps(write(model, args.threads, name, code, args.arm == "marks")))
        return 0
    base = [sys.executable, __file__, "--threads", str(args.threads), "--model", str(model),
            *(["--demo"] if args.demo else ["--module", name])]
    arms = {arm: subprocess.Popen([*base, "--arm", arm], stdout=subprocess.PIPE, text=True)
            for arm in ("before", "marks")}
    found = {arm: json.loads(proc.communicate()[0]) for arm, proc in arms.items()}
    before, after = found["before"], found["marks"]
    summary = {"module": name, "lines": len(code.splitlines()), "threads": args.threads,
               "same_text": before["text"] == after["text"],
               "prompt_tokens_ratio": round(before["prompt_tokens"] / after["prompt_tokens"], 2),
               "wall_ratio": round(before["wall"] / after["wall"], 2),
               **{arm: {k: v for k, v in row.items() if k != "text"} for arm, row in found.items()}}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
