"""Pulling GGUF files with huggingface-hub, offline, from a pre-filled cache."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from symergion.errors import ModelError
from symergion.models.errors import ModelNotFoundError
from symergion.models.pull import pull_model, select_gguf

REPO = "org/tiny-GGUF"


@pytest.fixture
def filled_cache(hf_cache: Path, tiny_gguf: Path, thinking_gguf: Path,
                 cache_file: Callable[..., Path]) -> Path:
    """A cache holding two quantizations of one repository."""
    cache_file(hf_cache, REPO, "tiny-Q4_K_M.gguf", tiny_gguf)
    cache_file(hf_cache, REPO, "tiny-Q8_0.gguf", thinking_gguf)
    return hf_cache


# --- choosing the file ------------------------------------------------------------------------

FILES = ["README.md", "Qwen3-1.7B-Q4_K_M.gguf", "Qwen3-1.7B-Q4_K_S.gguf", "Qwen3-1.7B-Q8_0.gguf",
         "Qwen3-1.7B-IQ4_XS.gguf", "mmproj-Qwen3-Q4_K_M.gguf"]


@pytest.mark.parametrize(("pattern", "quant", "expected"), [
    (None, None, ["Qwen3-1.7B-Q4_K_M.gguf"]),        # the default quantization
    (None, "q8_0", ["Qwen3-1.7B-Q8_0.gguf"]),        # case does not matter
    (None, "Q4_K_S", ["Qwen3-1.7B-Q4_K_S.gguf"]),
    (None, "IQ4_XS", ["Qwen3-1.7B-IQ4_XS.gguf"]),
    ("*Q8_0*", None, ["Qwen3-1.7B-Q8_0.gguf"]),
    ("Qwen3-1.7B-Q4_K_S.gguf", None, ["Qwen3-1.7B-Q4_K_S.gguf"]),
    ("mmproj*", None, ["mmproj-Qwen3-Q4_K_M.gguf"]),  # only when asked for
])
def test_select_gguf(pattern: str | None, quant: str | None, expected: list[str]) -> None:
    assert select_gguf(FILES, pattern=pattern, quant=quant) == expected


def test_select_gguf_takes_every_part_of_a_split_file() -> None:
    files = ["big/m-Q4_K_M-00002-of-00002.gguf", "big/m-Q4_K_M-00001-of-00002.gguf",
             "m-Q8_0.gguf"]
    assert select_gguf(files) == ["big/m-Q4_K_M-00001-of-00002.gguf",
                                  "big/m-Q4_K_M-00002-of-00002.gguf"]


def test_select_gguf_refuses_to_guess_between_several_files() -> None:
    with pytest.raises(ModelError, match=r"2 \.gguf files match") as err:
        select_gguf(["a-Q4_K_M.gguf", "b-Q4_K_M.gguf"])
    assert "--file" in (err.value.hint or "")


def test_select_gguf_without_the_quantization_lists_the_files() -> None:
    with pytest.raises(ModelNotFoundError, match="Q5_K_M") as err:
        select_gguf(FILES, quant="Q5_K_M")
    assert "Qwen3-1.7B-Q8_0.gguf" in (err.value.hint or "")


def test_select_gguf_in_a_repository_without_gguf() -> None:
    with pytest.raises(ModelNotFoundError, match=r"no \.gguf file"):
        select_gguf(["config.json", "model.safetensors"])


def test_select_gguf_takes_the_only_file_when_no_quantization_matches() -> None:
    assert select_gguf(["model-f16.gguf", "README.md"]) == ["model-f16.gguf"]


# --- pulling, offline -------------------------------------------------------------------------


def test_pull_from_the_cache_offline(filled_cache: Path) -> None:
    result = pull_model(REPO)
    assert result.filename == "tiny-Q4_K_M.gguf"
    assert result.path.is_relative_to(filled_cache)
    assert result.uri == "hf://org/tiny-GGUF/tiny-Q4_K_M.gguf"
    assert not result.in_models_dir
    assert result.info.architecture == "llama"


def test_pull_picks_the_requested_quantization(filled_cache: Path) -> None:
    assert pull_model(REPO, quant="Q8_0").filename == "tiny-Q8_0.gguf"
    assert pull_model(REPO, pattern="*Q8_0.gguf").filename == "tiny-Q8_0.gguf"


def test_pull_into_the_models_dir_copies_from_the_cache_offline(filled_cache: Path,
                                                                tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    result = pull_model(REPO, models_dir=models_dir)
    assert result.path == (models_dir / "tiny-Q4_K_M.gguf").absolute()
    assert result.in_models_dir
    assert not list(models_dir.glob(".*.tmp"))


def test_pull_uses_a_file_already_in_the_models_dir(hf_cache: Path, tmp_path: Path,
                                                    tiny_gguf: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copyfile(tiny_gguf, models_dir / "tiny-Q4_K_M.gguf")
    result = pull_model(REPO, pattern="tiny-Q4_K_M.gguf", models_dir=models_dir)
    assert result.path == (models_dir / "tiny-Q4_K_M.gguf").absolute()


def test_pull_offline_with_nothing_cached_says_where_to_put_the_file(hf_cache: Path,
                                                                     tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set") as err:
        pull_model(REPO, manual_dir=tmp_path / "models")
    assert str(tmp_path / "models") in (err.value.hint or "")
    assert "https://huggingface.co/org/tiny-GGUF" in (err.value.hint or "")


def test_pull_offline_of_a_named_file_gives_its_exact_path(hf_cache: Path,
                                                           tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not downloaded") as err:
        pull_model(REPO, pattern="tiny-Q5_K_M.gguf", models_dir=tmp_path)
    hint = err.value.hint or ""
    assert f"put it at {tmp_path / 'tiny-Q5_K_M.gguf'}" in hint
    assert "https://huggingface.co/org/tiny-GGUF/resolve/main/tiny-Q5_K_M.gguf" in hint


def test_pull_without_network_falls_back_to_the_cache(
        filled_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    class ConnectError(Exception):
        """Stands in for the HTTP library's connection error."""

    def unreachable(*args: object, **kwargs: object) -> list[str]:
        raise ConnectError("Name or service not known")

    # Online mode, but the Hub cannot be reached.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _cache_only_download())
    assert pull_model(REPO, quant="Q8_0").filename == "tiny-Q8_0.gguf"


