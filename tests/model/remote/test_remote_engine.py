"""The remote engine against a real llama_cpp.server on loopback, on the embedded model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from symergion.app.demo import SOURCE
from symergion.config.sampling import Sampling
from symergion.core import prompt as prompts
from symergion.engine.remote import RemoteEngine, remote_fingerprint
from symergion.errors import ModelError
from tests.helpers.server import N_CTX, THREADS, Server, free_port


def demo_prompt(feedback: tuple[str, ...] = ()) -> prompts.Prompt:
    """The prompt of the demo task, as the reconcile pass renders it."""
    files = [("utils/capture_output.py", SOURCE)]
    initial = [prompts.call_to_action("Create unittest TestCase", SOURCE)]
    return prompts.render(files, initial, list(feedback), "import unittest\n")


def engine_on(server: Server, **kwargs: object) -> RemoteEngine:
    kwargs.setdefault("context_size", N_CTX)
    return RemoteEngine(server.endpoint, model_name="remote", **kwargs)  # type: ignore[arg-type]


def test_greedy_remote_text_equals_local_text(make_server: Callable[..., Server], gguf_path: Path) -> None:
    """A server that evaluates the prompt from scratch gives the local engine's greedy text."""
    from symergion.engine.llama import LlamaEngine

    prompt = demo_prompt().text
    # A fresh server: its KV cache holds nothing it could reuse, so the prompt is evaluated in
    # batches of 512 from position 0, as the local engine does with no stable prefix.
    server = make_server()
    remote = engine_on(server)
    local = LlamaEngine(gguf_path, model_name="local", n_ctx=N_CTX, n_threads=THREADS,
                        sampling=Sampling())
    try:
        remote_text = "".join(remote.generate(prompt, max_tokens=128))
        local_text = "".join(local.generate(prompt, max_tokens=128, stable_prefix=0))
        assert remote.count_tokens(prompt) == local.count_tokens(prompt)
    finally:
        local.close()
        remote.close()
    assert remote_text.strip()
    assert remote_text == local_text


def test_streams_one_piece_per_token_and_stops_when_closed(llama_server: Server) -> None:
    engine = engine_on(llama_server)
    try:
        prompt = "def fibonacci(n):\n"
        full = list(engine.generate(prompt, max_tokens=24))
        assert len(full) == engine.stats.generated_tokens
        assert 1 < len(full) <= 24
        assert all(isinstance(p, str) and p for p in full)

        stream = engine.generate(prompt, max_tokens=400)
        first = [next(stream), next(stream), next(stream)]
        stream.close()
        assert all(first)
        # The server saw the client leave and stopped generating for it.
        log = llama_server.log
        for _ in range(100):
            if "Disconnected from client" in log.read_text():
                break
            threading.Event().wait(0.1)
        assert "Disconnected from client" in log.read_text()
        # ... and serves the next request.
        assert list(engine.generate("x = 1\n", max_tokens=3))
    finally:
        engine.close()


def test_cancel_is_honoured_between_pieces(llama_server: Server) -> None:
    engine = engine_on(llama_server)
    cancel = threading.Event()
    pieces: list[str] = []
    try:
        for piece in engine.generate("class Stack:\n", max_tokens=200, cancel=cancel):
            pieces.append(piece)
            if len(pieces) == 2:
                cancel.set()
    finally:
        engine.close()
    assert len(pieces) == 2


def test_sampling_settings_reach_the_server(llama_server: Server) -> None:
    """A seeded hot sample repeats itself and differs from greedy decoding (same prompt)."""
    hot = Sampling(temperature=1.5, top_k=200, top_p=1.0, min_p=0.0, seed=7)
    prompt = "# A list of fruit names:\n"
    texts = []
    for sampling in (hot, hot, Sampling()):
        engine = engine_on(llama_server, sampling=sampling)
        try:
            texts.append("".join(engine.generate(prompt, max_tokens=24)))
        finally:
            engine.close()
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]


