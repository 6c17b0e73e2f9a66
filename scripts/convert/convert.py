"""Hugging Face checkpoint -> GGUF -> quantized GGUF, a load-and-generate check, config migration.

Usage::

    python scripts/convert/convert.py convert ~/models/Qwen3-1.7B --llama-cpp ~/src/llama.cpp
    python scripts/convert/convert.py quantize model-F16.gguf --quant Q8_0
    python scripts/convert/convert.py verify model-Q4_K_M.gguf
    python scripts/convert/convert.py migrate-config ~/models/original.json

``convert`` runs llama.cpp's own ``convert_hf_to_gguf.py`` from the checkout given with
``--llama-cpp`` (this project ships no llama.cpp code; the converter needs the packages in that
checkout's ``requirements/requirements-convert_hf_to_gguf.txt``), then quantizes with
llama-cpp-python's binding of ``llama_model_quantize`` and checks that the result loads and
generates. Every output is written to a temporary file and renamed into place, so an
interrupted run never leaves a partial GGUF behind.

The functions are importable (the tests load this file as a module); only ``main`` prints.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from symergion.config.parse import parse_config
from symergion.errors import ConfigError, ModelError, SymergionError
from symergion.models.hub import HF_SCHEME
from symergion.models.metadata import ModelInfo, check_gguf, read_metadata

DEFAULT_QUANT = "Q4_K_M"
CONVERTER = "convert_hf_to_gguf.py"
# These types need an importance matrix, which this script does not compute.
NEEDS_IMATRIX = ("IQ1_", "IQ2_", "Q2_K_S")


# --------------------------------------------------------------------------------------------
# Quantize
# --------------------------------------------------------------------------------------------


def quant_types() -> dict[str, int]:
    """Return the quantization names llama.cpp offers, mapped to their ``llama_ftype``."""
    import llama_cpp

    types: dict[str, int] = {}
    for attr in dir(llama_cpp):
        for prefix in ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_"):
            if attr.startswith(prefix):
                types[attr[len(prefix):]] = int(getattr(llama_cpp, attr))
    return types


def parse_quant(name: str) -> int:
    """Return the ``llama_ftype`` of a quantization name such as ``Q4_K_M`` or ``q8_0``.

    Raises:
        ModelError: the name is unknown or needs an importance matrix.
    """
    types = quant_types()
    key = name.upper()
    if key not in types or key == "GUESSED":
        usable = sorted(k for k in types if k != "GUESSED" and not k.startswith(NEEDS_IMATRIX))
        raise ModelError(f"unknown quantization {name!r}", hint="use one of: " + ", ".join(usable))
    if key.startswith(NEEDS_IMATRIX):
        raise ModelError(f"{key} needs an importance matrix, which this script does not make",
                         hint="use Q4_K_M, Q5_K_M, Q6_K or Q8_0, or llama.cpp's llama-imatrix "
                         "and llama-quantize")
    return types[key]


@contextmanager
def atomic_output(dst: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dst`` that is renamed to ``dst`` if the block succeeds."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def quantize(src: Path, dst: Path, *, quant: str = DEFAULT_QUANT, threads: int | None = None,
             allow_requantize: bool = False) -> ModelInfo:
    """Quantize the GGUF ``src`` into ``dst`` with llama.cpp's ``llama_model_quantize``.

    Args:
        src: an F32/F16/BF16 GGUF (or a quantized one with ``allow_requantize``).
        dst: the output file; written through a temporary file and renamed.
        quant: the target type, e.g. ``Q4_K_M`` (default), ``Q8_0``, ``Q6_K``.
        threads: CPU threads (default: all).
        allow_requantize: accept an already quantized input (quality suffers).

    Raises:
        ModelError: the input is unusable, the type unknown, or llama.cpp failed.
    """
    import llama_cpp

    ftype = parse_quant(quant)
    source = read_metadata(src)
    if source.quantization not in ("F32", "F16", "BF16") and not allow_requantize:
        raise ModelError(
            f"{src} is already quantized ({source.quantization})",
            hint="quantize the F16/BF16 GGUF instead, or pass --allow-requantize",
        )
    if dst.resolve() == src.resolve():
        raise ModelError(f"the output {dst} is the input", hint="choose another --out path")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    params.allow_requantize = allow_requantize
    with atomic_output(dst) as tmp:
        status = llama_cpp.llama_model_quantize(
            str(src).encode(), str(tmp).encode(), ctypes.byref(params)
        )
        if status != 0 or not tmp.exists():
            raise ModelError(f"llama.cpp could not quantize {src} to {quant.upper()} "
                             f"(status {status})",
                             hint="see llama.cpp's messages above; the input may be damaged or "
                             "of an architecture this llama-cpp-python does not know")
        check_gguf(tmp)
    return read_metadata(dst)


# --------------------------------------------------------------------------------------------
# Verify
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """A GGUF that loaded in llama.cpp and generated tokens."""

    info: ModelInfo
    load_seconds: float
    tokens: tuple[int, ...]
    text: str
    generate_seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Return the generation speed."""
        return len(self.tokens) / self.generate_seconds if self.generate_seconds > 0 else 0.0


