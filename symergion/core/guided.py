"""Write a guided test file through an engine: ``guided_file``.

``symergion.verify.guide`` writes the file test by test from a generate function; this module
gives it one made of a model's engine, with the prompt's shared part kept in the KV cache.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

from symergion.config.schema import Checkpoint, GuideSpec
from symergion.core import prompt as prompts
from symergion.engine.base import Engine, GenerationRequest
from symergion.verify import guide
from symergion.verify.drive import Ask
from symergion.verify.examples import module_alias

VARIANT_TEMPERATURE = 0.8  # the variants of a greedy checkpoint's guided file


def guided_file(engine: Engine, prompt: prompts.Prompt, source_text: str, source: str,
                destination: str, budget: int, spec: GuideSpec, coder: Checkpoint, *,
                cancel: threading.Event, on_token: Callable[[int], None],
                marks: tuple[int, ...] = (),
                out_of_time: Callable[[], bool] | None = None,
                on_test: Callable[[int, int], None] | None = None) -> guide.Guided:
    """Write a test file with ``symergion.verify.guide`` through an engine; text "" if invalid.

    Variants after the first are sampled with their own seeds, at the checkpoint's temperature
    when it samples, else at ``VARIANT_TEMPERATURE`` (greedy decoding would repeat the first).
    The tests of one variant round are decoded together (``Engine.generate_many``).
    ``marks`` are prefixes of the prompt an earlier prompt of the pass ended its shared part
    at (a repair round's prompt is the first prompt with more feedback): their KV is kept.
    """
    count = 0

    def counted(pieces: Iterable[Any]) -> Iterator[Any]:
        # The guide closes a segment's stream when the test ends; the engine's stream must
        # close then too (a worker stops generating before the next request).
        nonlocal count
        try:
            for piece in pieces:
                count += 1
                on_token(count)
                yield piece
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()

    # Where the file so far ends in the prompt: every later prompt of this file shares it, and
    # the engine keeps its KV instead of evaluating the file again for each test.
    shared: list[int] = [*marks]

    def marked(text: str) -> tuple[int, ...]:
        return tuple(m for m in shared if m < len(text))

    def generate(text: str, max_tokens: int, stable_prefix: int) -> Iterator[str]:
        return counted(engine.generate(text, max_tokens=max_tokens, cancel=cancel,
                                       stable_prefix=stable_prefix, marks=marked(text)))

    temperature = None if coder.sampling.temperature > 0 else VARIANT_TEMPERATURE

    def sample_many(asks: Sequence[Ask], seeds: Sequence[int], stopped: Collection[int]
                    ) -> Iterator[tuple[int, str]]:
        requests = [GenerationRequest(ask.prompt, ask.max_tokens, ask.stable_prefix, seed, temperature,
                                      marked(ask.prompt)) for ask, seed in zip(asks, seeds, strict=True)]
        return counted(engine.generate_many(requests, cancel=cancel, stopped=stopped))

    written = guide.guided_file(
        generate, guide.GuidedTask(prompt.text, prompt.code_starter, source_text, module_alias(source),
                                   destination),
        guide.GuideOptions(budget=budget, limit=spec.targets, variants=spec.variants,
                           sample_many=sample_many,
                           room=lambda text: engine.n_ctx - engine.count_tokens(text),
                           on_shared=shared.append, out_of_time=out_of_time, on_test=on_test))
    try:
        ast.parse(written.text)
    except SyntaxError:
        written.text = ""
    return written


__all__ = ["VARIANT_TEMPERATURE", "guided_file"]
