"""The remote engine: two ``llama_cpp.server`` processes on loopback, each with half the threads,
generating two answers at once, against the in-process engine generating them one after the
other (``pip install 'symergion[server]'``)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symergion.bench.measure import (
    BENCH_CONTEXT,
    Progress,
    llama_engine,
    median,
    ratio,
    sized_source,
)
from symergion.engine.serve import serve_command

if TYPE_CHECKING:
    from symergion.engine.remote import RemoteEngine


def _start_server(model_path: Path, threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``llama_cpp.server`` on a free loopback port; return it and its endpoint."""
    import socket

    import httpx2

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*serve_command(), "--model", str(model_path),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(BENCH_CONTEXT),
             "--n_threads", str(threads), "--n_threads_batch", str(threads),
             "--verbose", "False", "--interrupt_requests", "False"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx2.TransportError):
            if httpx2.get(f"{endpoint}/v1/models", timeout=2).status_code == 200:
                return process, endpoint
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"llama_cpp.server did not start; see {log}")


def bench_remote(
    model_path: Path,
    *,
    threads: int,
    prompt_tokens: int = 150,
    gen_tokens: int = 200,
    repeats: int = 9,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Two answers: two local servers at once (half the threads each) vs one in-process engine.

    Each repeat generates two fresh prompts (no prefix can be reused) greedily, ``gen_tokens``
    at most, once with ``LlamaEngine`` one after the other and once with two ``RemoteEngine``
    threads, one per server, in rotating order. Figures are aggregate tokens/s over wall time
    (prompt processing included), and a single answer on one server against the engine.
    """
    from symergion.engine.remote import RemoteEngine

    say: Progress = progress or (lambda _message: None)
    server_threads = max(1, threads // 2)
    engine = llama_engine(model_path, threads, None, extra_buffers=None)
    processes: list[subprocess.Popen[bytes]] = []
    remotes: list[RemoteEngine] = []
    rows: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as logs:
            for i in range(2):
                say(f"starting llama_cpp.server {i + 1} of 2 ({server_threads} threads)")
                process, endpoint = _start_server(model_path, server_threads, Path(logs) / f"{i}.log")
                processes.append(process)
                remotes.append(RemoteEngine(endpoint, model_name=f"server{i}",
                                            context_size=BENCH_CONTEXT))
            turns = _RemoteTurns(engine, remotes, gen_tokens)
            for repeat in range(repeats):
                say(f"remote repeat {repeat + 1}/{repeats}")
                prompts = [sized_source(engine.count_tokens, prompt_tokens, f"remote-{repeat}-{k}")
                           for k in range(5)]
                rows.append(turns.run(repeat, prompts))
    finally:
        _close_remote(engine, remotes, processes)
    med = {key: median(row[key] for row in rows) for key in rows[0]}
    return {
        "runs": rows,
        "median": med,
        "server_threads": server_threads,
        "two_servers_vs_engine": median(ratio(r["remote_two_tps"], r["local_two_tps"]) for r in rows),
        "one_server_vs_engine": median(ratio(r["remote_one_tps"], r["local_one_tps"]) for r in rows),
    }


class _RemoteTurns:
    """The contenders of one repeat, each timed in turn on its own prompts."""

    def __init__(self, engine: Any, remotes: list[RemoteEngine], gen_tokens: int) -> None:
        self.engine = engine
        self.remotes = remotes
        self.gen_tokens = gen_tokens

    def run(self, repeat: int, prompts: list[str]) -> dict[str, float]:
        """Run the three turns, starting with the ``repeat``-th, on five fresh prompts."""
        row: dict[str, float] = {}
        turns = [self.local_two, self.remote_two, self.one_each]
        for k in range(len(turns)):
            turns[(repeat + k) % len(turns)](prompts, row)
        return row

    def remote_run(self, index: int, prompt: str, out: list[int]) -> None:
        pieces = self.remotes[index].generate(prompt, max_tokens=self.gen_tokens)
        out[index] = sum(1 for _ in pieces)

    def local_two(self, prompts: list[str], row: dict[str, float]) -> None:
        t = time.perf_counter()
        n = sum(sum(1 for _ in self.engine.generate(p, max_tokens=self.gen_tokens))
                for p in prompts[:2])
        row["local_two_tps"] = n / (time.perf_counter() - t)

    def remote_two(self, prompts: list[str], row: dict[str, float]) -> None:
        counts = [0, 0]
        # Daemon threads: Ctrl-C ends the run even while a request is waiting.
        workers = [threading.Thread(target=self.remote_run, args=(k, prompts[2 + k], counts),
                                    daemon=True) for k in range(2)]
        t = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        row["remote_two_tps"] = sum(counts) / (time.perf_counter() - t)

    def one_each(self, prompts: list[str], row: dict[str, float]) -> None:
        t = time.perf_counter()
        n = sum(1 for _ in self.engine.generate(prompts[4], max_tokens=self.gen_tokens))
        row["local_one_tps"] = n / (time.perf_counter() - t)
        counts = [0, 0]
        t = time.perf_counter()
        self.remote_run(0, prompts[4], counts)
        row["remote_one_tps"] = counts[0] / (time.perf_counter() - t)


def _close_remote(engine: Any, remotes: list[RemoteEngine],
                  processes: list[subprocess.Popen[bytes]]) -> None:
    """Close the engines and stop the servers, killing one that does not stop in 15 s."""
    engine.close()
    for remote in remotes:
        remote.close()
    for process in processes:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        if process.poll() is None:
            process.kill()

def format_remote(remote: dict[str, Any], threads: int) -> list[str]:
    """Render the remote rows of the table."""
    med = remote["median"]
    return [
        "",
        f"remote engine: llama_cpp.server on loopback, {remote['server_threads']} threads each; "
        f"in-process engine {threads} threads",
        f"{'measure':<44}{'remote':>12}{'engine':>12}{'ratio':>8}",
        f"{'two answers at once, 2 servers, tokens/s':<44}{med['remote_two_tps']:>12.1f}"
        f"{med['local_two_tps']:>12.1f}{remote['two_servers_vs_engine']:>8.2f}",
        f"{'one answer, 1 server, tokens/s':<44}{med['remote_one_tps']:>12.1f}"
        f"{med['local_one_tps']:>12.1f}{remote['one_server_vs_engine']:>8.2f}",
        "(aggregate tokens over wall time, prompt included; ratios: paired medians)",
    ]