def verify(path: Path, *, n_tokens: int = 8, prompt: str = "def add(a, b):\n",
           threads: int | None = None) -> Verification:
    """Load ``path`` with llama.cpp and generate ``n_tokens`` tokens greedily.

    Raises:
        ModelError: the file is not a sound GGUF, llama.cpp cannot load it, or it generates
            nothing.
    """
    import llama_cpp
    from llama_cpp import Llama

    from symergion.engine.extra_buffers import llama_cpp_params, machine_decision

    meta = read_metadata(path)
    started = time.perf_counter()
    # This machine's extra-buffer decision: Llama would use them, and crash where they do.
    use_extra = machine_decision(path, llama=llama_cpp).use_extra_buffers
    try:
        with llama_cpp_params(use_extra):
            llm = Llama(model_path=str(path), n_ctx=min(meta.context_length or 512, 512),
                        n_threads=threads, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"llama.cpp cannot load {path}: {exc}",
                         hint="the file may be damaged, or its architecture newer than this "
                         "llama-cpp-python: pip install -U llama-cpp-python") from None
    loaded = time.perf_counter()
    try:
        prompt_tokens = llm.tokenize(prompt.encode(), add_bos=True)
        out: list[int] = []
        # Take n tokens whatever they are: end-of-text counts, it shows the model ran.
        for token in llm.generate(prompt_tokens, temp=0.0, reset=True):
            out.append(int(token))
            if len(out) >= n_tokens:
                break
        text = llm.detokenize(out).decode("utf-8", "replace")
    finally:
        llm.close()
    done = time.perf_counter()
    if not out:
        raise ModelError(f"{path} loaded but generated no token",
                         hint="the model may be damaged; convert it again")
    return Verification(info=meta, load_seconds=loaded - started, tokens=tuple(out), text=text,
                        generate_seconds=done - loaded)


# --------------------------------------------------------------------------------------------
# Convert
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversion:
    """The files a conversion produced."""

    gguf: Path
    info: ModelInfo
    f16: Path | None


def default_output(checkpoint: Path, quant: str) -> Path:
    """Return where the GGUF of a checkpoint directory goes: ``<dir>-<QUANT>.gguf`` beside it."""
    return checkpoint.parent / f"{checkpoint.name}-{quant.upper()}.gguf"


def converter_script(llama_cpp_dir: Path, name: str = CONVERTER) -> Path:
    """Return one of llama.cpp's converters (``convert_hf_to_gguf.py`` by default) in a checkout.

    Raises:
        ModelError: the directory is not a llama.cpp checkout.
    """
    script = llama_cpp_dir.expanduser() / name
    if not script.is_file():
        raise ModelError(
            f"{llama_cpp_dir} has no {name}: it is not a llama.cpp checkout",
            hint="git clone https://github.com/ggml-org/llama.cpp and pass its directory to "
            f"--llama-cpp; then pip install -r llama.cpp/{converter_requirements(name)}",
        )
    return script


def converter_requirements(name: str) -> str:
    """Return the requirements file of a llama.cpp converter, relative to the checkout."""
    return f"requirements/requirements-{name.removesuffix('.py')}.txt"


