"""Tiny real GGUF files that llama.cpp loads: a llama architecture with random weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CONVERT_SCRIPT = ROOT / "scripts" / "convert" / "convert.py"

# A Qwen3-like chat template: thinking markers written as Jinja string literals.
THINKING_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.reasoning_content %}{{- '<think>\\n' + message.reasoning_content "
    "+ '\\n</think>\\n\\n' }}{%- endif %}{{- message.content + '<|im_end|>\\n' }}{%- endfor %}"
)

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
WORDS = ["▁def", "▁test", "▁import", "▁unittest", "▁class", "▁self", "▁return", "▁the", "▁a",
         "(", ")", ":", "▁=", "_", "<think>", "</think>"]


def tiny_vocab() -> list[str]:
    """Return a SentencePiece-style vocab: specials, all bytes, a few words and markers."""
    return ["<unk>", "<s>", "</s>", *BYTE_TOKENS, *WORDS]


def write_tiny_gguf(
    path: Path,
    *,
    n_embd: int = 256,
    n_ff: int = 512,
    n_layer: int = 2,
    n_head: int = 4,
    n_ctx: int = 512,
    tokens: Sequence[str] | None = None,
    chat_template: str | None = None,
    dtype: type[np.floating] = np.float16,
    name: str = "Tiny Llama",
    seed: int = 0,
) -> Path:
    """Write a small llama-architecture GGUF with random weights that llama.cpp can load.

    Rows are 256 wide so that k-quants (Q4_K_M) apply to every matrix.
    """
    import gguf

    vocab = list(tokens if tokens is not None else tiny_vocab())
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    ftype = gguf.LlamaFileType.ALL_F32 if dtype == np.float32 else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(ftype)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab)
    writer.add_token_scores([0.0 if i < 3 else -float(i) for i in range(len(vocab))])
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    types += [gguf.TokenType.NORMAL] * (len(vocab) - len(types))
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(dtype)

    def norm() -> np.ndarray:
        return np.ones(n_embd, dtype=np.float32)

    writer.add_tensor("token_embd.weight", weight(len(vocab), n_embd))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{part}.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", weight(len(vocab), n_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
