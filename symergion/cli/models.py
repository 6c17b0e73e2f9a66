"""`symergion models`: list, inspect, pull GGUF models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from symergion.cli.options import ConfigOpt, JsonOpt, ModelsOpt
from symergion.cli.output import emit_json, info

if TYPE_CHECKING:
    from symergion.models.adapters import AdapterInfo
    from symergion.models.listing import ModelEntry
    from symergion.models.metadata import ModelInfo

app = typer.Typer(help="List, inspect and pull GGUF models.", no_args_is_help=True,
                  rich_markup_mode=None)

FileOpt = Annotated[
    str | None,
    typer.Option("--file", "-f", metavar="PATTERN",
                 help="File to pull: exact name or glob, e.g. '*Q8_0.gguf'."),
]
QuantOpt = Annotated[
    str | None,
    typer.Option("--quant", "-q", help="Quantization to pick from the repository's files.",
                 show_default="Q4_K_M when --file is not given"),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option("--revision", help="Branch, tag or commit of the repository.",
                 show_default="main"),
]


@app.command("list")
def list_models_cmd(
    config: ConfigOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the configured checkpoints and the GGUF files in the models directory.

    LoRA adapters are listed with the models they fit. Exits with 1 when a configured
    checkpoint (or its adapter) is missing, unreadable or mismatched, or its server is down; each
    is shown with the fix.
    """
    from symergion.config.load import load_config
    from symergion.models.listing import list_models

    cfg = load_config(config, models)
    entries = list_models(cfg)
    if as_json:
        emit_json({
            "config": str(cfg.source) if cfg.source else None,
            "models_dir": str(cfg.models_dir),
            "models": [e.as_dict() for e in entries],
        })
    else:
        info(f"config: {cfg.source or 'built-in default'}; models directory: {cfg.models_dir}")
        _print_table(entries)
    if any(e.source == "config" and not e.usable for e in entries):
        raise typer.Exit(1)


def _print_table(entries: list[ModelEntry]) -> None:
    header = ("BRANCH NAME", "TRAIT", "ARCH", "PARAMS", "QUANT", "CONTEXT", "CHAT", "SIZE",
              "STATUS", "MODEL")
    rows: list[tuple[str, ...]] = []
    for e in entries:
        m = e.info
        a = e.adapter
        if e.kind == "adapter":
            rows.append((
                e.branch_name or "-",
                "adapter",
                a.architecture if a else (m.architecture if m else "-"),
                f"r{a.rank}" if a else "-",
                a.quantization if a else "-",
                "-",
                "-",
                human_size(a.file_size) if a else "-",
                e.status,
                e.name_or_path + (f"  (fits: {', '.join(e.fits)})" if e.fits else ""),
            ))
            continue
        model = e.name_or_path
        if e.lora:
            model += f" + lora {e.lora}" + (f" x{e.lora_scale:g}" if e.lora_scale != 1.0 else "")
        rows.append((
            e.branch_name or "-",
            e.trait or "-",
            m.architecture if m else "-",
            m.size_label if m else "-",
            m.quantization if m else "-",
            str(m.context_length) if m and m.context_length else (
                str(e.served_context) if e.served_context else "-"),
            ("yes" if m.has_chat_template else "no") if m else "-",
            human_size(m.file_size) if m else "-",
            e.status,
            f"{e.endpoint} serves {e.served_model}" if e.served_model else model,
        ))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]
        typer.echo("  ".join(cells).rstrip())
    for e in entries:
        if e.usable:
            continue
        typer.echo(f"\n{e.status}: {e.name_or_path}")
        typer.echo(f"  problem: {e.problem}")
        if e.fix:
            typer.echo(f"  fix: {e.fix}")