def _cache_only_download() -> Callable[..., str]:
    from huggingface_hub import hf_hub_download

    def download(*args: object, **kwargs: object) -> str:
        # Once the listing failed, no second network round trip may be tried.
        assert kwargs["local_files_only"] is True
        return hf_hub_download(*args, **kwargs)  # type: ignore[arg-type]

    return download


def test_pull_reports_an_unreachable_hub_with_the_manual_path(
        hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    class ConnectError(Exception):
        """Stands in for the HTTP library's connection error."""

    def unreachable(*args: object, **kwargs: object) -> str:
        raise ConnectError("Name or service not known")

    def not_needed(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("a named file needs no listing")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", not_needed)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(ModelNotFoundError, match="cannot reach the Hugging Face Hub") as err:
        pull_model(REPO, pattern="tiny-Q4_K_M.gguf", models_dir=tmp_path)
    assert f"put it at {tmp_path / 'tiny-Q4_K_M.gguf'}" in (err.value.hint or "")


@pytest.mark.parametrize("repo_id", ["tiny-GGUF", "org/", "a/b/c"])
def test_pull_rejects_a_malformed_repository_id(repo_id: str) -> None:
    with pytest.raises(ModelError, match="not a repository id"):
        pull_model(repo_id)


def test_pull_refuses_a_cached_file_that_is_not_gguf(hf_cache: Path, tmp_path: Path,
                                                     cache_file: Callable[..., Path]) -> None:
    broken = tmp_path / "x.gguf"
    broken.write_bytes(b"<html>rate limited</html>")
    cache_file(hf_cache, REPO, "tiny-Q4_K_M.gguf", broken)
    with pytest.raises(ModelError, match="not a GGUF file"):
        pull_model(REPO)


def test_pull_without_network_and_nothing_cached_names_the_manual_path(
        hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    class ConnectError(Exception):
        """Stands in for the HTTP library's connection error."""

    def unreachable(*args: object, **kwargs: object) -> list[str]:
        raise ConnectError("Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", unreachable)
    with pytest.raises(ModelNotFoundError, match="the Hub cannot be reached") as err:
        pull_model(REPO, models_dir=tmp_path)
    assert str(tmp_path) in (err.value.hint or "")