def run_converter(script: Path, inputs: Sequence[str], dst: Path, *, outtype: str,
                  python: str | None = None) -> Path:
    """Run a llama.cpp converter on ``inputs`` and write its GGUF to ``dst`` (atomically).

    Raises:
        ModelError: the converter failed or wrote no sound GGUF.
    """
    env = dict(os.environ)
    # The converter must use the gguf-py of its own checkout, which knows its architectures.
    gguf_py = script.parent / "gguf-py"
    if gguf_py.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(gguf_py), env.get("PYTHONPATH")]))
    with atomic_output(dst) as tmp:
        command = [python or sys.executable, str(script), *inputs,
                   "--outfile", str(tmp), "--outtype", outtype]
        status = subprocess.run(command, env=env, check=False).returncode
        if status != 0 or not tmp.exists():
            raise ModelError(
                f"{script.name} failed on {inputs[0]} (exit {status})",
                hint=f"see its messages above; install its requirements with pip install -r "
                f"{script.parent / converter_requirements(script.name)}, or pass --python with "
                "an interpreter that has them",
            )
        check_gguf(tmp)
    return dst


def convert_to_f16(checkpoint: Path, dst: Path, *, llama_cpp_dir: Path,
                   python: str | None = None) -> Path:
    """Convert a Hugging Face checkpoint directory to an F16 GGUF with llama.cpp's converter.

    Raises:
        ModelError: the checkpoint or the checkout is unusable, or the converter failed.
    """
    if not (checkpoint / "config.json").is_file():
        raise ModelError(f"{checkpoint} is not a Hugging Face checkpoint (no config.json)",
                         hint="pass the directory that holds config.json and the weights")
    script = converter_script(llama_cpp_dir)
    return run_converter(script, [str(checkpoint)], dst, outtype="f16", python=python)


def convert_checkpoint(checkpoint: Path, *, llama_cpp_dir: Path, out: Path | None = None,
                       quant: str = DEFAULT_QUANT, keep_f16: bool = False,
                       python: str | None = None, threads: int | None = None) -> Conversion:
    """Convert a checkpoint directory to a quantized GGUF (F16 first, then ``quant``).

    Args:
        checkpoint: the Hugging Face checkpoint directory.
        llama_cpp_dir: a llama.cpp checkout, for ``convert_hf_to_gguf.py``.
        out: the output GGUF (default ``<dir>-<QUANT>.gguf`` beside the directory).
        quant: the quantization (``F16`` keeps the converter's output as is).
        keep_f16: keep the intermediate ``<dir>-F16.gguf``.
        python: the interpreter that runs the converter (default: this one).
        threads: CPU threads for quantizing.
    """
    checkpoint = checkpoint.expanduser().absolute()
    quant = quant.upper()
    if quant != "F16":
        parse_quant(quant)  # fail before the long conversion, not after it
    out = (out or default_output(checkpoint, quant)).expanduser().absolute()
    if quant == "F16":
        f16 = out
    elif keep_f16:
        f16 = default_output(checkpoint, "F16")
    else:
        f16 = out.with_name(f".{out.name}.f16.gguf")
    convert_to_f16(checkpoint, f16, llama_cpp_dir=llama_cpp_dir, python=python)
    if quant == "F16":
        return Conversion(gguf=out, info=read_metadata(out), f16=out)
    try:
        info = quantize(f16, out, quant=quant, threads=threads)
    finally:
        if not keep_f16:
            f16.unlink(missing_ok=True)
    return Conversion(gguf=out, info=info, f16=f16 if keep_f16 else None)


# --------------------------------------------------------------------------------------------
# Migrate an original config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One checkpoint moved from a Hugging Face directory to a GGUF file."""

    original: str
    gguf: str
    name: str


def is_gguf_reference(name_or_path: str) -> bool:
    """Return whether a checkpoint already names a GGUF (file, hf:// or embedded model)."""
    return (name_or_path.lower().endswith(".gguf") or name_or_path.startswith(HF_SCHEME)
            or name_or_path.startswith("embedded:"))