@app.command("info")
def info_cmd(
    model: Annotated[str, typer.Argument(
        metavar="PATH",
        help="A GGUF file, hf://ORG/REPO/FILE.gguf or embedded:gemma3-270m.",
    )],
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the metadata of one GGUF: size, quantization, tokenizer, thinking markers.

    For a reasoning model it suggests reasoning_start_tokens and reasoning_stop_tokens; for a
    LoRA adapter it shows its type, alpha, rank and the base model it was trained on.
    """
    from symergion.models.adapters import read_adapter
    from symergion.models.metadata import read_metadata
    from symergion.models.resolve import resolve_model

    # A path that exists from here is meant as given; otherwise resolve like a config entry.
    base = Path.cwd() if models is None or Path(model).expanduser().exists() else models
    path = resolve_model(model, base)
    meta = read_metadata(path)
    if meta.is_adapter:
        adapter = read_adapter(path)
        fields = adapter.suggested_fields(model if not Path(model).exists() else str(path))
        if as_json:
            emit_json({**adapter.as_dict(), "suggested_checkpoint_fields": fields})
            return
        for label, value in _adapter_lines(adapter):
            typer.echo(f"{label:<16}{value}")
        typer.echo("\nadd to the checkpoint of its base model:")
        typer.echo(json.dumps(fields, indent=2, ensure_ascii=False))
        return
    suggestion = meta.suggested_checkpoint(model if not Path(model).exists() else str(path))
    if as_json:
        emit_json({**meta.as_dict(), "suggested_checkpoint": suggestion})
        return
    for label, value in _info_lines(meta):
        typer.echo(f"{label:<16}{value}")
    typer.echo("\nsuggested checkpoint for a config:")
    typer.echo(json.dumps(suggestion, indent=2, ensure_ascii=False))


def _info_lines(meta: ModelInfo) -> list[tuple[str, str]]:
    def token(token_id: int | None, text: str | None) -> str:
        return "-" if token_id is None else f"{token_id} {text!r}"

    lines = [
        ("file", f"{meta.path} ({human_size(meta.file_size)})"),
        ("name", meta.name or "-"),
        ("architecture", meta.architecture),
        ("parameters", f"{meta.parameter_count:,} ({meta.size_label})"),
        ("quantization", meta.quantization),
        ("context length", str(meta.context_length or "-")),
        ("chat template", "yes" if meta.has_chat_template else "no"),
        ("tokenizer", f"{meta.tokenizer_model or '-'} (pre: {meta.tokenizer_pre or '-'}), "
                      f"{meta.vocab_size:,} tokens"),
        ("bos token", token(meta.bos_token_id, meta.bos_token)),
        ("eos token", token(meta.eos_token_id, meta.eos_token)),
    ]
    t = meta.thinking
    if t is None:
        lines.append(("thinking", "no thinking markers in the chat template (a coding model)"))
    else:
        lines.append(("thinking", f"{t.start} ({_id(t.start_token_id)}) … "
                                  f"{t.stop} ({_id(t.stop_token_id)})"))
        lines.append(("reasoning tokens", f"reasoning_start_tokens {list(t.start_tokens)}, "
                                          f"reasoning_stop_tokens {list(t.stop_tokens)}"))
    lines.append(("gguf", f"version {meta.gguf_version}, {meta.tensor_count} tensors"))
    return lines


def _adapter_lines(adapter: AdapterInfo) -> list[tuple[str, str]]:
    from symergion.models.adapters import describe_adapter_base

    tensors = sorted({t.tensor.split(".")[-2] if t.tensor.startswith("blk.") else t.tensor
                      for t in adapter.targets})
    alpha = "-" if adapter.alpha is None else f"{adapter.alpha:g}"
    return [
        ("file", f"{adapter.path} ({human_size(adapter.file_size)})"),
        ("name", adapter.name or "-"),
        ("type", f"adapter ({adapter.adapter_type})"),
        ("base model", describe_adapter_base(adapter)),
        ("architecture", adapter.architecture),
        ("lora alpha", alpha),
        ("rank", str(adapter.rank)),
        ("targets", f"{len(adapter.targets)} matrices: {', '.join(tensors)}"),
        ("parameters", f"{adapter.parameter_count:,}"),
        ("quantization", adapter.quantization),
        ("gguf", f"version {adapter.gguf_version}"),
    ]


def _id(token_id: int | None) -> str:
    return "not in vocab" if token_id is None else f"token {token_id}"


@app.command("pull")
def pull_cmd(
    repo_id: Annotated[str, typer.Argument(
        metavar="REPO_ID", help="Hugging Face repository, e.g. Qwen/Qwen3-1.7B-GGUF.",
    )],
    file: FileOpt = None,
    quant: QuantOpt = None,
    revision: RevisionOpt = None,
    models: ModelsOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a GGUF from Hugging Face into its cache, or into --models DIR.

    Progress goes to stderr, the file's path to stdout. HF_TOKEN and HF_HUB_OFFLINE are
    honoured; without network, files downloaded before are used, and the error says where a
    file fetched by hand belongs.
    """
    from symergion.models.pull import pull_model

    manual_dir = models
    if manual_dir is None and config is not None:
        from symergion.config.load import load_config

        manual_dir = load_config(config).models_dir
    result = pull_model(repo_id, pattern=file, quant=quant, models_dir=models,
                        revision=revision, manual_dir=manual_dir)
    if as_json:
        emit_json(result.as_dict())
        return
    meta = result.info
    where = "models directory" if result.in_models_dir else "Hugging Face cache"
    info(f"{result.repo_id}/{result.filename}: {meta.architecture}, {meta.size_label}, "
         f"{meta.quantization}, {human_size(meta.file_size)} in the {where}")
    name_or_path: str = result.uri
    if result.in_models_dir and models is not None:
        name_or_path = str(result.path.relative_to(Path(models).absolute()))
    suggestion: dict[str, Any] = meta.suggested_checkpoint(name_or_path)
    info("use it in a config as:\n" + json.dumps(suggestion, indent=2, ensure_ascii=False))
    typer.echo(str(result.path))


def human_size(size: int) -> str:
    """Return a byte count as a short decimal size (``253.1 MB``)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns
