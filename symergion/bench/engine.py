"""Benchmark harness: symergion's llama.cpp engine against a plain llama-cpp-python baseline.

One run measures, on the same GGUF and thread count, interleaving the contenders so that the
noise of a shared machine hits both alike:

- prompt and generation tokens/s of ``LlamaEngine`` and of ``Llama.create_completion``, plus a
  floor loop that only decodes and samples (the best any Python-driven loop can do);
- time to first token of a long prompt: cold, in a feedback round and a revoke in the same
  process (KV prefix kept in memory), and in a feedback round run by a new process (KV prefix
  state restored from disk);
- peak RSS of a process that loads one model and generates, against the GGUF's size;
- optionally, prompt lookup decoding (``LlamaPromptLookupDecoding``) on a regeneration prompt
  whose answer repeats the source;
- with ``--remote``, the remote engine: two ``llama_cpp.server`` processes on loopback, each
  with half the threads, generating two answers at once, against the in-process engine
  generating them one after the other (``pip install 'symergion[server]'``).

``--isolation`` measures instead what running safely costs: prompt and generation tokens/s
with and without llama.cpp's extra buffer types, in this process and through a worker process,
and the startup time of a worker against an in-process load.

Run it with ``python -m symergion.bench.engine`` (``nox -s bench``); ``--help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from symergion.bench.isolation import bench_isolation, format_isolation
from symergion.bench.lookup import bench_prompt_lookup
from symergion.bench.measure import (
    BENCH_CONTEXT,
    MB,
    Progress,
    default_model,
    import_llama_cpp,
    llama_engine,
    machine_extra_buffers,
    machine_info,
)
from symergion.bench.remote import bench_remote, format_remote
from symergion.bench.report import TARGETS, format_table, verdict
from symergion.bench.throughput import bench_throughput
from symergion.bench.ttft import bench_ttft, child_round
from symergion.engine.extra_buffers import llama_cpp_params


def run_bench(
    model_path: Path,
    *,
    threads: int,
    prompt_tokens: int = 150,
    gen_tokens: int = 200,
    repeats: int = 9,
    out_json: Path | None = None,
    long_prompt_tokens: int = 1200,
    prompt_lookup: bool = True,
    batched: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run every benchmark on one GGUF and return (and optionally write) the figures.

    Args:
        model_path: the GGUF file.
        threads: CPU threads for every contender.
        prompt_tokens: prompt length of the throughput runs.
        gen_tokens: tokens generated per throughput run.
        repeats: runs per measurement; figures are medians.
        out_json: where to write the result as JSON (parents are created).
        long_prompt_tokens: prompt length of the time-to-first-token runs (1000 or more).
        prompt_lookup: also measure prompt lookup decoding.
        batched: also measure batched generation (1/2/4/8 sequences, in a child process).
        progress: told what runs next, for a progress display.
    """
    llama_cpp = import_llama_cpp()
    say: Progress = progress or (lambda _message: None)
    model_path = Path(model_path)
    say("deciding on extra buffer types")
    extra_buffers = machine_extra_buffers(model_path)
    with llama_cpp_params(extra_buffers):
        return _run_bench(model_path, llama_cpp, say, extra_buffers, threads=threads,
                          prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, repeats=repeats,
                          out_json=out_json, long_prompt_tokens=long_prompt_tokens,
                          prompt_lookup=prompt_lookup, batched=batched)