def migrate_config(raw: Any, *, quant: str = DEFAULT_QUANT,
                   mapping: Mapping[str, str] | None = None,
                   base_dir: Path | None = None) -> tuple[dict[str, Any], list[Migration]]:
    """Translate an original SymErgion config to GGUF checkpoints, keeping every other field.

    Each checkpoint whose ``name_or_path`` is a Hugging Face directory gets the GGUF path from
    ``mapping`` (keyed by the original ``name_or_path``) or ``<dir>-<QUANT>.gguf``, and ``name``
    set to the directory's basename, so model branches keep the names the original gave them.

    Raises:
        ConfigError: the input is not a config, or the result does not validate.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("checkpoints"), list):
        raise ConfigError("the input is not a SymErgion config (no \"checkpoints\" list)",
                          hint="pass the original config JSON file")
    mapping = dict(mapping or {})
    result = copy.deepcopy(raw)
    migrations: list[Migration] = []
    checkpoints: list[Any] = []
    for item in result["checkpoints"]:
        original = item.get("name_or_path") if isinstance(item, dict) else None
        if not isinstance(original, str) or is_gguf_reference(original):
            checkpoints.append(item)
            continue
        directory = original.rstrip("/")
        gguf = mapping.pop(original, None) or mapping.pop(directory, None) \
            or f"{directory}-{quant.upper()}.gguf"
        name = item.get("name") or directory.rsplit("/", 1)[-1]
        # name_or_path and name first, then the original fields in their order.
        migrated = {"name_or_path": gguf, "name": name}
        migrated.update((k, v) for k, v in item.items() if k not in migrated)
        checkpoints.append(migrated)
        migrations.append(Migration(original=original, gguf=gguf, name=name))
    if mapping:
        raise ConfigError("--map names checkpoints the config does not have: "
                          + ", ".join(sorted(mapping)),
                          hint="use the name_or_path values of the original config")
    result["checkpoints"] = checkpoints
    parse_config(result, base_dir=base_dir or Path.cwd())
    return result, migrations


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """Parse ``ORIGINAL=FILE.gguf`` pairs.

    Raises:
        ConfigError: a pair is malformed.
    """
    mapping: dict[str, str] = {}
    for item in items:
        original, sep, target = item.partition("=")
        if not sep or not original or not target:
            raise ConfigError(f"--map {item!r} is not ORIGINAL=FILE.gguf",
                              hint="e.g. --map Qwen3-1.7B=Qwen3-1.7B-Q8_0.gguf")
        mapping[original] = target
    return mapping


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

app = typer.Typer(
    help="Hugging Face checkpoint -> GGUF -> quantized GGUF; verify; migrate configs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

QuantOpt = Annotated[str, typer.Option("--quant", "-q",
                                       help="Quantization, e.g. Q4_K_M, Q5_K_M, Q6_K, Q8_0.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", "-t", help="CPU threads.",
                                                show_default="all cores")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output file.")]


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _describe(meta: ModelInfo) -> str:
    return (f"{meta.architecture}, {meta.size_label} parameters, {meta.quantization}, "
            f"{meta.file_size / 1e6:.1f} MB")


def _report_verification(result: Verification) -> None:
    _say(f"verified {result.info.path}: loads in {result.load_seconds:.1f}s, "
         f"{len(result.tokens)} tokens at {result.tokens_per_second:.1f} tokens/s: "
         f"{result.text!r}")


@app.command("convert")
def convert_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Hugging Face checkpoint directory.")],
    llama_cpp: Annotated[Path, typer.Option("--llama-cpp", help="A llama.cpp checkout.")],
    out: OutOpt = None,
    quant: QuantOpt = DEFAULT_QUANT,
    keep_f16: Annotated[bool, typer.Option("--keep-f16", help="Keep <dir>-F16.gguf.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the load check.")] = False,
    python: Annotated[str | None, typer.Option(
        "--python", help="Interpreter with the converter's requirements.",
        show_default="this one")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Convert a checkpoint to GGUF, quantize it, and check that it loads and generates."""
    result = convert_checkpoint(checkpoint, llama_cpp_dir=llama_cpp, out=out, quant=quant,
                                keep_f16=keep_f16, python=python, threads=threads)
    _say(f"wrote {result.gguf}: {_describe(result.info)}")
    if result.f16:
        _say(f"kept {result.f16}")
    if not no_verify:
        _report_verification(verify(result.gguf, threads=threads))
    typer.echo(str(result.gguf))