def test_context_and_identity_come_from_the_server(llama_server: Server, gguf_path: Path) -> None:
    engine = engine_on(llama_server, context_size=None)
    try:
        assert engine.info.model_id == str(gguf_path)
        with pytest.raises(ModelError, match="does not report its context length") as err:
            _ = engine.n_ctx
        assert "context_size" in str(err.value)
    finally:
        engine.close()
    capped = engine_on(llama_server, context_size=1024)
    try:
        assert capped.n_ctx == 1024
        assert capped.fingerprint == remote_fingerprint(llama_server.endpoint)
    finally:
        capped.close()


def test_a_model_the_server_does_not_serve_is_named(llama_server: Server) -> None:
    first = remote_fingerprint(llama_server.endpoint)
    assert remote_fingerprint(llama_server.endpoint) == first  # stable
    engine = RemoteEngine(llama_server.endpoint, model_name="x", served_model="not-served",
                          context_size=N_CTX)
    try:
        with pytest.raises(ModelError, match=r"does not serve 'not-served'.*gemma3-270m"):
            engine.count_tokens("x")
    finally:
        engine.close()


def test_endpoint_down_is_a_clear_error_after_bounded_retries() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    engine = RemoteEngine(endpoint, model_name="down", context_size=N_CTX)
    try:
        with pytest.raises(ModelError) as err:
            list(engine.generate("x", max_tokens=4))
    finally:
        engine.close()
    message = str(err.value)
    assert endpoint in message
    assert "3 attempts" in message
    assert "start the server" in message


def test_server_dying_mid_stream_is_an_error(make_server: Callable[..., Server]) -> None:
    server = make_server()
    engine = engine_on(server)
    pieces: list[str] = []
    try:
        with pytest.raises(ModelError, match=r"broke off while streaming|ended before") as err:
            for piece in engine.generate("def parse(text):\n", max_tokens=400):
                pieces.append(piece)
                if len(pieces) == 3:
                    server.kill()
    finally:
        engine.close()
    assert server.endpoint in str(err.value)
    assert len(pieces) >= 3


def test_generations_from_several_threads_at_once(llama_server: Server) -> None:
    """One engine, two threads: each gets its own complete answer and its own figures."""
    engine = engine_on(llama_server)
    results: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def run(prompt: str, budget: int) -> None:
        try:
            pieces = list(engine.generate(prompt, max_tokens=budget))
            results[prompt] = (len(pieces), engine.stats.generated_tokens)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p, b))
               for p, b in (("import os\n", 5), ("def main():\n", 9))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
    finally:
        engine.close()
    assert not errors
    assert results["import os\n"][0] == results["import os\n"][1] <= 5
    assert results["def main():\n"][0] == results["def main():\n"][1] <= 9


def test_generate_many_gives_each_request_its_own_text_and_stops(llama_server: Server) -> None:
    """A batch to a server: each text is the one ``generate`` gives alone, a stop ends one only."""
    from symergion.engine.base import GenerationRequest

    engine = engine_on(llama_server)
    requests = [GenerationRequest("import os\n", 12), GenerationRequest("def main():\n", 12),
                GenerationRequest("class Point:\n", 12)]
    try:
        alone = ["".join(engine.generate(r.prompt, max_tokens=r.max_tokens)) for r in requests]
        texts = ["", "", ""]
        counts = [0, 0, 0]
        stopped: set[int] = set()
        for index, piece in engine.generate_many(requests, stopped=stopped):
            assert index not in stopped
            texts[index] += piece
            counts[index] += 1
            if index == 1 and counts[1] == 3:
                stopped.add(1)
        # llama_cpp.server has no /props: it decodes one request at a time.
        assert engine.info.slots == 1
    finally:
        engine.close()
    assert texts[0] == alone[0] and texts[2] == alone[2]
    assert alone[1].startswith(texts[1]) and len(texts[1]) < len(alone[1])
    assert [s.stop for s in engine.batch_stats] == ["max_tokens", "stopped", "max_tokens"]
    assert counts == [12, 3, 12]
    # The server may have streamed a piece more before the stop reached its thread.
    assert [s.generated_tokens for s in engine.batch_stats][::2] == [12, 12]
    assert 3 <= engine.batch_stats[1].generated_tokens < 12