def _run_bench(
    model_path: Path,
    llama_cpp: Any,
    say: Progress,
    extra_buffers: bool,
    *,
    threads: int,
    prompt_tokens: int,
    gen_tokens: int,
    repeats: int,
    out_json: Path | None,
    long_prompt_tokens: int,
    prompt_lookup: bool,
    batched: bool = False,
) -> dict[str, Any]:
    """Run the measures in turn with the extra buffer decision already applied; see ``run_bench``."""
    started = time.time()
    load_avg_before = os.getloadavg()
    result: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine_info(),
        "llama_cpp_python": llama_cpp.__version__,
        "model": {"path": str(model_path), "bytes": model_path.stat().st_size},
        "threads": threads,
        "repeats": repeats,
        "extra_buffers": extra_buffers,
        "targets": TARGETS,
    }

    say("loading the engine and the baseline")
    result["load_seconds"], result["throughput"] = _throughput(
        model_path, llama_cpp, say, extra_buffers, threads=threads, prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens, repeats=repeats,
    )

    result["ttft"] = bench_ttft(
        model_path,
        threads=threads,
        long_prompt_tokens=long_prompt_tokens,
        gen_tokens=gen_tokens,
        repeats=repeats,
        progress=say,
        extra_buffers=extra_buffers,
    )
    rss = result["ttft"]["peak_rss_bytes"]
    result["memory"] = {
        "peak_rss_bytes": rss,
        "gguf_bytes": model_path.stat().st_size,
        "rss_over_gguf_mb": (rss - model_path.stat().st_size) / MB,
    }
    if prompt_lookup:
        try:
            # The slowest part, and only a yes/no question: fewer repeats do.
            result["prompt_lookup"] = bench_prompt_lookup(
                model_path,
                threads=threads,
                gen_tokens=gen_tokens,
                repeats=max(1, repeats // 3),
                progress=say,
                extra_buffers=extra_buffers,
            )
        except (ValueError, RuntimeError) as exc:
            # An optional measure of a third-party path: report its failure, keep the rest.
            result["prompt_lookup"] = {"error": f"{type(exc).__name__}: {exc}"}
    if batched:
        say("batched generation (1/2/4/8 sequences)")
        result["batched"] = _run_batched(model_path, threads, extra_buffers,
                                         gen_tokens=min(gen_tokens, 64), repeats=max(1, repeats // 3))
    result["load_average"] = {"before": load_avg_before, "after": os.getloadavg()}
    result["seconds"] = time.time() - started
    result["verdict"] = verdict(result)
    if out_json is not None:
        _write_json(Path(out_json), result)
    return result


def _throughput(model_path: Path, llama_cpp: Any, say: Progress, extra_buffers: bool, *,
                threads: int, prompt_tokens: int, gen_tokens: int,
                repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Load the engine and the baseline side by side; return their load times and throughput."""
    t = time.perf_counter()
    engine = llama_engine(model_path, threads, None, extra_buffers)
    engine_load = time.perf_counter() - t
    t = time.perf_counter()
    llm = llama_cpp.Llama(
        str(model_path),
        n_ctx=BENCH_CONTEXT,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    baseline_load = time.perf_counter() - t
    try:
        throughput = bench_throughput(
            engine,
            llm,
            llama_cpp,
            prompt_tokens=prompt_tokens,
            gen_tokens=gen_tokens,
            repeats=repeats,
            progress=say,
        )
    finally:
        engine.close()
        llm.close()
    return {"engine": engine_load, "baseline": baseline_load}, throughput


def _write_json(out_json: Path, result: dict[str, Any]) -> None:
    """Write the figures through a temporary file, so that a stopped run leaves no half file."""
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_name(out_json.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out_json)


def _run_batched(model_path: Path, threads: int, extra_buffers: bool, *, gen_tokens: int,
                 repeats: int) -> dict[str, Any]:
    """Run ``symergion.bench.batch`` in a child process, so that its peak RSS is its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "symergion.bench.batch", "--model", str(model_path), "--threads",
         str(threads), "--gen-tokens", str(gen_tokens), "--repeats", str(repeats),
         "--extra-buffers", "on" if extra_buffers else "off"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"batched benchmark failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; the JSON goes to --out."""
    parser = argparse.ArgumentParser(
        prog="python -m symergion.bench.engine",
        description="Benchmark symergion's llama.cpp engine against llama-cpp-python.",
    )
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prompt-tokens", type=int, default=150)
    parser.add_argument("--gen-tokens", type=int, default=200)
    parser.add_argument("--long-prompt-tokens", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    parser.add_argument("--no-prompt-lookup", action="store_true")
    parser.add_argument("--no-batched", action="store_true",
                        help="skip the batched generation row (python -m symergion.bench.batch)")
    parser.add_argument("--isolation", action="store_true",
                        help="measure only extra buffers on/off and in-process/worker")
    parser.add_argument("--remote", action="store_true",
                        help="also measure the remote engine on two llama_cpp.server processes")
    parser.add_argument("--only-remote", action="store_true", help="measure only the remote engine")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_round(json.loads(args.child))))
        return 0
    model = args.model or default_model()
    if args.isolation:
        figures = bench_isolation(
            model, threads=args.threads, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
            repeats=args.repeats,
            progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True),
        )
        figures["command"] = " ".join(sys.argv)
        figures["machine"] = machine_info()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(format_isolation(figures, args.threads, args.repeats))
        return 0
    if args.only_remote:
        return _main_remote(args, model)
    result = run_bench(
        model,
        threads=args.threads,
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        repeats=args.repeats,
        out_json=args.out,
        long_prompt_tokens=args.long_prompt_tokens,
        prompt_lookup=not args.no_prompt_lookup,
        batched=not args.no_batched,
        progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True),
    )
    if args.remote:
        result["remote"] = _remote_result(args, model)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(format_table(result))
    if args.remote:
        print("\n".join(format_remote(result["remote"], args.threads)))
    print(f"\nJSON written to {args.out}", file=sys.stderr)
    return 0


def _remote_result(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    return bench_remote(
        model, threads=args.threads, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
        repeats=args.repeats,
        progress=lambda message: print(f"... {message}", file=sys.stderr, flush=True),
    )


def _main_remote(args: argparse.Namespace, model: Path) -> int:
    started = time.time()
    load_before = os.getloadavg()
    remote = _remote_result(args, model)
    result = {"command": " ".join(sys.argv), "machine": machine_info(), "threads": args.threads,
              "repeats": args.repeats, "remote": remote, "seconds": time.time() - started,
              "load_average": {"before": load_before, "after": os.getloadavg()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n".join(format_remote(remote, args.threads)[1:]))
    print(f"load average before {load_before[0]:.2f}, after {result['load_average']['after'][0]:.2f}")
    print(f"\nJSON written to {args.out}", file=sys.stderr)
    return 0



if __name__ == "__main__":
    sys.exit(main())
