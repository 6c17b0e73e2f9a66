"""Models in worker processes: same results as in process, cancel, and a real native crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from symergion.config.sampling import Sampling
from symergion.engine.base import ChatPrompt, Engine
from symergion.engine.proxy import WorkerCrashed, WorkerEngine
from symergion.engine.worker import EngineSpec
from symergion.errors import ModelError
from tests.helpers.engine import THREADS
from tests.helpers.git import git, start_task_with_git

PROMPT = 'def fibonacci(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n'


@pytest.fixture
def spec(gguf_path: Path, extra_buffers: bool) -> EngineSpec:
    return EngineSpec(gguf_path, "gemma3-270m", THREADS, Sampling(), 1024,
                      extra_buffers="on" if extra_buffers else "off", extra_buffers_source="tests")


@pytest.fixture
def worker(spec: EngineSpec):
    engine = WorkerEngine(spec)
    yield engine
    engine.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: its parent has not reaped it yet.
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"


def test_the_worker_gives_what_the_engine_gives_in_process(worker: WorkerEngine, make_engine) -> None:
    engine: Engine = worker
    local = make_engine(n_ctx=1024)
    assert worker.n_ctx == local.n_ctx == 1024
    assert worker.pid != os.getpid() and alive(worker.pid)
    assert "".join(engine.generate(PROMPT, max_tokens=24)) == "".join(local.generate(PROMPT, max_tokens=24))
    assert worker.stats.generated_tokens == 24 and worker.stats.prompt_tokens == local.stats.prompt_tokens
    # The running figures cross the process boundary with each stream's end.
    assert worker.totals.decoded_tokens == local.totals.decoded_tokens == 24
    assert worker.totals.prompt_tokens == local.totals.prompt_tokens == local.stats.prompt_tokens
    assert worker.totals.decode_seconds > 0 and worker.totals.requests == 1
    assert worker.load_seconds > 0
    hostile = ChatPrompt("<start_of_turn>user\n<eos><end_of_turn>\n", (20, 25))
    assert worker.count_tokens(hostile) == local.count_tokens(hostile)
    assert worker.token_text([2, 105]) == local.token_text([2, 105])
    with pytest.raises(ModelError, match="no chat template") as caught:
        worker.chat_prompt("hello")
    assert caught.value.hint
    assert worker.info["decision"]["source"] == "tests"


def test_an_abandoned_or_cancelled_stream_leaves_the_worker_usable(worker: WorkerEngine) -> None:
    expected = "".join(worker.generate(PROMPT, max_tokens=16))
    stream = worker.generate(PROMPT, max_tokens=500)
    next(stream)
    stream.close()
    assert "".join(worker.generate(PROMPT, max_tokens=16)) == expected

    cancel = threading.Event()
    pieces = []
    for piece in worker.generate(PROMPT, max_tokens=500, cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert len(pieces) < 20
    assert worker.stats.generated_tokens < 20
    assert "".join(worker.generate(PROMPT, max_tokens=16)) == expected


def test_a_native_crash_mid_generation_is_a_model_error_and_the_next_call_recovers(
        worker: WorkerEngine) -> None:
    expected = "".join(worker.generate(PROMPT, max_tokens=16))
    first_pid = worker.pid
    assert first_pid is not None
    with pytest.raises(WorkerCrashed) as caught:
        for count, _piece in enumerate(worker.generate(PROMPT, max_tokens=500), start=1):
            if count == 4:
                os.kill(first_pid, signal.SIGSEGV)
    message = str(caught.value)
    assert "gemma3-270m crashed" in message and "SIGSEGV" in message
    assert "nothing was published for gemma3-270m" in message
    assert "SYMERGION_EXTRA_BUFFERS=off" in message and "symergion doctor" in message
    assert not alive(first_pid)
    assert "".join(worker.generate(PROMPT, max_tokens=16)) == expected
    assert worker.pid != first_pid


def test_the_worker_ignores_ctrl_c_and_exits_when_its_parent_dies(spec: EngineSpec, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    code = textwrap.dedent(f"""
        import os, sys, time, pickle
        sys.path.insert(0, {str(root)!r})
        from symergion.engine.proxy import WorkerEngine
        engine = WorkerEngine(pickle.loads(bytes.fromhex(sys.argv[1])))
        print(engine.pid, flush=True)
        time.sleep(600)
    """)
    import pickle

    parent = subprocess.Popen([sys.executable, "-c", code, pickle.dumps(spec).hex()],
                              stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(parent.stdout.readline())
        os.kill(worker_pid, signal.SIGINT)
        os.kill(worker_pid, signal.SIGTERM)
        time.sleep(0.5)
        assert alive(worker_pid), "the worker died of a signal its parent handles"
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and alive(worker_pid):
        time.sleep(0.05)
    assert not alive(worker_pid), "the worker outlived its parent"


def test_a_crash_in_one_model_is_a_problem_and_the_other_models_branch_is_generated(
        gguf_path: Path, extra_buffers: bool, repo_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A real worker killed by a real SIGSEGV mid-generation, through `symergion sync`."""
    import symergion.app.runtime as runtime
    from symergion.cli.main import main

    config = tmp_path / "symergion.json"
    for name in ("alpha", "beta"):
        # Two files: the engine pool keeps one engine per model file.
        (tmp_path / f"{name}.gguf").symlink_to(gguf_path)
    config.write_text(json.dumps({
        "ntokens": 24,
        "extra_buffers": "on" if extra_buffers else "off",
        "checkpoints": [{"name_or_path": f"{name}.gguf", "trait": "coding", "context_size": 2048}
                        for name in ("alpha", "beta")],
    }))
    real_load = runtime.load_engine

    class CrashingAlpha:
        """The real worker of alpha, killed with SIGSEGV after its fourth piece."""

        def __init__(self, engine: WorkerEngine) -> None:
            self.engine = engine

        def __getattr__(self, name: str):
            return getattr(self.engine, name)

        def generate(self, prompt: str, **kwargs):
            for count, piece in enumerate(self.engine.generate(prompt, **kwargs), start=1):
                if count == 4:
                    os.kill(self.engine.pid, signal.SIGSEGV)
                yield piece

        def generate_many(self, requests, **kwargs):
            # A sync decodes its branches through generate_many.
            for count, item in enumerate(self.engine.generate_many(requests, **kwargs), start=1):
                if count == 4:
                    os.kill(self.engine.pid, signal.SIGSEGV)
                yield item

    def load(config, checkpoint):
        engine = real_load(config, checkpoint)
        assert isinstance(engine, WorkerEngine)
        return CrashingAlpha(engine) if checkpoint.model_name == "alpha" else engine

    monkeypatch.setattr(runtime, "load_engine", load)
    start_task_with_git(repo_dir)
    code = main(["sync", "--repo", str(repo_dir), "--config", str(config), "--json"])
    out, err = capsys.readouterr()
    assert code == 4, err
    assert "alpha crashed" in out + err and "SIGSEGV" in out + err
    assert "nothing was published for alpha" in out + err
    branches = git(repo_dir, "branch", "--format=%(refname:short)").split()
    assert "beta_TestCase_capture_output" in branches
    assert "alpha_TestCase_capture_output" not in branches
    assert not git(repo_dir, "for-each-ref", "refs/symergion/tasks/TestCase_capture_output/alpha")


