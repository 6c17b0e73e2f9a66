"""The extra-buffer probe's child process: load a model with extra buffer types, decode a batch.

``engine.extra_buffers`` runs ``python -m symergion.engine.probe MODEL`` and reads only its exit
status: a crash signal means extra buffer types are off on this machine. The probe is a program
of its own, above ``engine.llama``, because the engine asks ``extra_buffers`` for the machine's
decision when it loads a model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from symergion.config.sampling import Sampling
from symergion.engine.extra_buffers import PROBE_TOKENS
from symergion.engine.llama import LlamaEngine


def probe(model_path: Path) -> None:
    """Load a model with extra buffer types and decode one batch: the crash, if any, is here."""
    engine = LlamaEngine(model_path, model_name="probe", n_ctx=512, n_threads=os.cpu_count() or 1,
                         sampling=Sampling(), extra_buffers=True)
    # About PROBE_TOKENS tokens (six a line), evaluated in one batch, then one single-token decode.
    prompt = "".join(f"value_{i} = {i}\n" for i in range(PROBE_TOKENS // 6 + 1))
    for _ in engine.generate(prompt, max_tokens=2):
        pass
    engine.close()


if __name__ == "__main__":
    probe(Path(sys.argv[1]))
