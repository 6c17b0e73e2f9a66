"""What every benchmark measures with: stopwatches, synthetic sources, the engine under test.

The harnesses of this package share these so that their figures are taken the same way: a
stream timed to its first and last piece, llama_decode timed whoever calls it, prompts made of
whole synthetic functions, medians and paired ratios, peak RSS and the machine's description.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symergion.config.sampling import Sampling
from symergion.config.schema import EMBEDDED_MODEL

Progress = Callable[[str], None]

BENCH_CONTEXT = 4096
TTFT_GEN_TOKENS = 16
MB = 1024 * 1024
# The batched row's sequence counts (``symergion.bench.batch`` measures them).
BATCH_COUNTS = (1, 2, 4, 8)


@dataclass
class Timing:
    """Wall-clock figures of one streamed completion."""

    first_token: float
    total: float
    chunks: int
    # Time inside llama_decode after the first token, and how many calls that was.
    decode_seconds: float = 0.0
    decode_calls: int = 0


class DecodeTimer:
    """Time every llama_decode call, whoever makes it.

    Both contenders look ``llama_decode`` up on a module when they run, so swapping the
    module attribute measures how much of a token's time is llama.cpp's own
    work and how much is the Python around it.
    """

    def __init__(self, llama_cpp: Any) -> None:
        # The package re-exports the bindings of its llama_cpp.llama_cpp module, which is
        # where llama-cpp-python's own classes look them up: swap both.
        self.modules = [llama_cpp, importlib.import_module("llama_cpp.llama_cpp")]
        self.real = llama_cpp.llama_decode
        self.seconds = 0.0
        self.calls = 0

    def __enter__(self) -> DecodeTimer:
        real = self.real

        def timed(ctx: Any, batch: Any) -> int:
            start = time.perf_counter()
            result: int = real(ctx, batch)
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return result

        for module in self.modules:
            module.llama_decode = timed
        return self

    def __exit__(self, *_exc: object) -> None:
        for module in self.modules:
            module.llama_decode = self.real

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0


def time_stream(stream: Iterable[Any], timer: DecodeTimer | None = None) -> Timing:
    """Consume a stream; with a timer, count only the decode calls after its first piece."""
    start = time.perf_counter()
    first = 0.0
    chunks = 0
    for _ in stream:
        if chunks == 0:
            first = time.perf_counter() - start
            if timer is not None:
                timer.reset()
        chunks += 1
    total = time.perf_counter() - start
    if timer is None:
        return Timing(first_token=first, total=total, chunks=chunks)
    return Timing(first, total, chunks, timer.seconds, timer.calls)


def first_token_seconds(stream: Iterator[str]) -> float:
    """Return the seconds until the first piece of text, then abandon the stream."""
    start = time.perf_counter()
    with contextlib.suppress(StopIteration):
        next(stream)
    seconds = time.perf_counter() - start
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    return seconds


def median(values: Iterable[float]) -> float:
    """Return the median, 0.0 for no values (a measure that did not run)."""
    items = list(values)
    return statistics.median(items) if items else 0.0


def ratio(a: float, b: float) -> float:
    """Return a / b, 0.0 when b is 0 (a contender that produced nothing)."""
    return a / b if b else 0.0


def source_text(n_functions: int, salt: str) -> str:
    """Return a synthetic Python module; ``salt`` makes its first line (and tokens) unique."""
    parts = [f"# module {salt}: arithmetic helpers\n\n"]
    for i in range(n_functions):
        parts.append(
            f"def scale_{i}(value: float, offset: float = {i}.5) -> float:\n"
            f'    """Return value times {i + 2} plus offset."""\n'
            f"    if value < 0:\n"
            f"        raise ValueError('value must not be negative')\n"
            f"    return value * {i + 2} + offset\n\n\n"
        )
    return "".join(parts)


def sized_source(count: Callable[[str], int], tokens: int, salt: str) -> str:
    """Return the shortest synthetic source of at least ``tokens`` tokens."""
    n = 1
    while count(source_text(n, salt)) < tokens:
        n += 1
    return source_text(n, salt)


def llama_engine(model_path: Path, threads: int, state_dir: Path | None,
                 extra_buffers: bool | None) -> Any:
    """Return the engine under test, as every benchmark builds it."""
    from symergion.engine.llama import LlamaEngine

    return LlamaEngine(
        model_path,
        model_name="bench",
        n_ctx=BENCH_CONTEXT,
        n_threads=threads,
        sampling=Sampling(),
        state_dir=state_dir,
        extra_buffers=extra_buffers,
    )


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes."""
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak over exec.
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    # Linux and most BSDs report ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def import_llama_cpp() -> Any:
    """Import llama_cpp, typed as Any: its ctypes bindings are only partly annotated."""
    return importlib.import_module("llama_cpp")


def machine_extra_buffers(model_path: Path) -> bool:
    """Return whether this machine's llama.cpp may use extra buffer types (probed once, cached)."""
    from symergion.engine.extra_buffers import machine_decision

    return machine_decision(model_path, llama=import_llama_cpp()).use_extra_buffers


def machine_info() -> dict[str, Any]:
    """Describe the machine, for the JSON of a run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total_ram = 0
    with contextlib.suppress(ValueError, OSError):
        total_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": total_ram,
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def default_model() -> Path:
    """Return the embedded model's GGUF, the model a benchmark runs without ``--model``."""
    from symergion.models.resolve import resolve_model

    return resolve_model(EMBEDDED_MODEL, Path.cwd())

