"""scripts/finetune/finetune.py reading what `symergion harvest` writes: the rows each trainer
gets, and the errors on a missing or broken harvest.

The recipe end to end (training, conversion, loading the adapter) is in tests/finetune.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from symergion.errors import ModelError, TaskInputError
from tests.helpers.finetune import PROMPT, write_harvest


@pytest.mark.parametrize(("method", "columns"), [
    ("sft", ["prompt", "completion"]),
    ("dpo", ["prompt", "chosen", "rejected"]),
    ("kto", ["prompt", "completion", "label"]),
])
def test_rows_keep_the_columns_each_trainer_reads(finetune_module: ModuleType, tmp_path: Path,
                                                  method: str, columns: list[str]) -> None:
    rows = finetune_module.load_rows(write_harvest(tmp_path / "data", n=4), method)
    assert len(rows) == 4
    assert all(list(row) == columns for row in rows), "source and other fields are dropped"
    assert rows[0]["prompt"] == PROMPT


def test_kto_labels_stay_booleans(finetune_module: ModuleType, tmp_path: Path) -> None:
    rows = finetune_module.load_rows(write_harvest(tmp_path / "data", n=4), "kto")
    assert [row["label"] for row in rows] == [True, False, True, False]


def test_a_missing_harvest_says_to_harvest(finetune_module: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(TaskInputError, match=r"sft\.jsonl does not exist") as caught:
        finetune_module.load_rows(tmp_path, "sft")
    assert f"symergion harvest --out {tmp_path}" in (caught.value.hint or "")


def test_a_bad_row_is_named_by_file_and_line(finetune_module: ModuleType, tmp_path: Path) -> None:
    data = write_harvest(tmp_path / "data", n=2)
    with (data / "preference.jsonl").open("a") as handle:
        handle.write(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(TaskInputError, match=r"preference\.jsonl:3: 'rejected' must be a string"):
        finetune_module.load_rows(data, "dpo")


@pytest.mark.parametrize(("content", "message"), [
    ("", "has no rows"),
    ("{not json\n", "invalid JSON"),
    ('["prompt"]\n', "expected a JSON object"),
])
def test_empty_or_broken_files_are_refused(finetune_module: ModuleType, tmp_path: Path,
                                           content: str, message: str) -> None:
    (tmp_path / "sft.jsonl").write_text(content)
    with pytest.raises(TaskInputError, match=message):
        finetune_module.load_rows(tmp_path, "sft")


def test_kto_needs_both_labels(finetune_module: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "kto.jsonl").write_text(
        json.dumps({"prompt": "p", "completion": "c", "label": True}) + "\n")
    with pytest.raises(TaskInputError, match="only good answers"):
        finetune_module.load_rows(tmp_path, "kto")


def test_an_unknown_method_lists_the_methods(finetune_module: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(TaskInputError, match="unknown method") as caught:
        finetune_module.load_rows(tmp_path, "ppo")
    assert caught.value.hint == "use one of: sft, dpo, kto"


def test_the_checkpoint_entry_is_relative_to_the_models_dir(finetune_module: ModuleType,
                                                            tmp_path: Path) -> None:
    entry = finetune_module.checkpoint_entry(tmp_path / "m" / "base.gguf",
                                             tmp_path / "m" / "a" / "lora.gguf", name="tuned",
                                             models_dir=tmp_path / "m")
    assert entry == {"name_or_path": "base.gguf", "lora": "a/lora.gguf", "lora_scale": 1.0,
                     "name": "tuned", "trait": "coding"}
    outside = finetune_module.checkpoint_entry(tmp_path / "base.gguf", tmp_path / "lora.gguf",
                                               name="tuned")
    assert outside["name_or_path"] == str(tmp_path / "base.gguf")


def test_the_recipe_needs_the_lora_converter(finetune_module: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"has no convert_lora_to_gguf\.py") as caught:
        finetune_module.convert.converter_script(tmp_path, finetune_module.LORA_CONVERTER)
    assert "requirements-convert_lora_to_gguf.txt" in (caught.value.hint or "")