@app.command("quantize")
def quantize_cmd(
    src: Annotated[Path, typer.Argument(help="GGUF to quantize (F32/F16/BF16).")],
    out: OutOpt = None,
    quant: QuantOpt = DEFAULT_QUANT,
    threads: ThreadsOpt = None,
    allow_requantize: Annotated[bool, typer.Option(
        "--allow-requantize", help="Accept an already quantized input.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the load check.")] = False,
) -> None:
    """Quantize an existing GGUF (default output: the input name with the new type)."""
    dst = out or _quantized_name(src, quant)
    meta = quantize(src, dst, quant=quant, threads=threads, allow_requantize=allow_requantize)
    _say(f"wrote {dst}: {_describe(meta)}")
    if not no_verify:
        _report_verification(verify(dst, threads=threads))
    typer.echo(str(dst))


def _quantized_name(src: Path, quant: str) -> Path:
    stem = src.name[: -len(".gguf")] if src.name.lower().endswith(".gguf") else src.name
    for suffix in ("-F32", "-F16", "-BF16", "-f32", "-f16", "-bf16"):
        stem = stem.removesuffix(suffix)
    return src.with_name(f"{stem}-{quant.upper()}.gguf")


@app.command("verify")
def verify_cmd(
    model: Annotated[Path, typer.Argument(help="GGUF file to check.")],
    tokens: Annotated[int, typer.Option("--tokens", "-n", min=1, help="Tokens to generate.")] = 8,
    prompt: Annotated[str, typer.Option("--prompt", help="Prompt to continue.")] = "def add(a, b):\n",
    threads: ThreadsOpt = None,
) -> None:
    """Check that a GGUF loads in llama.cpp and generates tokens."""
    result = verify(model, n_tokens=tokens, prompt=prompt, threads=threads)
    _say(_describe(result.info))
    _report_verification(result)


@app.command("migrate-config")
def migrate_config_cmd(
    original: Annotated[Path, typer.Argument(help="An original SymErgion config (JSON).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where to write the new config; '-' for stdout.",
        show_default="<name>-gguf.json beside the original")] = None,
    quant: QuantOpt = DEFAULT_QUANT,
    mapping: Annotated[list[str] | None, typer.Option(
        "--map", metavar="ORIGINAL=FILE.gguf",
        help="GGUF file for one checkpoint (repeatable).")] = None,
    llama_cpp: Annotated[str, typer.Option(
        "--llama-cpp", help="llama.cpp checkout shown in the suggested convert commands.")]
        = "/path/to/llama.cpp",
) -> None:
    """Translate an original config (Hugging Face directories) into one with GGUF files."""
    try:
        raw = json.loads(original.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{original} does not exist", hint="pass the original config file") \
            from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{original}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}",
                          hint="fix the JSON at that line and column") from None
    base = original.resolve().parent
    result, migrations = migrate_config(raw, quant=quant, mapping=parse_mapping(mapping or []),
                                        base_dir=base)
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if out is not None and str(out) == "-":
        typer.echo(text, nl=False)
    else:
        dst = out or original.with_name(f"{original.stem}-gguf.json")
        with atomic_output(dst) as tmp:
            tmp.write_text(text, encoding="utf-8")
        _say(f"wrote {dst}")
    models_dir = Path(raw.get("models_dir", ".")) if isinstance(raw.get("models_dir"), str) \
        else Path(".")
    for m in migrations:
        directory = base / models_dir / m.original
        target = base / models_dir / m.gguf
        state = "exists" if target.exists() else "to make"
        _say(f"{m.original} -> {m.gguf} (branch name {m.name}; {state})")
        if not target.exists():
            _say(f"  python {Path(__file__).as_posix()} convert {directory} --llama-cpp "
                 f"{llama_cpp} --quant {quant.upper()} --out {target}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    return run_app(app, "convert.py", argv)


def run_app(command: typer.Typer, prog_name: str, argv: list[str] | None) -> int:
    """Run a script's Typer app and map errors to exit codes, as the symergion CLI does."""
    import click

    # Typer 0.16+ raises its own copy of click's exceptions: catch both kinds.
    exits = (click.exceptions.Exit, typer.Exit)
    aborts = (KeyboardInterrupt, click.exceptions.Abort, typer.Abort)
    usage = (click.ClickException, getattr(typer.exceptions, "TyperException", click.ClickException))
    try:
        command(args=argv, prog_name=prog_name, standalone_mode=False)
    except SymergionError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except exits as exc:
        return int(exc.exit_code)
    except aborts:
        typer.echo("interrupted", err=True)
        return 130
    except usage as exc:
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        return int(getattr(exc, "exit_code", 2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
