"""Harvested choices -> a LoRA trained with TRL and PEFT -> a GGUF adapter -> a config entry.

Usage::

    symergion harvest --out data/
    python scripts/finetune/finetune.py data/ --base ~/models/Qwen2.5-Coder-1.5B \\
        --base-gguf ~/models/Qwen2.5-Coder-1.5B-Q4_K_M.gguf --llama-cpp ~/src/llama.cpp

``symergion harvest`` writes ``sft.jsonl`` (``prompt``, ``completion``), ``preference.jsonl``
(``prompt``, ``chosen``, ``rejected``) and ``kto.jsonl`` (``prompt``, ``completion``, ``label``).
``--method`` picks the trainer: ``sft`` (default; the human's final files), ``dpo`` (chosen over
rejected candidates) or ``kto`` (unpaired good and bad answers). Training runs on the GPU when
there is one, else on the CPU (fine for a tiny model). The PEFT adapter is converted with
llama.cpp's ``convert_lora_to_gguf.py`` from the checkout given with ``--llama-cpp`` (the
llama-cpp-python sdist carries one under ``vendor/llama.cpp``); without ``--base-gguf`` the base
model is converted too. Then the adapter is loaded with the base GGUF in symergion's engine, and
the checkpoint entry to add to the config is printed on stdout.

The base model is read from a local directory only (``HF_HUB_OFFLINE`` is set for the run): the
GGUF adapter fits the exact weights it was trained on. The functions are importable (the tests
load this file as a module); only ``main`` prints.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

from symergion.errors import ModelError, TaskInputError
from symergion.models.adapters import adapter_mismatch, read_adapter

LORA_CONVERTER = "convert_lora_to_gguf.py"
DEFAULT_BASE_QUANT = "Q4_K_M"
# The harvest's file and the columns each trainer reads from it.
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sft": ("sft.jsonl", ("prompt", "completion")),
    "dpo": ("preference.jsonl", ("prompt", "chosen", "rejected")),
    "kto": ("kto.jsonl", ("prompt", "completion", "label")),
}


def _load_convert() -> ModuleType:
    """Import scripts/convert/convert.py, whose converter helpers this recipe reuses."""
    name = "symergion_convert"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "convert" / "convert.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


convert = _load_convert()


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_rows(data_dir: Path, method: str) -> list[dict[str, Any]]:
    """Read the harvest file ``method`` trains on, keeping the columns its trainer needs.

    Raises:
        TaskInputError: the file is missing, empty, or a row lacks a field; the message names
            the file and line.
    """
    if method not in METHODS:
        raise TaskInputError(f"unknown method {method!r}", hint="use one of: " + ", ".join(METHODS))
    filename, columns = METHODS[method]
    path = data_dir / filename
    if not path.is_file():
        raise TaskInputError(f"{path} does not exist",
                             hint=f"run `symergion harvest --out {data_dir}` in your repository")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskInputError(f"{where}: invalid JSON: {exc.msg}",
                                     hint="write the file again with `symergion harvest`") from None
            if not isinstance(raw, dict):
                raise TaskInputError(f"{where}: expected a JSON object per line")
            row: dict[str, Any] = {}
            for column in columns:
                value = raw.get(column)
                kind = bool if column == "label" else str
                if not isinstance(value, kind) or (kind is str and not value):
                    raise TaskInputError(
                        f"{where}: {column!r} must be a {'boolean' if kind is bool else 'string'}",
                        hint=f"{method} needs the fields {', '.join(columns)}; write the file "
                        "again with `symergion harvest`")
                row[column] = value
            rows.append(row)
    if not rows:
        raise TaskInputError(f"{path} has no rows",
                             hint="work through a few feedback rounds and merges, then harvest again")
    if method == "kto" and len({row["label"] for row in rows}) < 2:
        raise TaskInputError(f"{path} has only {'good' if rows[0]['label'] else 'bad'} answers",
                             hint="KTO needs both labels; use --method sft, or harvest more rounds")
    return rows


# --------------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """What the LoRA and its training run look like."""

    method: str = "sft"
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: str | tuple[str, ...] = "all-linear"
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 2e-4
    batch_size: int = 4
    gradient_accumulation: int = 1
    max_length: int = 4096
    seed: int = 0


def pick_device() -> str:
    """Return where training runs: ``cuda`` when a GPU is there, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train_lora(base: Path, rows: Sequence[dict[str, Any]], out_dir: Path,
               settings: TrainSettings, *, device: str | None = None,
               on_log: Callable[[dict[str, float]], None] | None = None) -> Path:
    """Train a LoRA on ``rows`` for the Hugging Face model in ``base``; return the PEFT dir.

    Args:
        base: a local Hugging Face checkpoint directory (config, weights, tokenizer).
        rows: the harvest rows, as ``load_rows`` returns them.
        out_dir: where the trainer works; the adapter is saved in ``out_dir/peft``.
        settings: the LoRA and the run.
        device: ``cuda`` or ``cpu`` (default: ``pick_device()``).
        on_log: told the trainer's logs (loss, step) as they come.
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    device = device or pick_device()
    on_gpu = device != "cpu"
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        base, local_files_only=True, dtype=torch.bfloat16 if bf16 else torch.float32)
    lora = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=settings.targets if isinstance(settings.targets, str)
                      else list(settings.targets), task_type="CAUSAL_LM")
    common: dict[str, Any] = {
        "output_dir": str(out_dir / "trainer"),
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "learning_rate": settings.learning_rate,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation,
        "max_length": settings.max_length,
        "seed": settings.seed,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": not on_gpu,
        "bf16": bf16,
        "disable_tqdm": True,
    }

    class Relay(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            if on_log is not None and logs:
                on_log({"step": state.global_step, **logs})

    dataset = Dataset.from_list(list(rows))
    trainer = _trainer(settings.method, model, tokenizer, dataset, lora, common)
    # The trainer prints its logs on stdout, which carries only the checkpoint entry here.
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(Relay())
    trainer.train()
    peft_dir = out_dir / "peft"
    trainer.save_model(str(peft_dir))
    if not (peft_dir / "adapter_config.json").is_file():
        raise ModelError(f"the trainer wrote no PEFT adapter to {peft_dir}",
                         hint="check the messages above; peft must be installed")
    return peft_dir


def _trainer(method: str, model: Any, tokenizer: Any, dataset: Any, lora: Any,
             common: dict[str, Any]) -> Any:
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        # Loss on the completion only: the prompt is the repository, not something to learn.
        return SFTTrainer(model=model, args=SFTConfig(**common, completion_only_loss=True),
                          train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer(model=model, args=DPOConfig(**common), train_dataset=dataset,
                          processing_class=tokenizer, peft_config=lora)
    from trl import KTOConfig, KTOTrainer

    return KTOTrainer(model=model, args=KTOConfig(**common), train_dataset=dataset,
                      processing_class=tokenizer, peft_config=lora)


# --------------------------------------------------------------------------------------------
# Convert and check
# --------------------------------------------------------------------------------------------


def convert_adapter(peft_dir: Path, base: Path, dst: Path, *, llama_cpp_dir: Path,
                    outtype: str = "f16", python: str | None = None) -> Path:
    """Convert a PEFT adapter to a GGUF adapter with llama.cpp's ``convert_lora_to_gguf.py``.

    Raises:
        ModelError: the checkout lacks the converter, the converter failed, or its output is
            not a GGUF adapter.
    """
    script = convert.converter_script(llama_cpp_dir, LORA_CONVERTER)
    convert.run_converter(script, [str(peft_dir), "--base", str(base)], dst, outtype=outtype,
                          python=python)
    read_adapter(dst)
    return dst


@dataclass(frozen=True)
class AdapterCheck:
    """An adapter that loaded with its base GGUF in symergion's engine and generated text."""

    text: str
    tokens: int
    seconds: float


def check_adapter(adapter: Path, base_gguf: Path, *, prompt: str = "def ",
                  n_tokens: int = 16, threads: int | None = None) -> AdapterCheck:
    """Load ``base_gguf`` with ``adapter`` in symergion's llama.cpp engine and generate.

    Raises:
        ModelError: the adapter does not fit the model, or llama.cpp cannot load or run it.
    """
    from symergion.config.sampling import Sampling
    from symergion.engine.llama import LlamaEngine

    problem = adapter_mismatch(read_adapter(adapter), base_gguf)
    if problem is not None:
        raise ModelError(f"{adapter.name} does not fit {base_gguf.name}: {problem}",
                         hint="pass --base-gguf with the GGUF of the model you trained on, or "
                         "leave it out to convert --base")
    started = time.perf_counter()
    engine = LlamaEngine(base_gguf, model_name=base_gguf.stem, n_ctx=512,
                         n_threads=threads or os.cpu_count() or 1, sampling=Sampling(),
                         lora=adapter)
    try:
        text = "".join(engine.generate(prompt, max_tokens=n_tokens))
        tokens = engine.stats.generated_tokens
    finally:
        engine.close()
    if tokens == 0:
        raise ModelError(f"{base_gguf.name} with {adapter.name} generated nothing",
                         hint="the adapter may be broken; train again with fewer steps or a "
                         "lower --learning-rate")
    return AdapterCheck(text=text, tokens=tokens, seconds=time.perf_counter() - started)


def checkpoint_entry(base_gguf: Path, adapter: Path, *, name: str,
                     models_dir: Path | None = None, scale: float = 1.0) -> dict[str, Any]:
    """Return the config checkpoint that runs ``base_gguf`` with ``adapter``.

    Paths inside ``models_dir`` are written relative to it, as a config resolves them.
    """
    def reference(path: Path) -> str:
        if models_dir is not None and path.absolute().is_relative_to(models_dir.absolute()):
            return str(path.absolute().relative_to(models_dir.absolute()))
        return str(path.absolute())

    return {"name_or_path": reference(base_gguf), "lora": reference(adapter),
            "lora_scale": scale, "name": name, "trait": "coding"}


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _say(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def finetune(
    data: Annotated[Path, typer.Argument(help="Directory written by `symergion harvest --out`.")],
    base: Annotated[Path, typer.Option("--base", help="The base model: a local Hugging Face "
                                       "checkpoint directory (the one your GGUF came from).")],
    llama_cpp: Annotated[Path, typer.Option("--llama-cpp", help="A llama.cpp checkout, for "
                                            "convert_lora_to_gguf.py.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output directory.", show_default="runs/<base>-<method>")] = None,
    method: Annotated[str, typer.Option("--method", "-m", help="sft, dpo or kto.")] = "sft",
    base_gguf: Annotated[Path | None, typer.Option(
        "--base-gguf", help="The base model's GGUF; converted from --base when not given.")]
        = None,
    base_quant: Annotated[str, typer.Option(
        "--base-quant", help="Quantization when converting the base.")] = DEFAULT_BASE_QUANT,
    name: Annotated[str | None, typer.Option(
        "--name", help="Branch name of the tuned checkpoint.",
        show_default="<base>-<method>")] = None,
    models: Annotated[Path | None, typer.Option(
        "--models", help="Models directory; paths inside it are printed relative to it.")]
        = None,
    rank: Annotated[int, typer.Option("--rank", "-r", min=1, help="LoRA rank.")] = 16,
    alpha: Annotated[float, typer.Option("--alpha", help="LoRA alpha.")] = 32.0,
    targets: Annotated[str, typer.Option(
        "--targets", help="Modules to adapt: all-linear, or names such as q_proj,v_proj.")]
        = "all-linear",
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the data.")] = 3.0,
    max_steps: Annotated[int, typer.Option(
        "--max-steps", help="Stop after this many steps (overrides --epochs).")] = -1,
    learning_rate: Annotated[float, typer.Option("--learning-rate", "--lr")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 4,
    gradient_accumulation: Annotated[int, typer.Option("--gradient-accumulation", min=1)] = 1,
    max_length: Annotated[int, typer.Option(
        "--max-length", min=16, help="Longest prompt + completion in tokens.")] = 4096,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    python: Annotated[str | None, typer.Option(
        "--python", help="Interpreter with the converters' requirements.",
        show_default="this one")] = None,
    threads: Annotated[int | None, typer.Option("--threads", "-t", help="CPU threads for the "
                                                "check.", show_default="all cores")] = None,
) -> None:
    """Train a LoRA on harvested choices, convert it to GGUF, check it, print the config entry."""
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the base is local; never reach for the Hub
    base = base.expanduser().absolute()
    if not (base / "config.json").is_file():
        raise ModelError(f"{base} is not a Hugging Face checkpoint (no config.json)",
                         hint="pass the directory of the model your GGUF was converted from")
    convert.converter_script(llama_cpp, LORA_CONVERTER)  # fail now, not after training
    label = name or f"{base.name}-{method}"
    out = (out or Path("runs") / label).expanduser().absolute()
    rows = load_rows(data.expanduser(), method)
    device = pick_device()
    _say(f"{method}: {len(rows)} rows from {data}; training a rank-{rank} LoRA of {base.name} "
         f"on the {device.upper()}")
    settings = TrainSettings(method=method, rank=rank, alpha=alpha,
                             targets=targets if targets == "all-linear"
                             else tuple(t.strip() for t in targets.split(",") if t.strip()),
                             epochs=epochs, max_steps=max_steps, learning_rate=learning_rate,
                             batch_size=batch_size, gradient_accumulation=gradient_accumulation,
                             max_length=max_length, seed=seed)

    def progress(logs: dict[str, float]) -> None:
        if "loss" in logs:
            _say(f"  step {int(logs['step'])}: loss {logs['loss']:.4f}")

    peft_dir = train_lora(base, rows, out, settings, device=device, on_log=progress)
    _say(f"trained in {time.perf_counter() - started:.0f}s; PEFT adapter in {peft_dir}")
    adapter = convert_adapter(peft_dir, base, out / f"{label}-lora.gguf", llama_cpp_dir=llama_cpp,
                              python=python)
    _say(f"wrote {adapter}")
    if base_gguf is None:
        conversion = convert.convert_checkpoint(base, llama_cpp_dir=llama_cpp,
                                                out=out / f"{base.name}-{base_quant.upper()}.gguf",
                                                quant=base_quant, python=python, threads=threads)
        base_gguf = conversion.gguf
        _say(f"wrote {base_gguf}")
    base_gguf = base_gguf.expanduser().absolute()
    check = check_adapter(adapter, base_gguf, threads=threads)
    _say(f"checked: {base_gguf.name} + {adapter.name} loads in symergion and generates "
         f"({check.tokens} tokens: {check.text!r})")
    _say(f"done in {time.perf_counter() - started:.0f}s; add this checkpoint to your config:")
    entry = checkpoint_entry(base_gguf, adapter, name=label, models_dir=models)
    typer.echo(json.dumps(entry, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    return int(_load_convert().run_app(app, "finetune.py", argv))

if __name__ == "__main__":
    sys.exit(main())