def test_ctrl_c_during_a_real_generation_stops_sync_and_its_worker(
        gguf_path: Path, extra_buffers: bool, repo_dir: Path, tmp_path: Path) -> None:
    """The worker ignores the terminal's SIGINT; the parent stops, exits 130, and ends it."""
    config = tmp_path / "symergion.json"
    config.write_text(json.dumps({
        "ntokens": 2000,
        "extra_buffers": "on" if extra_buffers else "off",
        "checkpoints": [{"name_or_path": str(gguf_path), "name": "alpha", "trait": "coding",
                         "context_size": 4096}],
    }))
    start_task_with_git(repo_dir)
    refs = git(repo_dir, "for-each-ref")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    # Its own process group, as a shell gives it: the signal goes to the whole group.
    proc = subprocess.Popen([sys.executable, "-m", "symergion", "sync", "--repo", str(repo_dir),
                             "--config", str(config)], env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        workers: list[int] = []
        while time.monotonic() < deadline and not workers:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            workers = [int(p) for p in children.read_text().split()] if children.exists() else []
            time.sleep(0.1)
        assert workers, "sync started no worker"
        (worker_pid,) = workers
        # Stop as soon as the worker starts generating: the progress line says so (a timed
        # wait could come after a fast machine had already finished the file).
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if ": generating (" in line:
                break
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        _out, rest = proc.communicate(timeout=60)
        err = "".join(seen) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "crashed" not in err
    assert git(repo_dir, "for-each-ref") == refs
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and alive(worker_pid):
        time.sleep(0.05)
    assert not alive(worker_pid)


def test_a_batch_through_the_worker_gives_the_in_process_texts_and_stops(worker: WorkerEngine,
                                                                          make_engine) -> None:
    from symergion.engine.base import GenerationRequest

    local = make_engine(n_ctx=1024)
    requests = [GenerationRequest(PROMPT, 20), GenerationRequest("def median(values):\n", 20)]

    def run(engine: Engine) -> list[str]:
        stopped: set[int] = set()
        texts = ["", ""]
        for index, piece in engine.generate_many(requests, stopped=stopped):
            # A worker may have sent a few pieces before it read the stop: they are dropped.
            if index in stopped:
                continue
            texts[index] += piece
            if index == 1 and len(texts[1]) >= 6:
                stopped.add(1)
        return texts

    assert run(worker) == run(local)
    assert [s.stop for s in worker.batch_stats] == [s.stop for s in local.batch_stats]
    assert worker.batch_stats[1].stop == "stopped"
    # A batch's steps count once: decoded tokens are those of both sequences.
    assert worker.totals.decoded_tokens == sum(s.generated_tokens for s in worker.batch_stats)
    assert worker.totals.requests == 2 and worker.totals.decode_seconds > 0
    # A plain generate still works after a batch.
    assert "".join(worker.generate(PROMPT, max_tokens=8)) == "".join(local.generate(PROMPT, max_tokens=8))
